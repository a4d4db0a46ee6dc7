"""ModernBERT (``ModernBertForMaskedLM``): a Pre-LN encoder with RoPE, fused ``Wqkv``
([Q; K; V]), a GeGLU MLP (``Wi`` is [input; gate]), alternating local (sliding window)
and global attention (``layer_types``, remapped with the layer map), no biases by
default, and an MLM head dense -> GELU -> LayerNorm -> decoder tied to the embeddings.

Its first layer has no attention norm (an ``Identity``: the embedding LayerNorm comes
just before), so a copy of that layer placed deeper gets an identity LayerNorm (weight 1,
bias 0: ``stand_in``); the copy's attention output starts at zero, so the value is free.

Like BERT's, its embedding LayerNorm and its MLM head make widths that are not a
multiple of the source inexact (NOTES.md section 10): refused unless ``allow_lossy``.

Example:
    >>> MODERNBERT.spec("model.layers.{i}.attn_norm.weight").absent_in
    (0,)
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

_M = "model."
_L = _M + "layers.{i}."


def _optional_bias(pair: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """(weight, bias) with the bias optional: ModernBERT's config switches biases off."""
    weight, bias = pair
    return weight, replace(bias, optional=True)


def _norm(prefix: str, **flags) -> tuple[Tensor, Tensor]:
    return _optional_bias(layer_norm(prefix, **flags))


def _linear(prefix: str, out, inp, **flags) -> tuple[Tensor, Tensor]:
    return _optional_bias(linear(prefix, out, inp, **flags))


def _attn_norm() -> tuple[Tensor, Tensor]:
    """Absent in layer 0 (an Identity); a copy of layer 0 elsewhere gets an identity norm
    shaped like the same layer's ``mlp_norm``."""
    weight, bias = _norm(_L + "attn_norm", optional=True)
    return (
        replace(weight, absent_in=(0,), stand_in=_L + "mlp_norm.weight"),
        replace(bias, absent_in=(0,), stand_in=_L + "mlp_norm.bias"),
    )


MODERNBERT = ArchTable(
    model_types=("modernbert",),
    classes=("ModernBertForMaskedLM", "ModernBertModel"),
    config=ConfigFields(
        hidden="hidden_size",
        layers="num_hidden_layers",
        heads="num_attention_heads",
        mlp="intermediate_size",
        norm_eps=("norm_eps",),
    ),
    base_prefix=_M,
    base_classes=("ModernBertModel",),
    norm="layernorm",
    task="masked_lm",
    tie_embeddings=("decoder.weight", _M + "embeddings.tok_embeddings.weight"),
    vocab=(_M + "embeddings.tok_embeddings.weight", "decoder.weight", "decoder.bias"),
    indivisible_lossy=(
        "ModernBERT has a LayerNorm right after the embeddings and a dense -> GELU -> "
        "LayerNorm MLM head; with a hidden size that is not a multiple of the source, their "
        "extra outputs cannot equal the stream's average for every input (NOTES.md section 10)"
    ),
    tensors=(
        Tensor(_M + "embeddings.tok_embeddings.weight", (None, Out(HIDDEN))),
        *_norm(_M + "embeddings.norm", stream_norm=True),
        *_attn_norm(),
        *_linear(_L + "attn.Wqkv", (HEADS, KV_HEADS, KV_HEADS), HIDDEN),  # [3 H d, D]
        *_linear(_L + "attn.Wo", HIDDEN, HEADS, branch_out=True),
        *_norm(_L + "mlp_norm"),
        *_linear(_L + "mlp.Wi", (MLP, MLP), HIDDEN),  # [2F, D]: [input; gate]
        *_linear(_L + "mlp.Wo", HIDDEN, MLP, branch_out=True),
        *_norm(_M + "final_norm"),
        *_linear("head.dense", HIDDEN, HIDDEN),
        *_norm("head.norm", tied_head_norm=True),
        Tensor("decoder.weight", (None, In(HIDDEN)), optional=True),
        Tensor("decoder.bias", (None,), optional=True),
    ),
    note=(
        "fused Wqkv, GeGLU Wi; local / global layer_types follow the layer map; copies of "
        "layer 0 (which has no attention norm) get an identity LayerNorm"
    ),
)
