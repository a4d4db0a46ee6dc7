"""OPT (``OPTForCausalLM``): learned positions with an offset of 2, optional embedding
projections (``word_embed_proj_dim``), LayerNorm eps fixed at 1e-5 in the library code.

The eps cannot follow eta^2, so the stream is scaled by 1/eta instead (``fixed_eps``):
exact for any width. With ``word_embed_proj_dim != hidden_size`` the embeddings and the
tied head stay in the projection space; ``project_in`` writes the stream and
``project_out`` reads it.
"""

from dataclasses import replace

from lemonkit.tables.format import (
    HEADS,
    HIDDEN,
    KV_HEADS,
    MLP,
    STANDARD_FIELDS,
    ArchTable,
    In,
    Out,
    Tensor,
    layer_norm,
    linear,
)

_D = "model.decoder."
_L = _D + "layers.{i}."
WORD_EMBED = "word_embed"  # the stream, or the kept projection space

OPT = ArchTable(
    model_types=("opt",),
    classes=("OPTForCausalLM", "OPTModel"),
    config=replace(STANDARD_FIELDS, mlp="ffn_dim", norm_eps=()),  # eps hard-coded 1e-5
    base_prefix="model.",
    base_classes=("OPTModel",),
    norm="layernorm",
    task="causal_lm",
    tie_embeddings=("lm_head.weight", _D + "embed_tokens.weight"),
    vocab=(_D + "embed_tokens.weight", "lm_head.weight"),
    fixed_eps=True,
    maybe_stream=((WORD_EMBED, "word_embed_proj_dim"),),
    requires=(
        ("do_layer_norm_before", True, "post-LN OPT (opt-350m) is not supported yet"),
        ("layer_norm_elementwise_affine", True, "LayerNorms without weights are not supported"),
    ),
    tensors=(
        Tensor(_D + "embed_tokens.weight", (None, Out(WORD_EMBED))),  # [vocab, P]
        Tensor(_D + "embed_positions.weight", (None, Out(HIDDEN))),  # [positions + 2, D]
        Tensor(_D + "project_in.weight", (Out(HIDDEN), In(WORD_EMBED)), optional=True),
        Tensor(_D + "project_out.weight", (Out(WORD_EMBED), In(HIDDEN)), optional=True),
        *layer_norm(_L + "self_attn_layer_norm"),
        *linear(_L + "self_attn.q_proj", HEADS, HIDDEN),
        *linear(_L + "self_attn.k_proj", KV_HEADS, HIDDEN),
        *linear(_L + "self_attn.v_proj", KV_HEADS, HIDDEN),
        *linear(_L + "self_attn.out_proj", HIDDEN, HEADS, branch_out=True),
        *layer_norm(_L + "final_layer_norm"),
        *linear(_L + "fc1", MLP, HIDDEN),
        *linear(_L + "fc2", HIDDEN, MLP, branch_out=True),
        *layer_norm(_D + "final_layer_norm", tied_head_norm=True, optional=True),
        Tensor("lm_head.weight", (None, In(WORD_EMBED)), optional=True),
    ),
)
