"""Pre-LN BERT, the paper's BERT (``RobertaPreLayerNormForMaskedLM``).

Its embedding LayerNorm and its MLM head (dense -> GELU -> LayerNorm -> tied decoder)
make indivisible widths inexact (NOTES.md section 10).
"""

from lemonkit.tables.bert import bert_attention_and_mlp, bert_embeddings
from lemonkit.tables.format import (
    HIDDEN,
    STANDARD_FIELDS,
    ArchTable,
    In,
    Tensor,
    layer_norm,
    linear,
)

_R = "roberta_prelayernorm."
_E = _R + "embeddings."
_L = _R + "encoder.layer.{i}."


ROBERTA_PRELAYERNORM = ArchTable(
    model_types=("roberta-prelayernorm",),
    classes=("RobertaPreLayerNormForMaskedLM", "RobertaPreLayerNormModel"),
    config=STANDARD_FIELDS,
    base_prefix="roberta_prelayernorm.",
    base_classes=("RobertaPreLayerNormModel",),
    norm="layernorm",
    task="masked_lm",
    tie_embeddings=("lm_head.decoder.weight", _E + "word_embeddings.weight"),
    vocab=(
        _E + "word_embeddings.weight",
        "lm_head.decoder.weight",
        "lm_head.decoder.bias",
        "lm_head.bias",
    ),
    indivisible_lossy=(
        "RoBERTa-PreLayerNorm has a LayerNorm right after the embeddings and a "
        "dense -> GELU -> LayerNorm MLM head; with a hidden size that is not a multiple of "
        "the source, their extra outputs cannot equal the stream's average for every input "
        "(NOTES.md section 10)"
    ),
    tensors=(
        *bert_embeddings(_E),
        *layer_norm(_E + "LayerNorm", stream_norm=True),
        *bert_attention_and_mlp(_L),
        *layer_norm(_L + "attention.LayerNorm"),  # Pre-LN: before attention
        *layer_norm(_L + "intermediate.LayerNorm"),  # and before the MLP
        *layer_norm(_R + "LayerNorm"),
        *linear(_R + "pooler.dense", HIDDEN, HIDDEN, optional=True),  # base model only
        *linear("lm_head.dense", HIDDEN, HIDDEN),
        *layer_norm("lm_head.layer_norm", tied_head_norm=True),
        Tensor("lm_head.decoder.weight", (None, In(HIDDEN)), optional=True),
        Tensor("lm_head.decoder.bias", (None,), optional=True),  # saved as lm_head.bias
        Tensor("lm_head.bias", (None,)),
    ),
)
