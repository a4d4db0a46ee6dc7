"""ResNet (``ResNetForImageClassification``, bottleneck blocks).

Channels are expanded per stage (``stage{s}``: the block outputs, ``stage{s}_mid``: the
bottleneck's inner width, ``stem``: the embedder). BatchNorm (in eval mode) is per
channel, so channels are replicated circularly at any ratio, each BatchNorm and its
running statistics copied, and the next convolution's fan-in split over the copies.
New blocks are appended in their stage as copies of a block after the first (the first
has the stage's input width and shortcut), with the last BatchNorm's weight and bias at
zero: the block adds zero and ReLU(x) = x for its non-negative input.
"""

from lemonkit.tables.format import (
    ArchTable,
    ConfigFields,
    In,
    Out,
    StageFields,
    Tensor,
)

MAX_STAGES = 8
_S = "resnet.encoder.stages."


def _conv_bn(prefix: str, out: str, inp: str, *, branch_out=False, **flags) -> tuple[Tensor, ...]:
    """``prefix.convolution`` [out, in, k, k] and ``prefix.normalization`` (BatchNorm)."""
    norm = prefix + ".normalization."
    return (
        Tensor(prefix + ".convolution.weight", (Out(out), In(inp), None, None), **flags),
        Tensor(norm + "weight", (Out(out),), branch_out=branch_out, **flags),
        Tensor(norm + "bias", (Out(out),), branch_out=branch_out, **flags),
        Tensor(norm + "running_mean", (Out(out),), **flags),
        Tensor(norm + "running_var", (Out(out),), **flags),
        Tensor(norm + "num_batches_tracked", (), **flags),
    )


def _stage(s: int) -> tuple[Tensor, ...]:
    """Tensors of stage ``s``: its first block (input width, shortcut), then the others."""
    stage, mid, prev = f"stage{s}", f"stage{s}_mid", ("stem" if s == 0 else f"stage{s - 1}")
    first, block = f"{_S}{s}.layers.0.", f"{_S}{s}.layers.{{i}}."
    group = {"group": stage}  # required where the config has the stage (plan.checks)
    return (  # the shortcut is an Identity where the widths and strides match
        *_conv_bn(first + "shortcut", stage, prev, optional=True, **group),
        *_conv_bn(first + "layer.0", mid, prev, **group),  # before the {i} entries: wins
        *_conv_bn(block + "layer.0", mid, stage, **group),
        *_conv_bn(block + "layer.1", mid, mid, **group),
        *_conv_bn(block + "layer.2", stage, mid, branch_out=True, **group),
    )


RESNET = ArchTable(
    model_types=("resnet",),
    classes=("ResNetForImageClassification",),
    config=ConfigFields(hidden="embedding_size", layers="depths", heads="", mlp="", norm_eps=()),
    stages=StageFields(),
    norm="batchnorm",
    task="image_classification",
    inputs="pixels",
    requires=(("layer_type", "bottleneck", "basic-block ResNets are not supported yet"),),
    tensors=(
        *_conv_bn("resnet.embedder.embedder", "stem", "pixels"),
        *(t for s in range(MAX_STAGES) for t in _stage(s)),
        Tensor("classifier.1.weight", (None, In("last_stage"))),  # [labels, last width]
        Tensor("classifier.1.bias", (None,)),
    ),
)
