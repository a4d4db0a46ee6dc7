"""DeepSeek-V3: multi-head latent attention (MLA), shared and routed experts, dense first
blocks (``first_k_dense_replace``), a sigmoid router choosing experts within the best
expert groups (``n_group``, ``topk_group``), its correction bias, ``norm_topk_prob``.

MLA keeps its low-rank latents: ``q_a_proj`` [q_lora, D] and ``kv_a_proj_with_mqa``
[kv_lora + rope, D] read the stream (columns split) and write latents that do not grow,
with their norms; the per-head up-projections ``q_b_proj`` [H (nope + rope), q_lora]
and ``kv_b_proj`` [H (nope + v), kv_lora] copy whole heads, so the rope/nope split and
the shared rotary key stay as they are; ``o_proj`` [D, H v] splits its head columns.
Heads and the hidden size grow independently (KV heads are the heads).

More experts scale the expert groups with them: target expert j copies j mod E, so
target group c x n_group + g is a copy of source group g, and n_group, topk_group and
the experts per token are all multiplied by m.
"""

from dataclasses import replace

from lemonkit.tables.format import (
    EXPERTS,
    HEADS,
    HIDDEN,
    MLP,
    MOE_MLP,
    SHARED_MLP,
    ConfigFields,
    DenseLayers,
    DerivedSpace,
    ExpertFields,
    Gamma,
    In,
    Out,
    Tensor,
    expert_mlp,
)
from lemonkit.tables.llama import LLAMA

_L = "model.layers.{i}."
_A = _L + "self_attn."
HEADS_QK = "heads_qk"  # per-head query rows [nope; rope]
HEADS_KVB = "heads_kv_b"  # per-head key/value rows [k_nope; v]
HEADS_V = "heads_v"  # per-head value channels (o_proj's columns)


def _attention() -> tuple[Tensor, ...]:
    return (
        Tensor(_A + "q_proj.weight", (Out(HEADS_QK), In(HIDDEN)), optional=True),  # no q LoRA
        Tensor(_A + "q_a_proj.weight", (None, In(HIDDEN)), optional=True),
        Tensor(_A + "q_a_proj.bias", (None,), optional=True),
        Tensor(_A + "q_a_layernorm.weight", (None,), optional=True),  # over the latent
        Tensor(_A + "q_b_proj.weight", (Out(HEADS_QK), None), optional=True),
        Tensor(_A + "kv_a_proj_with_mqa.weight", (None, In(HIDDEN))),
        Tensor(_A + "kv_a_proj_with_mqa.bias", (None,), optional=True),
        Tensor(_A + "kv_a_layernorm.weight", (None,)),
        Tensor(_A + "kv_b_proj.weight", (Out(HEADS_KVB), None)),
        Tensor(_A + "o_proj.weight", (Out(HIDDEN), In(HEADS_V)), branch_out=True),
        Tensor(_A + "o_proj.bias", (Out(HIDDEN),), branch_out=True, optional=True),
    )


def _mlp(prefix: str, space: str, **flags) -> tuple[Tensor, Tensor, Tensor]:
    return (
        Tensor(prefix + "gate_proj.weight", (Out(space), In(HIDDEN)), **flags),
        Tensor(prefix + "up_proj.weight", (Out(space), In(HIDDEN)), **flags),
        Tensor(prefix + "down_proj.weight", (Out(HIDDEN), In(space)), branch_out=True, **flags),
    )


_M = _L + "mlp."

DEEPSEEK_V3 = replace(
    LLAMA,
    model_types=("deepseek_v3",),
    classes=("DeepseekV3ForCausalLM", "DeepseekV3Model"),
    base_classes=("DeepseekV3Model",),
    config=ConfigFields(
        hidden="hidden_size",
        layers="num_hidden_layers",
        heads="num_attention_heads",
        mlp="intermediate_size",
        head_dim="head_dim",  # the rotary part's size: heads do not follow the hidden size
        norm_eps=("rms_norm_eps",),
        also_heads=("num_key_value_heads",),
    ),
    tensors=(
        Tensor("model.embed_tokens.weight", (None, Out(HIDDEN))),
        Tensor(_L + "input_layernorm.weight", (Gamma(HIDDEN),)),
        *_attention(),
        Tensor(_L + "post_attention_layernorm.weight", (Gamma(HIDDEN),)),
        *_mlp(_M, MLP, optional=True),  # the dense first blocks
        # the router and its correction bias, held in float32 by the class
        Tensor(_M + "gate.weight", (Out(EXPERTS), In(HIDDEN)), optional=True, kept_float32=True),
        Tensor(
            _M + "gate.e_score_correction_bias",
            (Out(EXPERTS),),
            optional=True,
            kept_float32=True,
        ),
        Tensor(
            _M + "experts.gate_up_proj",
            (Out(EXPERTS), Out((MOE_MLP, MOE_MLP)), In(HIDDEN)),
            optional=True,
        ),
        Tensor(
            _M + "experts.down_proj",
            (In(EXPERTS), Out(HIDDEN), In(MOE_MLP)),
            branch_out=True,
            optional=True,
        ),
        *expert_mlp(_M + "experts.{e}.", ("gate_proj", "up_proj", "down_proj"), MOE_MLP),
        *_mlp(_M + "shared_experts.", SHARED_MLP, optional=True),
        Tensor("model.norm.weight", (Gamma(HIDDEN),), tied_head_norm=True),
        Tensor("lm_head.weight", (None, In(HIDDEN)), optional=True),
    ),
    experts=ExpertFields(
        count="n_routed_experts",
        router="sigmoid",
        renorm="norm_topk_prob",
        scaled=("n_group", "topk_group"),
        mlp="moe_intermediate_size",
        shared_experts="n_shared_experts",
    ),
    note=(
        "MLA: q/kv latents and the rope/nope split kept, per-head up-projections copied; "
        "router in float32 as the class holds it; FP8 checkpoints, the MTP layer refused"
    ),
    dense_layers=DenseLayers(first_k="first_k_dense_replace"),
    derived=(
        DerivedSpace(HEADS_QK, HEADS, unit_fields=("qk_nope_head_dim", "qk_rope_head_dim")),
        DerivedSpace(HEADS_KVB, HEADS, unit_fields=("qk_nope_head_dim", "v_head_dim")),
        DerivedSpace(HEADS_V, HEADS, unit_fields=("v_head_dim",)),
    ),
)
