"""The architecture table format: per-model-type knowledge as data.

An :class:`ArchTable` lists every tensor of a model type and, for each axis, the *space*
it lives in and its *role*:

- ``Out(space)``: the axis *writes* units of the space (rows of a linear layer, a bias,
  embedding columns). Copies are gathered; extra stream units get the space's fill.
- ``In(space)``: the axis *reads* units of the space (columns of a linear layer). The
  copies of a source unit get fan-out weights that sum to the original (the symmetry
  breaking split); extra units get free random weights (they only ever see zeros).
- ``Gamma(space)`` / ``Beta(space)``: a norm's scale / shift over the stream.
- ``None``: the axis does not grow (vocabulary, positions, classes, kernel size...).

A fused axis (GPT-2's ``c_attn`` is [q; k; v]) is ``Out((HEADS, KV_HEADS, KV_HEADS))``:
consecutive segments, one per space.

Example (one LLaMA tensor)::

    Tensor("model.layers.{i}.self_attn.o_proj.weight", (Out(HIDDEN), In(HEADS)),
           branch_out=True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

SpaceRef = str | tuple[str, ...]

# the spaces of a Transformer (a table may name others: a CNN's stages, OPT's projection)
HIDDEN = "hidden"  # residual stream
HEADS = "heads"  # query heads (unit: head_dim channels)
KV_HEADS = "kv_heads"  # key/value heads (unit: head_dim channels)
MLP = "mlp"  # MLP hidden layer
HEADS_QKV = "heads_qkv"  # fused per-head [q_h; k_h; v_h] rows (unit: 3 x head_dim)
# the spaces of a mixture of experts
EXPERTS = "experts"  # routed experts (unit: one expert; router rows, the stacked expert axis)
MOE_MLP = "moe_mlp"  # an expert's MLP hidden layer, where it has a size of its own
SHARED_MLP = "shared_mlp"  # the shared expert's MLP hidden layer (Qwen2-MoE, DeepSeek)


@dataclass(frozen=True)
class Out:
    """Axis that writes units of ``space`` (producer)."""

    space: SpaceRef


@dataclass(frozen=True)
class In:
    """Axis that reads units of ``space`` (consumer)."""

    space: SpaceRef


@dataclass(frozen=True)
class Gamma:
    """Norm scale over ``space``."""

    space: SpaceRef


@dataclass(frozen=True)
class Beta:
    """Norm shift over ``space``."""

    space: SpaceRef


AxisRule = Out | In | Gamma | Beta | None


def space_names(space: SpaceRef) -> tuple[str, ...]:
    """The spaces of an axis, in order (a fused axis has several).

    >>> space_names("hidden"), space_names(("heads", "kv_heads"))
    (('hidden',), ('heads', 'kv_heads'))
    """
    return (space,) if isinstance(space, str) else space


@dataclass(frozen=True)
class Tensor:
    """One tensor of the model, named with ``{i}`` for the layer index.

    ``branch_out``: last linear of a residual branch; zeroed in new depth blocks.
    ``tied_head_norm``: the norm feeding a head tied to the input embedding; scaled by
    1/k (NOTES.md section 2) when the head is tied.
    ``stream_norm``: a norm whose *output* is the residual stream (an embedding
    LayerNorm): its extra outputs cannot equal the stream's average (NOTES.md section 10).
    ``optional``: may be absent from a checkpoint (a tied head that is not saved).
    ``per_expert``: the role of the expert index ``{e}`` in the name (checkpoints that
    save one tensor per expert): ``Out(EXPERTS)`` for what each copy of an expert copies
    (gate and up), ``In(EXPERTS)`` for what writes the expert's output (down), which the
    copies of an expert share (see :func:`lemonkit.engine.rules.expert_piece`).
    ``kept_float32``: the class keeps it in float32 whatever the checkpoint's dtype
    (``_keep_in_fp32_modules_strict``): written in float32 at most, so that its splits
    are exact in the dtype the model computes with.
    ``post_ln``: Post-LN depth by "moving the affine" (NOTES.md 6): ``"inner"`` marks a
    block's norm after attention (identity in new blocks), ``"out"`` its output norm
    (identity when a new block follows; a new block ending a run of new blocks takes the
    output norm of the original block before it).
    ``post_branch``: a norm on a residual branch's *output* (Gemma's sandwich norms,
    Swin-v2's Res-Post-Norm): what it writes is added to the stream, so it carries the
    stream scale of a fixed-eps model.
    ``absent_in`` / ``stand_in``: the target layers whose module has no such tensor
    (ModernBERT's first layer has an ``Identity`` for its attention norm). A copy of a
    layer that lacks it, placed where the class has one, gets an identity norm shaped
    like that layer's ``stand_in`` tensor.
    """

    name: str
    axes: tuple[AxisRule, ...]
    branch_out: bool = False
    tied_head_norm: bool = False
    stream_norm: bool = False
    optional: bool = False
    post_ln: str | None = None
    group: str | None = None  # a layer group with its own layer map (a CNN stage); None:
    # the Transformer's blocks (plan.layers.DEFAULT_GROUP)
    per_expert: Out | In | None = None
    kept_float32: bool = False  # transformers holds it in float32 (DeepSeek's router)
    post_branch: bool = False
    absent_in: tuple[int, ...] = ()
    stand_in: str | None = None

    @property
    def per_layer(self) -> bool:
        return "{i}" in self.name

    def regex(self) -> re.Pattern:
        """``{i}`` captures the layer index, ``{e}`` the expert index."""
        pattern = re.escape(self.name).replace(r"\{i\}", r"(?P<i>\d+)")
        pattern = pattern.replace(r"\{e\}", r"(?P<e>\d+)")
        return re.compile("^" + pattern + "$")

    def with_layer(self, name: str, layer: int) -> str:
        """``name`` (a concrete name of this entry) with its layer index replaced."""
        return self._with(name, "i", layer)

    def with_expert(self, name: str, expert: int) -> str:
        """``name`` with its expert index replaced.

        >>> Tensor("l.{i}.experts.{e}.w", (None,)).with_expert("l.3.experts.1.w", 5)
        'l.3.experts.5.w'
        """
        return self._with(name, "e", expert)

    def expert_of(self, name: str) -> int:
        return int(self.regex().match(name).group("e"))

    def _with(self, name: str, group: str, index: int) -> str:
        m = self.regex().match(name)
        return name[: m.start(group)] + str(index) + name[m.end(group) :]


@dataclass(frozen=True)
class ConfigFields:
    """Names of the config attributes that carry each size (None: not in this config)."""

    hidden: str
    layers: str
    heads: str
    mlp: str
    norm_eps: tuple[str, ...]
    kv_heads: str | None = None
    head_dim: str | None = None  # explicit head_dim attribute, if the config has one
    mlp_default_mult: int | None = None  # mlp field None means this many x hidden (GPT-2)
    per_layer: tuple[str, ...] = ("layer_types",)  # config lists with one entry per layer
    also_heads: tuple[str, ...] = ()  # fields that must equal the head count (MLA's KV heads)


@dataclass(frozen=True)
class ExpertFields:
    """A mixture of experts' config names and how its router weighs copies of an expert.

    ``router``: ``"softmax"`` (probabilities over all experts: m copies of an expert share
    its probability, so each copy's output is weighted 1/m) or ``"sigmoid"`` (independent
    scores: a copy keeps its score, and only renormalised top-k weights are shared).
    ``renorm``: the config flag saying the top-k weights are renormalised
    (``norm_topk_prob``); None where they always are (Mixtral) or where the softmax runs
    over the selected experts only (gpt-oss). ``scaled``: fields multiplied with the
    expert count (DeepSeek's expert groups). ``mlp``: the expert MLP's own size field
    (``moe_intermediate_size``); None where the experts use ``intermediate_size``.
    ``shared_mlp``: the shared expert's size field (Qwen2-MoE); ``shared_experts``: a
    field saying the shared MLP is that many expert MLPs wide (DeepSeek).
    """

    count: str
    top_k: str = "num_experts_per_tok"
    router: str = "softmax"
    renorm: str | None = None
    scaled: tuple[str, ...] = ()
    mlp: str | None = None
    shared_mlp: str | None = None
    shared_experts: str | None = None


@dataclass(frozen=True)
class DenseLayers:
    """How a config says which blocks have a dense MLP instead of experts: a list of
    their indices (Qwen's ``mlp_only_layers``) with experts every ``sparse_step``-th
    layer, or the first ``first_k`` layers (DeepSeek's ``first_k_dense_replace``)."""

    index_list: str | None = None
    sparse_step: str | None = None
    first_k: str | None = None


@dataclass(frozen=True)
class DerivedSpace:
    """A space that follows another's map with its own unit size: a per-head scalar
    (unit 1), MLA's per-head q / kv / v blocks (units from config fields), gpt-oss's
    interleaved [gate_j, up_j] pairs (unit 2)."""

    name: str
    base: str
    unit_fields: tuple[str, ...] = ()  # unit size = sum of these config fields
    unit_size: int = 1  # where no fields are named


@dataclass(frozen=True)
class StageFields:
    """A staged CNN's config names: per-stage widths and depths, the stem width, and the
    bottleneck reduction (space names: ``stem``, ``stage{s}``, ``stage{s}_mid``)."""

    embedding: str = "embedding_size"
    widths: str = "hidden_sizes"
    depths: str = "depths"
    reduction: int = 4


@dataclass(frozen=True)
class PyramidFields:
    """A hierarchical vision Transformer's config names (Swin-v2): the first stage's width,
    which each patch merge multiplies by ``width_mult``, per-stage heads and depths, the
    MLP ratio, and the derived last-stage width (space names in ``plan/pyramid.py``)."""

    embed_dim: str = "embed_dim"
    heads: str = "num_heads"
    depths: str = "depths"
    mlp_ratio: str = "mlp_ratio"
    last_width: str = "hidden_size"
    width_mult: int = 2
    # blocks are built by their position modulo this (Swin: even blocks attend in windows,
    # odd ones in shifted windows), so a block must keep its position's residue
    block_period: int = 2


# the field names most transformers configs use
STANDARD_FIELDS = ConfigFields(
    hidden="hidden_size",
    layers="num_hidden_layers",
    heads="num_attention_heads",
    mlp="intermediate_size",
    norm_eps=("layer_norm_eps",),
)


@dataclass(frozen=True)
class ArchTable:
    """Everything lemonkit knows about one model type. See the module docstring."""

    model_types: tuple[str, ...]
    classes: tuple[str, ...]  # transformers classes this table describes
    config: ConfigFields | None  # a Transformer's size fields (None: a staged CNN, ``stages``)
    norm: str  # "layernorm" (avg-filled stream) or "rmsnorm" (zero-filled stream)
    tensors: tuple[Tensor, ...]
    task: str  # "causal_lm", "masked_lm", "image_classification" or "base" (no head)
    base_prefix: str = ""  # prefix of the base model's tensors in the head model
    base_classes: tuple[str, ...] = ()  # classes whose checkpoints lack base_prefix
    tie_embeddings: tuple[str, str] | None = None  # (head, embedding) when they can be tied
    indivisible_lossy: str | None = None  # why indivisible widths cannot be exact
    inputs: str = "tokens"  # what verify feeds the model: "tokens" or "pixels"
    # True where a norm eps cannot follow eta^2 (shared with per-head q/k norms, or fixed in
    # the library): the stream is scaled by 1/eta instead, and eps stays
    fixed_eps: bool = False
    # (space, config field): the space is the stream when the field equals the hidden size
    # (or is None), else a kept space of that size (OPT's word_embed_proj_dim)
    maybe_stream: tuple[tuple[str, str], ...] = ()
    norm_offset: float = 0.0  # norms multiply by (offset + weight): Gemma's (1 + w)
    dead_heads: bool = False  # q/k norms over all heads: whole copies + dead heads (OLMo2)
    # the model multiplies embeddings by sqrt(hidden_size) (Gemma): this table's input
    # embedding tensor, or None
    embed_scale_sqrt_hidden: str | None = None
    # a staged CNN (ResNet) or a hierarchical Transformer (Swin) instead of one stream
    stages: StageFields | PyramidFields | None = None
    # user-declared models (lemonkit.register): built as model_class(config_class(**json))
    model_class: type | None = None
    config_class: type | None = None
    # (config field, required value, why): configurations the table does not describe
    requires: tuple[tuple[str, object, str], ...] = ()
    vocab: tuple[str, ...] = ()  # tensors whose axis 0 is the vocabulary
    # (name on disk, name in the table) where checkpoints use other names than the modules
    aliases: tuple[tuple[str, str], ...] = ()
    experts: ExpertFields | None = None  # a mixture of experts (more experts: num_experts)
    dense_layers: DenseLayers | None = None  # an MoE whose config makes some blocks dense
    derived: tuple[DerivedSpace, ...] = ()  # spaces following another space's map
    note: str = ""  # one line for ``lemonkit list``: what is special, how it is handled

    def base_model(self) -> ArchTable:
        """The table of the headless model: prefix stripped, head tensors dropped."""
        p = self.base_prefix
        strip = lambda names: tuple(n[len(p) :] for n in names if n.startswith(p))  # noqa: E731
        return replace(
            self,
            tensors=tuple(
                replace(t, name=t.name[len(p) :]) for t in self.tensors if t.name.startswith(p)
            ),
            aliases=tuple(
                zip(
                    strip(a for a, _ in self.aliases),
                    strip(c for _, c in self.aliases),
                    strict=True,
                )
            ),
            vocab=strip(self.vocab),
            tie_embeddings=None,
            embed_scale_sqrt_hidden=next(iter(strip([self.embed_scale_sqrt_hidden or ""])), None),
            task="base",
        )

    @property
    def stream_fill(self) -> str:
        return "avg" if self.norm == "layernorm" else "zero"

    def match(self, name: str) -> tuple[Tensor, int | None] | None:
        """The table entry for a concrete tensor name and its layer index, or None.

        A name matching an alias gets the aliased entry renamed to the alias, so that
        target names keep the checkpoint's naming.
        """
        for spec in self.tensors:
            m = spec.regex().match(name)
            if m:
                return spec, (int(m.group("i")) if spec.per_layer else None)
        for alias, canonical in self.aliases:
            aliased = replace(self.spec(canonical), name=alias)
            m = aliased.regex().match(name)
            if m:
                return aliased, (int(m.group("i")) if aliased.per_layer else None)
        return None

    def spec(self, name: str) -> Tensor:
        return next(t for t in self.tensors if t.name == name)

    def names_for(self, spec: Tensor) -> list[str]:
        """The table name of an entry and its aliases (checkpoints may use either)."""
        return [spec.name] + [a for a, c in self.aliases if c == spec.name]


def linear(prefix: str, out: SpaceRef, inp: SpaceRef, **flags) -> tuple[Tensor, Tensor]:
    """``prefix.weight`` [out, in] and ``prefix.bias`` [out] of an ``nn.Linear``."""
    return (
        Tensor(prefix + ".weight", (Out(out), In(inp)), **flags),
        Tensor(prefix + ".bias", (Out(out),), **flags),
    )


def layer_norm(prefix: str, space: SpaceRef | None = "hidden", **flags) -> tuple[Tensor, Tensor]:
    """``prefix.weight`` and ``prefix.bias`` of an ``nn.LayerNorm`` over ``space``
    (``None``: over an axis that does not grow, such as a per-head norm)."""
    rules = (Gamma(space), Beta(space)) if space else (None, None)
    return (
        Tensor(prefix + ".weight", (rules[0],), **flags),
        Tensor(prefix + ".bias", (rules[1],), **flags),
    )


def expert_mlp(
    prefix: str, names: tuple[str, str, str], mlp: SpaceRef, **flags
) -> tuple[Tensor, Tensor, Tensor]:
    """One expert's (or a dense) SwiGLU MLP saved per expert: ``prefix`` holds ``{e}``,
    ``names`` are the gate, up and down linears ([F, D], [F, D], [D, F]). Gate and up are
    copied with their expert; down writes the expert's output, which copies share."""
    gate, up, down = names
    return (
        Tensor(f"{prefix}{gate}.weight", (Out(mlp), In(HIDDEN)), per_expert=Out(EXPERTS), **flags),
        Tensor(f"{prefix}{up}.weight", (Out(mlp), In(HIDDEN)), per_expert=Out(EXPERTS), **flags),
        Tensor(
            f"{prefix}{down}.weight",
            (Out(HIDDEN), In(mlp)),
            per_expert=In(EXPERTS),
            branch_out=True,
            **flags,
        ),
    )
