"""The expansion plan: target sizes, one index map per space, the layer map, the seed.

A plan is computed from the source config and the requested sizes only (no weights), so
it can be printed (``lemonkit plan``), recorded (provenance file) and applied tensor by
tensor to a checkpoint that does not fit in memory.

Example:
    >>> from transformers import GPT2Config
    >>> plan = make_plan(GPT2Config(n_embd=64, n_head=4, n_layer=2), hidden_size=96)
    >>> plan.sizes["hidden"], plan.sizes["heads"], plan.maps["hidden"].eta ** 2
    (96, 6, 0.6666666666666666)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from lemonkit.architectures import table_for
from lemonkit.architectures.base import ArchTable
from lemonkit.errors import ImpossibleExpansionError
from lemonkit.spaces import (
    HEADS_QKV,
    HIDDEN,
    MLP,
    SpaceMap,
    attention_maps,
    check_layer_map,
    circular_map,
    dead_head_maps,
    default_layer_map,
    stack_layer_map,
    stream_map,
)

# width methods: LEMON's unequal splits; Net2Net / bert2BERT-FPI equal splits; bert2BERT-AKI
METHODS = ("lemon", "net2net", "aki")
# depth: new blocks with their residual branch zeroed (lossless); StackBERT's whole-stack copy
DEPTHS = ("zero", "stack")


@dataclass
class ExpansionPlan:
    """What the engine needs to expand any tensor of one checkpoint."""

    table: ArchTable
    source_config: Any
    target_config: Any
    sizes: dict[str, int]  # target sizes: hidden, heads, kv_heads, mlp, layers, head_dim
    source_sizes: dict[str, int]
    maps: dict[str, SpaceMap]
    layer_map: list[int]
    new_layers: list[bool]
    method: str = "lemon"
    seed: int = 0
    depth: str = "zero"
    tied: bool = False
    lossy_reason: str | None = None
    notes: list[str] = field(default_factory=list)
    # layer groups with their own maps (CNN stages): group -> (layer map, new blocks)
    groups: dict[str, tuple[list[int], list[bool]]] = field(default_factory=dict)

    def layer_map_of(self, group: str | None) -> tuple[list[int], list[bool]]:
        """The layer map and new-block flags that a tensor of ``group`` follows."""
        return self.groups[group] if group else (self.layer_map, self.new_layers)

    @property
    def split(self) -> str:
        """The fan-out split of consumer axes: ``"lemon"`` (unequal) or ``"net2net"``
        (equal 1/n, also the base of ``aki``)."""
        return "lemon" if self.method == "lemon" else "net2net"

    @property
    def zero_new_branches(self) -> bool:
        """New blocks start with their residual branch's last linear at zero (depth
        ``"zero"``); ``"stack"`` copies it as it is."""
        return self.depth == "zero"

    @property
    def model_type(self) -> str:
        return self.source_config.model_type

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
    def expected_error(self) -> float:
        """The float64 error this plan is exact to: 1e-12, or O(eps) for Post-LN depth."""
        post_ln = any(t.post_ln for t in self.table.tensors) and any(self.new_layers)
        if not post_ln:
            return 1e-12
        eps = max(getattr(self.source_config, n) for n in self.table.config.norm_eps)
        return eps + 1e-12  # measured: 0.05 eps at eps 1e-5, 1.1e-12 at eps 1e-12

    def to_json(self) -> dict:
        """A JSON-able record of every choice (for the provenance file)."""
        return {
            "model_type": self.model_type,
            "method": self.method,
            "depth": self.depth,
            "seed": self.seed,
            "source_sizes": self.source_sizes,
            "target_sizes": self.sizes,
            "tied_embeddings": self.tied,
            "layer_map": self.layer_map,
            "stage_layer_maps": {g: m for g, (m, _) in self.groups.items()},
            "new_layers": [i for i, new in enumerate(self.new_layers) if new],
            "spaces": {name: m.to_json() for name, m in self.maps.items()},
            "eta": self.eta,
            "norm_eps_scale": 1.0 if self.table.fixed_eps else self.eta**2,
            "stream_scale": self.stream_scale,
            "lossy_reason": self.lossy_reason,
            "expected_error_fp64": self.expected_error,
            "symmetry_breaking": _symmetry_note(self.method),
            "depth_rule": _depth_note(self.depth),
            "notes": self.notes,
        }


def _symmetry_note(method: str) -> str:
    if method == "net2net":
        return "equal 1/n fan-out splits (Net2Net / bert2BERT-FPI): replicas stay identical"
    if method == "aki":
        return (
            "bert2BERT-AKI: equal 1/n fan-out splits (FPI), then the new units' fan-in (their "
            "rows in each layer's tensors) copied from the FPI expansion of the next source "
            "layer (the top layer keeps its own): not lossless"
        )
    return (
        "unequal per-element fan-out splits, weights U(0.5, 1.5) normalised per copy group "
        "(LEMON 4.1); free columns N(0, std(W)^2); extra norm scales U(-1, 1) (C.4); new "
        "blocks: copies of their source block with fresh splits"
    )


def _depth_note(depth: str) -> str:
    if depth == "stack":
        return (
            "StackBERT: new blocks are copies of their source block (default map: the whole "
            "stack repeated on top), residual branches kept: not lossless"
        )
    return "new blocks copy their source block with the residual branch's last linear zeroed"


def baseline_lossy_reason(method: str, depth: str) -> str | None:
    """Why a growth baseline (``aki``, ``stack``) is not lossless, or None."""
    reasons = []
    if method == "aki":
        reasons.append(
            "method aki (bert2BERT-AKI) gives new units the next layer's fan-in, which "
            "changes the function"
        )
    if depth == "stack":
        reasons.append(
            "depth stack (StackBERT) keeps new blocks' residual branches, which changes "
            "the function"
        )
    return "; ".join(reasons) or None


def source_sizes(config: Any, table: ArchTable) -> dict[str, int]:
    """hidden / heads / kv_heads / head_dim / mlp / layers of a config, by the table."""
    f = table.config
    hidden = getattr(config, f.hidden)
    heads = getattr(config, f.heads)
    kv = getattr(config, f.kv_heads, None) if f.kv_heads else None
    head_dim = getattr(config, f.head_dim, None) if f.head_dim else None
    mlp = getattr(config, f.mlp, None)
    if mlp is None and f.mlp_default_mult:
        mlp = f.mlp_default_mult * hidden
    return {
        "hidden": hidden,
        "heads": heads,
        "kv_heads": kv or heads,
        "head_dim": head_dim or hidden // heads,
        "mlp": mlp,
        "layers": getattr(config, f.layers),
    }


def make_plan(
    config: Any,
    *,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    num_heads: int | None = None,
    num_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    layer_map: list[int] | None = None,
    seed: int = 0,
    method: str = "lemon",
    depth: str = "zero",
    allow_lossy: bool = False,
    base_model: bool | None = None,
    hidden_sizes: list[int] | None = None,
    depths: list[int] | None = None,
    embedding_size: int | None = None,
) -> ExpansionPlan:
    """Resolve the target sizes (left-out ones keep the source's) and build the maps.

    Heads follow the hidden size with head_dim kept; KV heads keep the source's group
    size when it divides the new head count, else the source's KV head count.
    ``base_model``: the checkpoint is a headless model (``LlamaModel``, ``BertModel``...);
    None decides from ``config.architectures``. Staged CNNs (ResNet) take per-stage
    ``hidden_sizes`` and ``depths`` and the stem's ``embedding_size`` instead.

    ``method``: ``"lemon"`` (unequal splits), ``"net2net"`` (equal splits) or ``"aki"``
    (bert2BERT-AKI, not lossless). ``depth``: ``"zero"`` (new blocks' branch output zeroed,
    lossless) or ``"stack"`` (StackBERT: default map ``[i % L_src]``, nothing zeroed, not
    lossless). The baselines are recorded in ``lossy_reason``; the folder path refuses
    them without ``allow_lossy``.
    """
    if method not in METHODS:
        raise ImpossibleExpansionError(f"method must be one of {METHODS}, got {method!r}")
    if depth not in DEPTHS:
        raise ImpossibleExpansionError(f"depth must be one of {DEPTHS}, got {depth!r}")
    table = table_for(config.model_type)
    if base_model is None:
        archs = getattr(config, "architectures", None) or []
        base_model = bool(archs) and archs[0] in table.base_classes
    if base_model:
        table = table.base_model()
    stage_args = (hidden_sizes, depths, embedding_size)
    transformer_args = (hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size)
    if table.stages:
        if any(a is not None for a in (*transformer_args, layer_map)):
            raise ImpossibleExpansionError(
                f"{config.model_type} grows per stage: give hidden_sizes, depths and "
                "embedding_size (--hidden-sizes, --depths, --embedding-size)"
            )
        if method == "aki" or depth != "zero":
            raise ImpossibleExpansionError(
                f"method aki and depth stack are defined for Transformer stacks; "
                f"{config.model_type} grows per stage (use method lemon or net2net)"
            )
        from lemonkit.stages import stage_plan  # local import: stages imports plan

        return stage_plan(config, table, hidden_sizes, depths, embedding_size, seed, method)
    if any(a is not None for a in stage_args):
        raise ImpossibleExpansionError(
            f"hidden_sizes, depths and embedding_size are for staged CNNs; {config.model_type} "
            "takes hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size"
        )
    src = source_sizes(config, table)
    tgt = _target_sizes(
        table, src, hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size
    )
    if layer_map is not None:
        layer_map = list(layer_map)
        if num_layers is not None and num_layers != len(layer_map):
            raise ImpossibleExpansionError(
                f"num_layers={num_layers} but the layer map has {len(layer_map)} entries"
            )
        tgt["layers"] = len(layer_map)
    default_map = stack_layer_map if depth == "stack" else default_layer_map
    lmap = layer_map if layer_map is not None else default_map(src["layers"], tgt["layers"])
    new_layers = check_layer_map(lmap, src["layers"])
    head_maps = dead_head_maps if table.dead_heads else attention_maps
    heads_map, kv_map = head_maps(
        src["heads"], src["kv_heads"], tgt["heads"], tgt["kv_heads"], src["head_dim"]
    )
    maps = {
        HIDDEN: stream_map(src["hidden"], tgt["hidden"], fill=table.stream_fill),
        heads_map.name: heads_map,
        kv_map.name: kv_map,
        MLP: circular_map(src["mlp"], tgt["mlp"]),
        HEADS_QKV: replace(heads_map, name=HEADS_QKV, unit_size=3 * heads_map.unit_size),
    }
    if table.dead_heads and abs(heads_map.eta - maps[HIDDEN].eta) > 1e-12:
        raise ImpossibleExpansionError(
            f"{config.model_type} shares one norm eps between the stream and the all-head q/k "
            f"norms, so heads must grow like the hidden size (heads {src['heads']}->"
            f"{tgt['heads']}, hidden {src['hidden']}->{tgt['hidden']})"
        )
    for space, field_name in table.maybe_stream:
        size = getattr(config, field_name, None) or src["hidden"]
        maps[space] = (
            maps[HIDDEN] if size == src["hidden"] else circular_map(size, size, name=space)
        )
    for field_name, value, why in table.requires:
        if getattr(config, field_name, value) != value:
            raise ImpossibleExpansionError(f"{field_name}={getattr(config, field_name)!r}: {why}")
    lossy = None
    if table.indivisible_lossy and tgt["hidden"] % src["hidden"]:
        if not allow_lossy:
            raise ImpossibleExpansionError(
                f"hidden size {src['hidden']} -> {tgt['hidden']} is not a multiple and cannot "
                f"be lossless: {table.indivisible_lossy}. Use a multiple of {src['hidden']}, "
                "or pass allow_lossy=True (--allow-lossy) for the best approximation"
            )
        lossy = table.indivisible_lossy
    lossy = "; ".join(r for r in (lossy, baseline_lossy_reason(method, depth)) if r) or None
    tied = bool(table.tie_embeddings and getattr(config, "tie_word_embeddings", False))
    plan = ExpansionPlan(
        table=table,
        source_config=config,
        target_config=None,
        sizes=tgt,
        source_sizes=src,
        maps=maps,
        layer_map=lmap,
        new_layers=new_layers,
        method=method,
        seed=seed,
        depth=depth,
        tied=tied,
        lossy_reason=lossy,
    )
    plan.target_config = target_config(plan)
    return plan


def _target_sizes(
    table: ArchTable,
    src: dict[str, int],
    hidden: int | None,
    layers: int | None,
    heads: int | None,
    kv_heads: int | None,
    mlp: int | None,
) -> dict[str, int]:
    d = src["head_dim"]
    hidden = hidden or src["hidden"]
    derived_head_dim = table.config.head_dim is None  # head_dim = hidden / heads
    if heads is None:
        heads_follow_hidden = src["hidden"] == src["heads"] * d
        if not heads_follow_hidden:  # explicit head_dim: heads kept unless given
            heads = src["heads"]
        elif hidden % d:
            raise ImpossibleExpansionError(
                f"hidden size {hidden} is not a multiple of head_dim {d}; head_dim must be "
                "kept for a lossless expansion (choose a multiple of it, or give num_heads)"
            )
        else:
            heads = hidden // d
    if derived_head_dim and heads * d != hidden:
        raise ImpossibleExpansionError(
            f"hidden size {hidden} with {heads} heads gives head_dim {hidden / heads:g}, but "
            f"the source's head_dim is {d}; changing head_dim cannot be lossless"
        )
    if kv_heads is None:
        rep = src["heads"] // src["kv_heads"]
        kv_heads = heads // rep if heads % rep == 0 else src["kv_heads"]
    if table.config.kv_heads is None and kv_heads != heads:
        raise ImpossibleExpansionError(
            f"{table.model_types[0]} has no separate key/value heads; num_kv_heads must "
            f"equal num_heads ({heads})"
        )
    return {
        "hidden": hidden,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": d,
        "mlp": mlp or src["mlp"],
        "layers": layers or src["layers"],
    }


def target_config(plan: ExpansionPlan) -> Any:
    """A copy of the source config with the target sizes and the rescaled norm eps."""
    cfg = copy.deepcopy(plan.source_config)
    f, t = plan.table.config, plan.sizes
    setattr(cfg, f.hidden, t["hidden"])
    setattr(cfg, f.heads, t["heads"])
    setattr(cfg, f.mlp, t["mlp"])
    setattr(cfg, f.layers, t["layers"])
    if f.kv_heads:
        setattr(cfg, f.kv_heads, t["kv_heads"])
    if f.head_dim and getattr(cfg, f.head_dim, None) is not None:
        setattr(cfg, f.head_dim, t["head_dim"])
    eps_scale = 1.0 if plan.table.fixed_eps else plan.maps[HIDDEN].eta ** 2
    for name in f.norm_eps:
        setattr(cfg, name, getattr(cfg, name) * eps_scale)
    for space, field_name in plan.table.maybe_stream:  # a size that follows the stream
        if plan.maps[space] is plan.maps[HIDDEN] and getattr(cfg, field_name, None):
            setattr(cfg, field_name, t["hidden"])
    for key in plan.table.config.per_layer:  # e.g. layer_types: one entry per layer
        value = getattr(cfg, key, None)
        if isinstance(value, list) and len(value) == plan.source_sizes["layers"]:
            setattr(cfg, key, [value[s] for s in plan.layer_map])
    return cfg
