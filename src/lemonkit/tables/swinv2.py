"""Swin Transformer v2 (``Swinv2ForImageClassification``): the paper's Res-Post-Norm
blocks (appendix D.1), ``x + LN(attention(x))`` then ``x + LN(MLP(x))``, in stages whose
width doubles at each patch merge (``plan/pyramid.py`` names the spaces).

- The stream is zero filled: every write into it leaves a LayerNorm (the patch
  embedding's, the blocks' post-norms, the patch merge's), whose extra outputs are 0.
- What those norms normalise is average filled, so their statistics are the source's
  (mean kept, variance x eta^2).
- Cosine attention normalises each head's q and k over head_dim: whole heads are copied,
  with their logit scales and their rows of the continuous position-bias MLP.
- New blocks: both post-norms' weight and bias at zero, so the block adds 0 (NOTES.md 7).
- The final LayerNorm reads the zero-filled stream: its mean and variance match only when
  nothing is zero filled, so ``embed_dim`` must be a multiple of the source's
  (``indivisible_lossy``, measured with ``allow_lossy``).

Example:
    >>> SWINV2.spec("swinv2.encoder.layers.0.downsample.reduction.weight").axes[1]
    In(space=('stage0', 'stage0', 'stage0', 'stage0'))
"""

from lemonkit.tables.format import (
    ArchTable,
    Beta,
    ConfigFields,
    Gamma,
    In,
    Out,
    PyramidFields,
    Tensor,
)

MAX_STAGES = 8
_E = "swinv2.embeddings."
_S = "swinv2.encoder.layers."


def _linear(prefix: str, out: str, inp, **flags) -> tuple[Tensor, Tensor]:
    return (
        Tensor(prefix + ".weight", (Out(out), In(inp)), **flags),
        Tensor(prefix + ".bias", (Out(out),), **flags),
    )


def _post_norm(prefix: str, space: str, **flags) -> tuple[Tensor, Tensor]:
    """A block's post-norm: its output is the branch's contribution (zero in new blocks)."""
    return (
        Tensor(prefix + ".weight", (Gamma(space),), branch_out=True, post_branch=True, **flags),
        Tensor(prefix + ".bias", (Beta(space),), branch_out=True, post_branch=True, **flags),
    )


def _stage(s: int) -> tuple[Tensor, ...]:
    """Stage ``s``: its blocks (``{i}``), then its patch merge into stage s + 1."""
    stream, out, heads, head, mlp = (
        f"stage{s}{x}" for x in ("", "_out", "_heads", "_head", "_mlp")
    )
    flags = {"group": f"stage{s}", "optional": True}  # stages beyond the config do not exist
    block = f"{_S}{s}.blocks.{{i}}."
    att = block + "attention.self."
    merge = f"{_S}{s}.downsample."
    return (
        Tensor(att + "logit_scale", (Out(head), None, None), **flags),  # [H, 1, 1]
        Tensor(att + "continuous_position_bias_mlp.0.weight", (None, None), **flags),
        Tensor(att + "continuous_position_bias_mlp.0.bias", (None,), **flags),
        Tensor(att + "continuous_position_bias_mlp.2.weight", (Out(head), None), **flags),
        *_linear(att + "query", heads, stream, **flags),  # bias: qkv_bias
        Tensor(att + "key.weight", (Out(heads), In(stream)), **flags),  # no bias
        *_linear(att + "value", heads, stream, **flags),
        *_linear(block + "attention.output.dense", out, heads, **flags),
        *_post_norm(block + "layernorm_before", out, **flags),
        *_linear(block + "intermediate.dense", mlp, stream, **flags),
        *_linear(block + "output.dense", out, mlp, **flags),
        *_post_norm(block + "layernorm_after", out, **flags),
        # [2D, 4D]: reads four neighbouring patches of the stream, writes the next stage
        Tensor(merge + "reduction.weight", (Out(f"stage{s + 1}_out"), In((stream,) * 4)), **flags),
        Tensor(merge + "norm.weight", (Gamma(f"stage{s + 1}_out"),), **flags),
        Tensor(merge + "norm.bias", (Beta(f"stage{s + 1}_out"),), **flags),
    )


SWINV2 = ArchTable(
    model_types=("swinv2",),
    classes=("Swinv2ForImageClassification", "Swinv2Model"),
    # the eps the config holds (the blocks' and the final norm's; the embedding and patch
    # merge norms use nn.LayerNorm's fixed 1e-5), scaled by eta^2 with the plan's eta
    config=ConfigFields(
        hidden="embed_dim",
        layers="depths",
        heads="num_heads",
        mlp="mlp_ratio",
        norm_eps=("layer_norm_eps",),
        per_layer=(),
    ),
    stages=PyramidFields(),
    base_prefix="swinv2.",
    base_classes=("Swinv2Model",),
    norm="layernorm",
    task="image_classification",
    inputs="pixels",
    indivisible_lossy=(
        "Swin-v2's Res-Post-Norm stream is zero filled and its final LayerNorm reads it: with "
        "an embed_dim that is not a multiple of the source, that norm's mean and variance "
        "change (NOTES.md 7)"
    ),
    tensors=(
        Tensor(_E + "patch_embeddings.projection.weight", (Out("stage0_out"), None, None, None)),
        Tensor(_E + "patch_embeddings.projection.bias", (Out("stage0_out"),)),
        Tensor(_E + "norm.weight", (Gamma("stage0_out"),)),
        Tensor(_E + "norm.bias", (Beta("stage0_out"),)),
        Tensor(_E + "position_embeddings", (None, None, Out("stage0")), optional=True),
        Tensor(_E + "mask_token", (None, None, Out("stage0")), optional=True),
        *(t for s in range(MAX_STAGES) for t in _stage(s)),
        Tensor("swinv2.layernorm.weight", (Gamma("last_stage"),)),
        Tensor("swinv2.layernorm.bias", (Beta("last_stage"),)),
        Tensor("classifier.weight", (None, In("last_stage")), optional=True),  # [labels, D]
        Tensor("classifier.bias", (None,), optional=True),
    ),
    note=(
        "Res-Post-Norm (paper D.1): zero-filled stream, average-filled branch outputs; whole "
        "heads with their logit scales and position-bias rows"
    ),
)
