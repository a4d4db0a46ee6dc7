"""StarCoder2 (``Starcoder2ForCausalLM``): LayerNorms with biases, a GELU MLP
(``c_fc`` -> GELU -> ``c_proj``), biased q/k/v/o projections, GQA, RoPE, a tied head.

A Pre-LN LayerNorm stream: extra stream units are the average (NOTES.md 1), so any width
is exact (no LayerNorm right after the embeddings).

Example:
    >>> STARCODER2.config.norm_eps
    ('norm_epsilon',)
"""

from dataclasses import replace

from lemonkit.tables.format import (
    HEADS,
    HIDDEN,
    KV_HEADS,
    MLP,
    ArchTable,
    ConfigFields,
    In,
    Out,
    Tensor,
    layer_norm,
    linear,
)


def _linear(prefix: str, out, inp, **flags) -> tuple[Tensor, Tensor]:
    """A linear layer whose bias the config may switch off (``use_bias``)."""
    weight, bias = linear(prefix, out, inp, **flags)
    return weight, replace(bias, optional=True)


_M = "model."
_L = _M + "layers.{i}."

STARCODER2 = ArchTable(
    model_types=("starcoder2",),
    classes=("Starcoder2ForCausalLM", "Starcoder2Model"),
    config=ConfigFields(
        hidden="hidden_size",
        layers="num_hidden_layers",
        heads="num_attention_heads",
        kv_heads="num_key_value_heads",
        mlp="intermediate_size",
        head_dim="head_dim",
        norm_eps=("norm_epsilon",),
    ),
    base_prefix=_M,
    base_classes=("Starcoder2Model",),
    norm="layernorm",
    task="causal_lm",
    tie_embeddings=("lm_head.weight", _M + "embed_tokens.weight"),
    vocab=(_M + "embed_tokens.weight", "lm_head.weight"),
    tensors=(
        Tensor(_M + "embed_tokens.weight", (None, Out(HIDDEN))),
        *layer_norm(_L + "input_layernorm"),
        *_linear(_L + "self_attn.q_proj", HEADS, HIDDEN),
        *_linear(_L + "self_attn.k_proj", KV_HEADS, HIDDEN),
        *_linear(_L + "self_attn.v_proj", KV_HEADS, HIDDEN),
        *_linear(_L + "self_attn.o_proj", HIDDEN, HEADS, branch_out=True),
        *layer_norm(_L + "post_attention_layernorm"),
        *_linear(_L + "mlp.c_fc", MLP, HIDDEN),
        *_linear(_L + "mlp.c_proj", HIDDEN, MLP, branch_out=True),
        *layer_norm(_M + "norm", tied_head_norm=True),
        Tensor("lm_head.weight", (None, In(HIDDEN)), optional=True),
    ),
    note="LayerNorms with biases (average-filled stream), GELU MLP, biased projections",
)
