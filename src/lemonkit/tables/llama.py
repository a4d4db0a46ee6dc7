"""The LLaMA family: Llama, Mistral, Qwen2 (q/k/v biases), Qwen3 (per-head q/k norms),
Mixtral, Gemma 1/2/3, OLMo2, SmolLM3 (NoPE layers), Granite (multipliers).
RMSNorm, SwiGLU, RoPE, GQA."""

from collections.abc import Iterable
from dataclasses import replace

from lemonkit.tables.format import (
    EXPERTS,
    HEADS,
    HIDDEN,
    KV_HEADS,
    MLP,
    ArchTable,
    ConfigFields,
    ExpertFields,
    Gamma,
    In,
    Out,
    Tensor,
    expert_mlp,
)

_L = "model.layers.{i}."
_A = _L + "self_attn."

LLAMA = ArchTable(
    model_types=("llama", "mistral", "qwen2"),
    classes=(
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "Qwen2ForCausalLM",
        "LlamaModel",
        "MistralModel",
        "Qwen2Model",
    ),
    config=ConfigFields(
        hidden="hidden_size",
        layers="num_hidden_layers",
        heads="num_attention_heads",
        kv_heads="num_key_value_heads",
        mlp="intermediate_size",
        head_dim="head_dim",
        norm_eps=("rms_norm_eps",),
    ),
    base_prefix="model.",
    base_classes=("LlamaModel", "MistralModel", "Qwen2Model"),
    norm="rmsnorm",
    task="causal_lm",
    tie_embeddings=("lm_head.weight", "model.embed_tokens.weight"),
    vocab=("model.embed_tokens.weight", "lm_head.weight"),
    tensors=(
        Tensor("model.embed_tokens.weight", (None, Out(HIDDEN))),  # [vocab, D]
        Tensor(_L + "input_layernorm.weight", (Gamma(HIDDEN),)),
        Tensor(_A + "q_proj.weight", (Out(HEADS), In(HIDDEN))),  # [H*d, D]
        Tensor(_A + "q_proj.bias", (Out(HEADS),), optional=True),
        Tensor(_A + "k_proj.weight", (Out(KV_HEADS), In(HIDDEN))),  # [KV*d, D]
        Tensor(_A + "k_proj.bias", (Out(KV_HEADS),), optional=True),
        Tensor(_A + "v_proj.weight", (Out(KV_HEADS), In(HIDDEN))),
        Tensor(_A + "v_proj.bias", (Out(KV_HEADS),), optional=True),
        Tensor(_A + "o_proj.weight", (Out(HIDDEN), In(HEADS)), branch_out=True),
        Tensor(_A + "o_proj.bias", (Out(HIDDEN),), branch_out=True, optional=True),
        Tensor(_L + "post_attention_layernorm.weight", (Gamma(HIDDEN),)),
        Tensor(_L + "mlp.gate_proj.weight", (Out(MLP), In(HIDDEN))),  # [F, D]
        Tensor(_L + "mlp.gate_proj.bias", (Out(MLP),), optional=True),
        Tensor(_L + "mlp.up_proj.weight", (Out(MLP), In(HIDDEN))),
        Tensor(_L + "mlp.up_proj.bias", (Out(MLP),), optional=True),
        Tensor(_L + "mlp.down_proj.weight", (Out(HIDDEN), In(MLP)), branch_out=True),
        Tensor(_L + "mlp.down_proj.bias", (Out(HIDDEN),), branch_out=True, optional=True),
        Tensor("model.norm.weight", (Gamma(HIDDEN),), tied_head_norm=True),
        Tensor("lm_head.weight", (None, In(HIDDEN)), optional=True),  # [vocab, D]
    ),
)

QWEN3 = replace(
    LLAMA,
    model_types=("qwen3",),
    classes=("Qwen3ForCausalLM", "Qwen3Model"),
    base_classes=("Qwen3Model",),
    tensors=(
        *LLAMA.tensors,
        Tensor(_A + "q_norm.weight", (None,)),  # per head, over head_dim: kept as is
        Tensor(_A + "k_norm.weight", (None,)),
    ),
    # rms_norm_eps serves the stream norms and the per-head q/k norms alike
    fixed_eps=True,
)

_MLP_TENSORS = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
_M = _L + "block_sparse_moe."

MIXTRAL = replace(
    LLAMA,
    model_types=("mixtral",),
    classes=("MixtralForCausalLM", "MixtralModel"),
    base_classes=("MixtralModel",),
    tensors=(
        *(t for t in LLAMA.tensors if not any(m in t.name for m in _MLP_TENSORS)),
        # in memory (transformers 5): router [E, D], experts fused [E, 2F, D] = [gate; up]
        # and [E, D, F]. Routing logits are kept (router columns split); more experts copy
        # every expert with its router row, and the copies split its down projection.
        Tensor(_L + "mlp.gate.weight", (Out(EXPERTS), In(HIDDEN)), optional=True),
        Tensor(
            _L + "mlp.experts.gate_up_proj",
            (Out(EXPERTS), Out((MLP, MLP)), In(HIDDEN)),
            optional=True,
        ),
        Tensor(
            _L + "mlp.experts.down_proj",
            (In(EXPERTS), Out(HIDDEN), In(MLP)),
            branch_out=True,
            optional=True,
        ),
        # on disk (Mixtral checkpoints): one w1 (gate), w3 (up), w2 (down) per expert
        Tensor(_M + "gate.weight", (Out(EXPERTS), In(HIDDEN)), optional=True),
        *expert_mlp(_M + "experts.{e}.", ("w1", "w3", "w2"), MLP),
    ),
    experts=ExpertFields(count="num_local_experts"),  # softmax router, always renormalised
    note=(
        "stacked experts in memory, one w1 / w3 / w2 per expert on disk; router columns "
        "split (routing unchanged)"
    ),
)

GEMMA = replace(
    LLAMA,
    model_types=("gemma",),
    classes=("GemmaForCausalLM", "GemmaModel"),
    base_classes=("GemmaModel",),
    norm_offset=1.0,  # GemmaRMSNorm multiplies by (1 + w)
    embed_scale_sqrt_hidden="model.embed_tokens.weight",  # embeddings times sqrt(hidden)
)


def _post_branch(tensors: Iterable[Tensor]) -> tuple[Tensor, ...]:
    """LLaMA's tensors with ``post_attention_layernorm`` after the attention (sandwich)."""
    return tuple(replace(t, post_branch="post_attention" in t.name) for t in tensors)


GEMMA2 = replace(
    GEMMA,
    model_types=("gemma2",),
    classes=("Gemma2ForCausalLM", "Gemma2Model"),
    base_classes=("Gemma2Model",),
    # sandwich norms: post_attention_layernorm (already in LLAMA's tensors) now follows the
    # attention; the MLP gets pre_ and post_feedforward_layernorm. All are over the stream.
    tensors=(
        *_post_branch(LLAMA.tensors),
        Tensor(_L + "pre_feedforward_layernorm.weight", (Gamma(HIDDEN),)),
        Tensor(_L + "post_feedforward_layernorm.weight", (Gamma(HIDDEN),), post_branch=True),
    ),
)

GEMMA3 = replace(
    GEMMA2,
    model_types=("gemma3_text",),  # the text model; gemma3 (with vision) is another class
    classes=("Gemma3ForCausalLM", "Gemma3TextModel"),
    base_classes=("Gemma3TextModel",),
    tensors=(
        *GEMMA2.tensors,
        Tensor(_A + "q_norm.weight", (None,)),  # per head, over head_dim: kept as is
        Tensor(_A + "k_norm.weight", (None,)),
    ),
    # rms_norm_eps serves the per-head q/k norms too: eps kept, the stream scaled by 1/eta
    # (the sandwich norms' outputs with it: post_branch)
    fixed_eps=True,
    note=(
        "(1 + w) norms, sqrt(hidden) embedding scale, sandwich norms; q/k norms share "
        "rms_norm_eps, so the stream and the sandwich norms' outputs are scaled by 1/eta; "
        "layer_types (sliding / full) follow the layer map"
    ),
)

SMOLLM3 = replace(
    LLAMA,
    model_types=("smollm3",),
    classes=("SmolLM3ForCausalLM", "SmolLM3Model"),
    base_classes=("SmolLM3Model",),
    # no_rope_layers: 1 where a layer uses RoPE, 0 for a NoPE layer; follows the layer map
    config=replace(LLAMA.config, per_layer=("layer_types", "no_rope_layers")),
    note="NoPE layers: no_rope_layers (and layer_types) follow the layer map",
)

GRANITE = replace(
    LLAMA,
    model_types=("granite",),
    classes=("GraniteForCausalLM", "GraniteModel"),
    base_classes=("GraniteModel",),
    # embedding_multiplier, residual_multiplier, attention_multiplier and logits_scaling are
    # scalars independent of the width (the attention's replaces head_dim^-0.5, and
    # head_dim is kept): kept as they are, the expansion stays exact
    note=(
        "embedding, residual and attention multipliers and logits_scaling are scalars "
        "independent of the width: kept, exact"
    ),
)

OLMO2 = replace(
    LLAMA,
    model_types=("olmo2",),
    classes=("Olmo2ForCausalLM", "Olmo2Model"),
    base_classes=("Olmo2Model",),
    # no input norms: attention and MLP read the raw (zero-filled) stream; their outputs
    # pass post_attention_layernorm / post_feedforward_layernorm before the residual add
    tensors=(
        *_post_branch(t for t in LLAMA.tensors if "input_layernorm" not in t.name),
        Tensor(_L + "post_feedforward_layernorm.weight", (Gamma(HIDDEN),), post_branch=True),
        Tensor(_A + "q_norm.weight", (Gamma(HEADS),)),  # over all heads: [H * d]
        Tensor(_A + "k_norm.weight", (Gamma(KV_HEADS),)),  # [KV * d]
    ),
    dead_heads=True,
)
