"""BERT, Post-LN (``BertForMaskedLM``, ``BertModel``, sentence-transformers folders).

The stream is a LayerNorm output, so widths must be multiples of the source (the stream
is duplicated; eta = 1). Depth moves the affine of the preceding output LayerNorm into
the new block (NOTES.md 6): exact up to O(eps) of the LayerNorm.
"""

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

_B = "bert."
_E = _B + "embeddings."
_L = _B + "encoder.layer.{i}."
_P = "cls.predictions."


def bert_embeddings(prefix: str) -> tuple[Tensor, ...]:
    """Word, position and token-type embeddings of the BERT family: they write the stream."""
    return tuple(
        Tensor(f"{prefix}{kind}_embeddings.weight", (None, Out(HIDDEN)))  # [n, D]
        for kind in ("word", "position", "token_type")
    )


def bert_attention_and_mlp(layer: str) -> tuple[Tensor, ...]:
    """The BERT family's q/k/v, attention output, and MLP linears of one layer."""
    return (
        *linear(layer + "attention.self.query", HEADS, HIDDEN),
        *linear(layer + "attention.self.key", KV_HEADS, HIDDEN),
        *linear(layer + "attention.self.value", KV_HEADS, HIDDEN),
        *linear(layer + "attention.output.dense", HIDDEN, HEADS, branch_out=True),
        *linear(layer + "intermediate.dense", MLP, HIDDEN),
        *linear(layer + "output.dense", HIDDEN, MLP, branch_out=True),
    )


BERT = ArchTable(
    model_types=("bert",),
    classes=("BertForMaskedLM", "BertModel"),
    config=STANDARD_FIELDS,
    base_prefix=_B,
    base_classes=("BertModel",),
    norm="layernorm",
    task="masked_lm",
    tie_embeddings=(_P + "decoder.weight", _E + "word_embeddings.weight"),
    vocab=(_E + "word_embeddings.weight", _P + "decoder.weight", _P + "decoder.bias", _P + "bias"),
    indivisible_lossy=(
        "Post-LN BERT's residual stream is a LayerNorm output: with a hidden size that is not "
        "a multiple of the source, no expansion of it keeps every LayerNorm exact (NOTES.md "
        "section 6)"
    ),
    tensors=(
        *bert_embeddings(_E),
        Tensor(_E + "position_ids", (None, None), optional=True),  # old checkpoints' buffer
        *layer_norm(_E + "LayerNorm"),
        *bert_attention_and_mlp(_L),
        *layer_norm(_L + "attention.output.LayerNorm", post_ln="inner"),
        *layer_norm(_L + "output.LayerNorm", post_ln="out"),
        *linear(_B + "pooler.dense", HIDDEN, HIDDEN, optional=True),  # output [p, p, ...]
        *linear(_P + "transform.dense", HIDDEN, HIDDEN),
        *layer_norm(_P + "transform.LayerNorm", tied_head_norm=True),
        Tensor(_P + "decoder.weight", (None, In(HIDDEN)), optional=True),
        Tensor(_P + "decoder.bias", (None,), optional=True),  # saved as cls.predictions.bias
        Tensor(_P + "bias", (None,)),
    ),
)
