"""How a family's sizes read, resolve and become spaces and layer groups.

Three size vocabularies exist, chosen by a table's data: a Transformer (one stream, heads,
an MLP, one group of blocks: ``table.config``), a staged CNN (per-stage channel widths
and depths, a stem: ``table.stages``, a ``StageFields``) and a hierarchical Transformer
(Swin-v2: ``embed_dim`` doubling per stage, per-stage heads and depths: a
``PyramidFields``, in :mod:`lemonkit.plan.pyramid`). Each layout turns requested
:class:`~lemonkit.plan.targets.Targets` into resolved ones, the space maps and the layer
groups; everything after that (decisions, engine, checks, writer) is the same for all.

Example:
    >>> from transformers import GPT2Config
    >>> from lemonkit.tables import table_for
    >>> layout = layout_of(table_for("gpt2"))
    >>> src = layout.source(GPT2Config(n_embd=64, n_head=4, n_layer=2), table_for("gpt2"))
    >>> src.hidden_size, src.num_heads, src.intermediate_size
    (64, 4, 256)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from lemonkit.errors import ImpossibleExpansionError
from lemonkit.plan.experts import EXPERT_SIZES, expert_source, expert_spaces, expert_target
from lemonkit.plan.layers import DEFAULT_GROUP, LayerGroup, default_layer_map
from lemonkit.plan.methods import DepthRule
from lemonkit.plan.pyramid import PyramidLayout
from lemonkit.plan.spaces import (
    HEADS_QKV,
    HIDDEN,
    MLP,
    SpaceMap,
    attention_maps,
    circular_map,
    dead_head_maps,
    stream_map,
)
from lemonkit.plan.targets import Targets
from lemonkit.tables.format import ArchTable, PyramidFields


def layout_of(table: ArchTable) -> TransformerLayout | StagedLayout | PyramidLayout:
    """The layout a table's data asks for."""
    if isinstance(table.stages, PyramidFields):
        return PyramidLayout(table.stages)
    return STAGED if table.stages else TRANSFORMER


def head_dim_of(config: Any, table: ArchTable) -> int:
    """The source's head_dim: the explicit config field, else hidden / heads."""
    f = table.config
    explicit = getattr(config, f.head_dim, None) if f.head_dim else None
    return explicit or getattr(config, f.hidden) // getattr(config, f.heads)


@dataclass(frozen=True)
class TransformerLayout:
    """One residual stream, query and KV heads, an MLP, one group of blocks."""

    grows: str = "grows one stack of blocks"
    sizes: tuple[str, ...] = (
        "hidden_size",
        "num_layers",
        "num_heads",
        "num_kv_heads",
        "intermediate_size",
        "layer_map",
        *EXPERT_SIZES,
    )

    def source(self, config: Any, table: ArchTable) -> Targets:
        """The source's sizes, read through the table's config field names."""
        f = table.config
        hidden, heads = getattr(config, f.hidden), getattr(config, f.heads)
        kv = getattr(config, f.kv_heads, None) if f.kv_heads else None
        mlp = getattr(config, f.mlp, None)
        if mlp is None and f.mlp_default_mult:
            mlp = f.mlp_default_mult * hidden
        return Targets(
            hidden_size=hidden,
            num_layers=getattr(config, f.layers),
            num_heads=heads,
            num_kv_heads=kv or heads,
            intermediate_size=mlp,
            **expert_source(config, table),
        )

    def target(self, table: ArchTable, config: Any, src: Targets, req: Targets) -> Targets:
        """Left-out sizes keep the source's; heads follow the hidden size with head_dim
        kept; KV heads keep the query heads per KV head when that divides, else the
        source's KV head count; a layer map sets the layer count."""
        d = head_dim_of(config, table)
        hidden = req.hidden_size or src.hidden_size
        heads = req.num_heads
        if isinstance(heads, tuple):
            raise ImpossibleExpansionError(
                f"num_heads is one number for {table.model_types[0]} (one per stage is for "
                f"swinv2); got {list(heads)}"
            )
        if heads is None:
            if src.hidden_size != src.num_heads * d:  # explicit head_dim: heads kept
                heads = src.num_heads
            elif hidden % d:
                raise ImpossibleExpansionError(
                    f"hidden size {hidden} is not a multiple of head_dim {d}; head_dim must be "
                    "kept for a lossless expansion (choose a multiple of it, or give num_heads)"
                )
            else:
                heads = hidden // d
        if table.config.head_dim is None and heads * d != hidden:  # head_dim = hidden / heads
            raise ImpossibleExpansionError(
                f"hidden size {hidden} with {heads} heads gives head_dim {hidden / heads:g}, but "
                f"the source's head_dim is {d}; changing head_dim cannot be lossless"
            )
        kv = req.num_kv_heads
        if kv is None:
            rep = src.num_heads // src.num_kv_heads
            kv = heads // rep if heads % rep == 0 else src.num_kv_heads
        if table.config.kv_heads is None and kv != heads:
            raise ImpossibleExpansionError(
                f"{table.model_types[0]} has no separate key/value heads; num_kv_heads must "
                f"equal num_heads ({heads})"
            )
        layers = req.num_layers or src.num_layers
        if req.layer_map is not None:
            if req.num_layers is not None and req.num_layers != len(req.layer_map):
                raise ImpossibleExpansionError(
                    f"num_layers={req.num_layers} but the layer map has {len(req.layer_map)} "
                    "entries"
                )
            layers = len(req.layer_map)
        return Targets(
            hidden_size=hidden,
            num_layers=layers,
            num_heads=heads,
            num_kv_heads=kv,
            intermediate_size=req.intermediate_size or src.intermediate_size,
            **expert_target(table, src, req),
        )

    def groups(
        self, src: Targets, tgt: Targets, req: Targets, depth: DepthRule
    ) -> dict[str, LayerGroup]:
        """One group of blocks: the explicit layer map, or the depth rule's default."""
        if req.layer_map is not None:
            layer_map = list(req.layer_map)
        else:
            layer_map = depth.layer_map(src.num_layers, tgt.num_layers)
        return {DEFAULT_GROUP: LayerGroup.of(DEFAULT_GROUP, layer_map, src.num_layers)}

    def spaces(
        self, table: ArchTable, config: Any, src: Targets, tgt: Targets
    ) -> dict[str, SpaceMap]:
        """The stream, head, KV-head, MLP and fused per-head qkv maps, the experts' maps,
        the spaces that are the stream or kept by a config field (OPT's projections),
        and the spaces derived from another with their own unit size."""
        head_maps = dead_head_maps if table.dead_heads else attention_maps
        heads_map, kv_map = head_maps(
            src.num_heads,
            src.num_kv_heads,
            tgt.num_heads,
            tgt.num_kv_heads,
            head_dim_of(config, table),
        )
        maps = {
            HIDDEN: stream_map(src.hidden_size, tgt.hidden_size, fill=table.stream_fill),
            heads_map.name: heads_map,
            kv_map.name: kv_map,
            MLP: circular_map(src.intermediate_size, tgt.intermediate_size),
            HEADS_QKV: replace(heads_map, name=HEADS_QKV, unit_size=3 * heads_map.unit_size),
            **expert_spaces(table, config, src, tgt),
        }
        if table.dead_heads and abs(heads_map.eta - maps[HIDDEN].eta) > 1e-12:
            raise ImpossibleExpansionError(
                f"{config.model_type} shares one norm eps between the stream and the all-head "
                f"q/k norms, so heads must grow like the hidden size (heads {src.num_heads}->"
                f"{tgt.num_heads}, hidden {src.hidden_size}->{tgt.hidden_size})"
            )
        for space, field_name in table.maybe_stream:
            size = getattr(config, field_name, None) or src.hidden_size
            maps[space] = (
                maps[HIDDEN] if size == src.hidden_size else circular_map(size, size, name=space)
            )
        for d in table.derived:
            unit = sum(getattr(config, f) for f in d.unit_fields) if d.unit_fields else d.unit_size
            maps[d.name] = replace(maps[d.base], name=d.name, unit_size=unit)
        return maps

    def write_config(self, cfg: Any, table: ArchTable, tgt: Targets, head_dim: int) -> None:
        """Set the target sizes on a copy of the source config."""
        f = table.config
        setattr(cfg, f.hidden, tgt.hidden_size)
        setattr(cfg, f.heads, tgt.num_heads)
        setattr(cfg, f.mlp, tgt.intermediate_size)
        setattr(cfg, f.layers, tgt.num_layers)
        if f.kv_heads:
            setattr(cfg, f.kv_heads, tgt.num_kv_heads)
        for name in f.also_heads:
            setattr(cfg, name, tgt.num_heads)
        if f.head_dim and getattr(cfg, f.head_dim, None) is not None:
            setattr(cfg, f.head_dim, head_dim)


@dataclass(frozen=True)
class StagedLayout:
    """A staged CNN (ResNet): per-stage channel spaces (``stage{s}``, its bottleneck
    ``stage{s}_mid``), the stem's (``stem``), and one layer group per stage whose new
    blocks copy blocks after the first (the first has the stage's input width)."""

    grows: str = "grows per stage"
    sizes: tuple[str, ...] = ("hidden_sizes", "depths", "embedding_size")

    def source(self, config: Any, table: ArchTable) -> Targets:
        f = table.stages
        return Targets(
            hidden_sizes=getattr(config, f.widths),
            depths=getattr(config, f.depths),
            embedding_size=getattr(config, f.embedding),
        )

    def target(self, table: ArchTable, config: Any, src: Targets, req: Targets) -> Targets:
        f = table.stages
        for name, value in ((f.widths, req.hidden_sizes), (f.depths, req.depths)):
            if value is not None and len(value) != len(getattr(config, name)):
                raise ImpossibleExpansionError(
                    f"{name} needs {len(getattr(config, name))} entries, one per stage; "
                    f"got {list(value)}"
                )
        return Targets(
            hidden_sizes=req.hidden_sizes or src.hidden_sizes,
            depths=req.depths or src.depths,
            embedding_size=req.embedding_size or src.embedding_size,
        )

    def groups(
        self, src: Targets, tgt: Targets, req: Targets, depth: DepthRule
    ) -> dict[str, LayerGroup]:
        groups = {}
        for s, (d_s, d_t) in enumerate(zip(src.depths, tgt.depths, strict=True)):
            if d_t > d_s and d_s < 2:
                raise ImpossibleExpansionError(
                    f"stage {s} has a single block, whose input width and shortcut differ from "
                    "the stage's: new blocks need a block after the first to copy"
                )
            layer_map = (
                list(range(d_s))
                if d_t == d_s
                else [0] + [1 + i for i in default_layer_map(d_s - 1, d_t - 1)]
            )
            groups[f"stage{s}"] = LayerGroup.of(f"stage{s}", layer_map, d_s)
        return groups

    def spaces(
        self, table: ArchTable, config: Any, src: Targets, tgt: Targets
    ) -> dict[str, SpaceMap]:
        f = table.stages
        channels = config.num_channels
        maps = {
            "pixels": circular_map(channels, channels, name="pixels"),
            "stem": circular_map(src.embedding_size, tgt.embedding_size, name="stem"),
        }
        for s, (w_s, w_t) in enumerate(zip(src.hidden_sizes, tgt.hidden_sizes, strict=True)):
            if w_s % f.reduction or w_t % f.reduction:
                raise ImpossibleExpansionError(
                    f"stage {s}: width {w_t} must be a multiple of the bottleneck reduction "
                    f"{f.reduction}"
                )
            maps[f"stage{s}"] = circular_map(w_s, w_t, name=f"stage{s}")
            maps[f"stage{s}_mid"] = circular_map(
                w_s // f.reduction, w_t // f.reduction, name=f"stage{s}_mid"
            )
        maps["last_stage"] = maps[f"stage{len(src.hidden_sizes) - 1}"]
        return maps

    def write_config(self, cfg: Any, table: ArchTable, tgt: Targets, head_dim: int) -> None:
        f = table.stages
        setattr(cfg, f.embedding, tgt.embedding_size)
        setattr(cfg, f.widths, list(tgt.hidden_sizes))
        setattr(cfg, f.depths, list(tgt.depths))


TRANSFORMER = TransformerLayout()
STAGED = StagedLayout()
