"""ViT (``ViTForImageClassification``): patch conv, CLS token, learned positions."""

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

_E = "vit.embeddings."
_L = "vit.layers.{i}."


VIT = ArchTable(
    model_types=("vit",),
    classes=("ViTForImageClassification", "ViTModel"),
    config=STANDARD_FIELDS,
    base_prefix="vit.",
    base_classes=("ViTModel",),
    norm="layernorm",
    task="image_classification",
    inputs="pixels",
    # transformers 5 saves ViT checkpoints under the original (ViT 4.x) names
    aliases=tuple(
        (f"vit.encoder.layer.{{i}}.{old}.{p}", f"{_L}{new}.{p}")
        for old, new in (
            ("attention.attention.query", "attention.q_proj"),
            ("attention.attention.key", "attention.k_proj"),
            ("attention.attention.value", "attention.v_proj"),
            ("attention.output.dense", "attention.o_proj"),
            ("intermediate.dense", "mlp.fc1"),
            ("output.dense", "mlp.fc2"),
            ("layernorm_before", "layernorm_before"),
            ("layernorm_after", "layernorm_after"),
        )
        for p in ("weight", "bias")
    ),
    tensors=(
        Tensor(_E + "cls_token", (None, None, Out(HIDDEN))),  # [1, 1, D]
        Tensor(_E + "position_embeddings", (None, None, Out(HIDDEN))),  # [1, P+1, D]
        Tensor(_E + "patch_embeddings.projection.weight", (Out(HIDDEN), None, None, None)),
        Tensor(_E + "patch_embeddings.projection.bias", (Out(HIDDEN),)),
        *layer_norm(_L + "layernorm_before"),
        *linear(_L + "attention.q_proj", HEADS, HIDDEN),
        *linear(_L + "attention.k_proj", KV_HEADS, HIDDEN),
        *linear(_L + "attention.v_proj", KV_HEADS, HIDDEN),
        *linear(_L + "attention.o_proj", HIDDEN, HEADS, branch_out=True),
        *layer_norm(_L + "layernorm_after"),
        *linear(_L + "mlp.fc1", MLP, HIDDEN),
        *linear(_L + "mlp.fc2", HIDDEN, MLP, branch_out=True),
        *layer_norm("vit.layernorm"),
        # ViTModel's pooler: its output size is config.pooler_output_size, kept
        Tensor("vit.pooler.dense.weight", (None, In(HIDDEN)), optional=True),
        Tensor("vit.pooler.dense.bias", (None,), optional=True),
        Tensor("classifier.weight", (None, In(HIDDEN))),  # [classes, D]
        Tensor("classifier.bias", (None,)),
    ),
)
