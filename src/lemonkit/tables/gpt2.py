"""GPT-2 (``GPT2LMHeadModel``): Conv1D weights are stored [in, out]; fused [q; k; v]."""

from lemonkit.tables.format import (
    HEADS,
    HIDDEN,
    KV_HEADS,
    MLP,
    ArchTable,
    Beta,
    ConfigFields,
    Gamma,
    In,
    Out,
    Tensor,
)

_H = "transformer.h.{i}."

GPT2 = ArchTable(
    model_types=("gpt2",),
    classes=("GPT2LMHeadModel", "GPT2Model"),
    config=ConfigFields(
        hidden="n_embd",
        layers="n_layer",
        heads="n_head",
        mlp="n_inner",
        norm_eps=("layer_norm_epsilon",),
        mlp_default_mult=4,
    ),
    base_prefix="transformer.",
    base_classes=("GPT2Model",),
    norm="layernorm",
    task="causal_lm",
    tie_embeddings=("lm_head.weight", "transformer.wte.weight"),
    vocab=("transformer.wte.weight", "lm_head.weight"),
    tensors=(
        Tensor("transformer.wte.weight", (None, Out(HIDDEN))),  # [vocab, D]
        Tensor("transformer.wpe.weight", (None, Out(HIDDEN))),  # [positions, D]
        Tensor(_H + "ln_1.weight", (Gamma(HIDDEN),)),
        Tensor(_H + "ln_1.bias", (Beta(HIDDEN),)),
        Tensor(_H + "attn.c_attn.weight", (In(HIDDEN), Out((HEADS, KV_HEADS, KV_HEADS)))),
        Tensor(_H + "attn.c_attn.bias", (Out((HEADS, KV_HEADS, KV_HEADS)),)),
        Tensor(_H + "attn.c_proj.weight", (In(HEADS), Out(HIDDEN)), branch_out=True),
        Tensor(_H + "attn.c_proj.bias", (Out(HIDDEN),), branch_out=True),
        Tensor(_H + "ln_2.weight", (Gamma(HIDDEN),)),
        Tensor(_H + "ln_2.bias", (Beta(HIDDEN),)),
        Tensor(_H + "mlp.c_fc.weight", (In(HIDDEN), Out(MLP))),
        Tensor(_H + "mlp.c_fc.bias", (Out(MLP),)),
        Tensor(_H + "mlp.c_proj.weight", (In(MLP), Out(HIDDEN)), branch_out=True),
        Tensor(_H + "mlp.c_proj.bias", (Out(HIDDEN),), branch_out=True),
        Tensor("transformer.ln_f.weight", (Gamma(HIDDEN),), tied_head_norm=True),
        Tensor("transformer.ln_f.bias", (Beta(HIDDEN),), tied_head_norm=True),
        Tensor("lm_head.weight", (None, In(HIDDEN)), optional=True),
    ),
)
