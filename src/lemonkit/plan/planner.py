"""The expansion plan: resolved sizes, one index map per space, the layer groups, the options.

A plan is computed from the source config and the requested sizes only (no weights), so
it can be printed (``lemonkit plan``), recorded (provenance file) and applied tensor by
tensor to a checkpoint that does not fit in memory.

Example:
    >>> from transformers import GPT2Config
    >>> plan = make_plan(GPT2Config(n_embd=64, n_head=4, n_layer=2), hidden_size=96)
    >>> plan.target.hidden_size, plan.target.num_heads, plan.maps["hidden"].eta ** 2
    (96, 6, 0.6666666666666666)
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from lemonkit.errors import CheckpointError, ImpossibleExpansionError
from lemonkit.plan.experts import experts_lossy, experts_record, write_expert_config
from lemonkit.plan.layer_config import remap_layer_config
from lemonkit.plan.layers import DEFAULT_GROUP, LayerGroup
from lemonkit.plan.layouts import layout_of
from lemonkit.plan.methods import (
    NEW_BLOCK_ROWS,
    SPLIT_RULES,
    DepthRule,
    WidthMethod,
    depth_rule,
    lossy_reason,
    split_rule,
    width,
)
from lemonkit.plan.spaces import HEADS, HIDDEN, SpaceMap
from lemonkit.plan.targets import FLOAT, Options, Targets, split_growth
from lemonkit.tables import table_for
from lemonkit.tables.format import ArchTable


@dataclass(frozen=True)
class ExpansionPlan:
    """What the engine needs to expand any tensor of one checkpoint."""

    table: ArchTable
    source_config: Any
    target_config: Any
    source: Targets  # the source's sizes
    target: Targets  # the target's sizes (every size the family has, resolved)
    maps: dict[str, SpaceMap]
    groups: dict[str, LayerGroup]  # a Transformer: {"layers": ...}; a CNN: one per stage
    options: Options
    tied: bool  # the head is tied to the input embedding
    lossy_reason: str | None = None
    upcycle: dict | None = None  # a dense model upcycled to this MoE first (plan.upcycle)

    @property
    def seed(self) -> int:
        return self.options.seed

    @property
    def method(self) -> str:
        return self.options.method

    @property
    def depth(self) -> str:
        return self.options.depth

    @property
    def sigma(self) -> float:
        """The standard deviation of the paper's free parameters (C.4): ``options.sigma``,
        else 0.02 for image models (ViT) and 0.002 for language models (BERT)."""
        if self.options.sigma is not None:
            return self.options.sigma
        return 0.02 if self.table.inputs == "pixels" else 0.002

    @property
    def split(self) -> str:
        """The consumer-axis split rule: ``options.split``, else the width method's."""
        return self.options.split or self.width_method.split

    @property
    def width_method(self) -> WidthMethod:
        return width(self.options.method)

    @property
    def depth_rule(self) -> DepthRule:
        return depth_rule(self.options.depth)

    @property
    def layer_map(self) -> list[int]:
        """The Transformer's layer map (target layer -> source layer); [] for a CNN."""
        group = self.groups.get(DEFAULT_GROUP)
        return list(group.layer_map) if group else []

    @property
    def new_layers(self) -> list[bool]:
        group = self.groups.get(DEFAULT_GROUP)
        return list(group.new) if group else []

    def group_of(self, group: str | None) -> LayerGroup:
        """The layer group a tensor of table group ``group`` (None: the blocks) follows."""
        return self.groups[group or DEFAULT_GROUP]

    @property
    def model_type(self) -> str:
        return self.source_config.model_type

    @property
    def head_dim(self) -> int | None:
        return self.maps[HEADS].unit_size if HEADS in self.maps else None

    @property
    def eta(self) -> float:
        """The stream's norm rescale sqrt(k Ds/Dt) (1 for models without a stream norm)."""
        return self.maps[HIDDEN].eta if HIDDEN in self.maps else 1.0

    @property
    def stream_scale(self) -> float:
        """Factor on everything written into the stream: 1, or 1/eta where the norm eps
        cannot be rescaled (then ms(x*) = ms(x) and the norms need no new eps)."""
        return 1.0 / self.eta if self.table.fixed_eps else 1.0

    @property
    def norm_eps_scale(self) -> float:
        return 1.0 if self.table.fixed_eps else self.eta**2

    @property
    def expected_error(self) -> float:
        """The float64 error this plan is exact to: 1e-12, or O(eps) for Post-LN depth."""
        post_ln = any(t.post_ln for t in self.table.tensors) and any(self.new_layers)
        if not post_ln:
            return 1e-12
        eps = max(getattr(self.source_config, n) for n in self.table.config.norm_eps)
        return eps + 1e-12  # measured: 0.05 eps at eps 1e-5, 1.1e-12 at eps 1e-12

    def to_json(self) -> dict:
        """A JSON-able record of every choice (for the provenance file)."""
        stages = {n: list(g.layer_map) for n, g in self.groups.items() if n != DEFAULT_GROUP}
        return {
            "model_type": self.model_type,
            "method": self.method,
            "depth": self.depth,
            "seed": self.seed,
            "source_sizes": self.source.given(),
            "target_sizes": self.target.given(),
            "head_dim": self.head_dim,
            "tied_embeddings": self.tied,
            "layer_map": self.layer_map,
            "stage_layer_maps": stages,
            "new_layers": [i for i, new in enumerate(self.new_layers) if new],
            "spaces": {name: m.to_json() for name, m in self.maps.items()},
            "eta": self.eta,
            "norm_eps_scale": self.norm_eps_scale,
            "stream_scale": self.stream_scale,
            "lossy_reason": self.lossy_reason,
            "expected_error_fp64": self.expected_error,
            "symmetry_breaking": (
                SPLIT_RULES[self.options.split].note
                if self.options.split
                else self.width_method.note
            ),
            "depth_rule": self.depth_rule.note,
            "options": asdict(self.options),
            "sigma": self.sigma,
            "split": self.split,
            "new_blocks": NEW_BLOCK_ROWS[self.options.new_blocks].summary,
            **({"experts": experts_record(self)} if self.table.experts else {}),
            **({"upcycle": self.upcycle} if self.upcycle else {}),
        }


def _check_source(src: Targets, table: ArchTable) -> None:
    """The source's sizes, as config.json gives them, are positive whole numbers and
    its query heads a multiple of its KV heads (an edited config fails here, in one line)."""
    floats = {f.name for f in fields(Targets) if f.metadata["kind"] == FLOAT}
    for name, value in src.given().items():
        if name in floats:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                 for v in values):  # fmt: skip
            raise CheckpointError(
                f"config.json of the {table.model_types[0]} source: {name} is {value!r}, "
                "not a positive whole number"
            )
    if src.num_heads and src.num_kv_heads and src.num_heads % src.num_kv_heads:
        raise CheckpointError(
            f"config.json of the {table.model_types[0]} source: {src.num_heads} heads are "
            f"not a multiple of its {src.num_kv_heads} KV heads"
        )


def make_plan(
    config: Any,
    targets: Targets | None = None,
    options: Options | None = None,
    *,
    base_model: bool | None = None,
    **growth: Any,
) -> ExpansionPlan:
    """Resolve the target sizes (left-out ones keep the source's) and build the maps.

    Give ``targets`` and ``options``, or their fields as keywords (``hidden_size=768,
    num_layers=12, seed=0, method="lemon"``: :mod:`lemonkit.plan.targets`). Heads follow
    the hidden size with head_dim kept; KV heads keep the source's group size when it
    divides the new head count, else the source's KV head count. ``base_model``: the
    checkpoint is a headless model (``LlamaModel``, ``BertModel``...); None decides from
    ``config.architectures``. Staged CNNs (ResNet) take per-stage ``hidden_sizes`` and
    ``depths`` and the stem's ``embedding_size`` instead.

    What cannot be lossless (the operators ``method="aki"`` and ``depth="stack"``, an
    indivisible width of a table that cannot be exact at it) is refused unless
    ``allow_lossy``, and then recorded in ``lossy_reason``.
    """
    if growth:
        if targets is not None or options is not None:
            raise TypeError("give Targets/Options or their fields as keywords, not both")
        targets, options = split_growth(growth)
    targets, options = targets or Targets(), options or Options()
    method, depth = width(options.method), depth_rule(options.depth)
    if options.split is not None:
        split_rule(options.split)
    if not 0.0 <= options.spread < 1.0:
        raise ImpossibleExpansionError(
            f"spread must be in [0, 1), got {options.spread}: at 1 or more a copy's fraction "
            "(1 + u v)/c can leave its element's binade, and the split is no longer exact"
        )
    if options.sigma is not None and not 0.0 <= options.sigma < math.inf:
        raise ImpossibleExpansionError(
            f"sigma must be a finite standard deviation >= 0, got {options.sigma}: NaN or "
            "infinite noise makes the expanded weights non-finite"
        )
    if options.new_blocks not in NEW_BLOCK_ROWS:
        raise ImpossibleExpansionError(
            f"new_blocks must be one of {tuple(NEW_BLOCK_ROWS)}, got {options.new_blocks!r}"
        )
    if options.new_blocks == "next" and not depth.zero_branch:
        raise ImpossibleExpansionError(
            f'new_blocks="next" builds zero-output new blocks (LEMON C.4); depth='
            f"{options.depth!r} does not (a stacked block would take its branch from the "
            "next layer and its last linears from its own)"
        )
    if method.donor and depth.cancel:
        raise ImpossibleExpansionError(
            f'method={method.name!r} with depth="cancel": a type-2 block pairs its units, '
            "each partner taking its leader's fan-in, which would overwrite the donor rows "
            "(the combination is cancel without the donor); pick one of the two"
        )
    table = _table(config, base_model)
    layout = layout_of(table)
    _check_applies(table, layout, targets, method, depth)
    operators_lossy = lossy_reason(method, depth)
    if operators_lossy and not options.allow_lossy:
        raise ImpossibleExpansionError(
            f"not lossless: {operators_lossy}. These are growth baselines; pass "
            "allow_lossy=True (--allow-lossy) to build them anyway"
        )
    src = layout.source(config, table)
    _check_source(src, table)
    tgt = layout.target(table, config, src, targets)
    groups = layout.groups(src, tgt, targets, depth)
    maps = layout.spaces(table, config, src, tgt)
    for field_name, value, why in table.requires:
        if getattr(config, field_name, value) != value:
            raise ImpossibleExpansionError(f"{field_name}={getattr(config, field_name)!r}: {why}")
    lossy = _indivisible_lossy(table, maps.get(HIDDEN), layout.sizes[0], options.allow_lossy)
    lossy = "; ".join(r for r in (lossy, operators_lossy, experts_lossy(src, tgt, options)) if r)
    plan = ExpansionPlan(
        table=table,
        source_config=config,
        target_config=None,
        source=src,
        target=tgt,
        maps=maps,
        groups=groups,
        options=options,
        tied=bool(table.tie_embeddings and getattr(config, "tie_word_embeddings", False)),
        lossy_reason=lossy or None,
    )
    return _with_target_config(plan)


def _table(config: Any, base_model: bool | None) -> ArchTable:
    """The table of ``config.model_type``, headless if the checkpoint is a base model."""
    table = table_for(config.model_type)
    if base_model is None:
        archs = getattr(config, "architectures", None) or []
        base_model = bool(archs) and archs[0] in table.base_classes
    return table.base_model() if base_model else table


def _check_applies(table, layout, targets: Targets, method, depth) -> None:
    """Sizes of the other layout and operators the layout does not define are refused."""
    model_type = table.model_types[0]
    extra = [k for k in targets.given() if k not in layout.sizes]
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in layout.sizes)
        raise ImpossibleExpansionError(
            f"{model_type} {layout.grows}: it takes {', '.join(layout.sizes)} ({flags}), "
            f"not {', '.join(extra)}"
        )
    if table.stages:
        for kind, row in (("method", method), ("depth", depth)):
            if not row.staged:
                raise ImpossibleExpansionError(
                    f"{kind} {row.name} is defined for Transformer stacks; {model_type} "
                    f"{layout.grows} (use method lemon or net2net, depth zero)"
                )


def _indivisible_lossy(
    table: ArchTable, stream: SpaceMap | None, width: str, allow: bool
) -> str | None:
    """A table that cannot be exact at an indivisible width (of the ``stream`` map, sized
    by the layout's ``width``): refused, or the reason."""
    if not table.indivisible_lossy or stream.tgt_units % stream.src_units == 0:
        return None
    if not allow:
        raise ImpossibleExpansionError(
            f"{'hidden size' if width == 'hidden_size' else width} {stream.src_units} -> "
            f"{stream.tgt_units} is not a multiple and cannot be lossless: "
            f"{table.indivisible_lossy}. Use a multiple of "
            f"{stream.src_units}, or pass allow_lossy=True (--allow-lossy) for the best "
            "approximation"
        )
    return table.indivisible_lossy


def _with_target_config(plan: ExpansionPlan) -> ExpansionPlan:
    """The plan with its target config: a copy of the source config with the target
    sizes, the rescaled norm eps, per-layer fields (``layer_types``, an MoE's dense
    blocks) remapped, and the experts' fields (count, experts per token)."""
    cfg = copy.deepcopy(plan.source_config)
    table = plan.table
    layout_of(table).write_config(cfg, table, plan.target, plan.head_dim)
    if table.config is not None:
        for name in table.config.norm_eps:
            setattr(cfg, name, getattr(cfg, name) * plan.norm_eps_scale)
        # layer_types, the dense blocks of an MoE
        remap_layer_config(cfg, table, plan.layer_map, plan.source.num_layers)
        write_expert_config(cfg, table, plan.source, plan.target, plan.options.keep_top_k)
    for space, field_name in table.maybe_stream:  # a size that follows the stream
        if plan.maps[space] is plan.maps[HIDDEN] and getattr(cfg, field_name, None):
            setattr(cfg, field_name, plan.target.hidden_size)
    return replace(plan, target_config=cfg)
