"""The size vocabulary of a hierarchical vision Transformer (Swin-v2): stages of blocks
whose width doubles at each patch merge.

Sizes: ``embed_dim`` (stage s is ``embed_dim x 2^s`` wide, so every stage grows by the
same factor), ``num_heads`` and ``depths`` (one per stage) and ``mlp_ratio``. Spaces per
stage s:

- ``stage{s}``: the residual stream, zero filled. In a Res-Post-Norm block
  (``x + LN(f(x))``) everything written into it leaves a LayerNorm, whose extra outputs
  are its shift's extras: 0 (NOTES.md 7).
- ``stage{s}_out``: what those LayerNorms normalise (the patch embedding, the attention
  and MLP outputs, the patch merge's reduction): average filled, so that the norms see
  the source's mean and a variance scaled by eta^2.
- ``stage{s}_heads`` (head_dim channels a unit, head_dim kept), ``stage{s}_head`` (one
  channel a head: the logit scales and the position-bias MLP's rows), ``stage{s}_mlp``.

Example:
    >>> from transformers import Swinv2Config
    >>> from lemonkit.tables import table_for
    >>> cfg = Swinv2Config(embed_dim=16, depths=[2, 2], num_heads=[2, 4])
    >>> table = table_for("swinv2")
    >>> tgt = PYRAMID.target(table, cfg, PYRAMID.source(cfg, table), Targets(embed_dim=32))
    >>> tgt.num_heads, PYRAMID.widths(tgt)
    ((4, 8), [32, 64])
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from lemonkit.errors import ImpossibleExpansionError
from lemonkit.plan.layers import LayerGroup, periodic_layer_map
from lemonkit.plan.methods import DepthRule
from lemonkit.plan.spaces import HIDDEN, SpaceMap, check_growth, circular_map, stream_map
from lemonkit.plan.targets import Targets
from lemonkit.tables.format import ArchTable, PyramidFields


@dataclass(frozen=True)
class PyramidLayout:
    """Per-stage spaces and one layer group per stage (any block of a stage can be
    copied: all have the stage's width). ``fields``: the table's config names."""

    fields: PyramidFields = field(default_factory=PyramidFields)
    grows: str = "grows per stage (stage s is embed_dim x 2^s wide)"
    sizes: tuple[str, ...] = ("embed_dim", "num_heads", "depths", "mlp_ratio")

    def source(self, config: Any, table: ArchTable) -> Targets:
        f = self.fields
        return Targets(
            embed_dim=getattr(config, f.embed_dim),
            num_heads=tuple(getattr(config, f.heads)),
            depths=tuple(getattr(config, f.depths)),
            mlp_ratio=float(getattr(config, f.mlp_ratio)),
        )

    def widths(self, sizes: Targets) -> list[int]:
        """Each stage's width, as the model computes it."""
        mult = self.fields.width_mult
        return [int(sizes.embed_dim * mult**s) for s in range(len(sizes.depths))]

    def target(self, table: ArchTable, config: Any, src: Targets, req: Targets) -> Targets:
        """Left-out sizes keep the source's; heads follow each stage's width with head_dim
        kept (given heads must agree)."""
        n = len(src.depths)
        for name in ("num_heads", "depths"):
            value = getattr(req, name)
            if value is not None and (isinstance(value, int) or len(value) != n):
                raise ImpossibleExpansionError(
                    f"{name} needs {n} entries, one per stage (e.g. --{name.replace('_', '-')} "
                    f"{','.join(map(str, getattr(src, name)))}); got {value}"
                )
        check_growth("embed_dim", src.embed_dim, req.embed_dim or src.embed_dim)
        tgt = Targets(
            embed_dim=req.embed_dim or src.embed_dim,
            num_heads=src.num_heads,
            depths=req.depths or src.depths,
            mlp_ratio=req.mlp_ratio or src.mlp_ratio,
        )
        heads = tuple(
            self._stage_heads(s, w_s // h_s, w_t, req)
            for s, (w_s, h_s, w_t) in enumerate(
                zip(self.widths(src), src.num_heads, self.widths(tgt), strict=True)
            )
        )
        return replace(tgt, num_heads=heads)

    @staticmethod
    def _stage_heads(s: int, head_dim: int, width: int, req: Targets) -> int:
        if width % head_dim:
            raise ImpossibleExpansionError(
                f"stage {s}: width {width} is not a multiple of its head_dim {head_dim}; "
                "head_dim must be kept for a lossless expansion (choose embed_dim accordingly)"
            )
        heads = width // head_dim
        if req.num_heads is not None and req.num_heads[s] != heads:
            raise ImpossibleExpansionError(
                f"stage {s}: {req.num_heads[s]} heads over width {width} give head_dim "
                f"{width / req.num_heads[s]:g}, but the source's is {head_dim}; changing "
                f"head_dim cannot be lossless (use {heads})"
            )
        return heads

    def groups(
        self, src: Targets, tgt: Targets, req: Targets, depth: DepthRule
    ) -> dict[str, LayerGroup]:
        """One group per stage; new blocks in whole groups of ``block_period`` (a shifted
        window block stays at an odd position: :func:`periodic_layer_map`)."""
        period = self.fields.block_period
        return {
            f"stage{s}": LayerGroup.of(f"stage{s}", periodic_layer_map(d_s, d_t, period), d_s)
            for s, (d_s, d_t) in enumerate(zip(src.depths, tgt.depths, strict=True))
        }

    def spaces(
        self, table: ArchTable, config: Any, src: Targets, tgt: Targets
    ) -> dict[str, SpaceMap]:
        maps: dict[str, SpaceMap] = {}
        stages = zip(self.widths(src), self.widths(tgt), strict=True)
        for s, (w_s, w_t) in enumerate(stages):
            name = f"stage{s}"
            maps[name] = stream_map(w_s, w_t, fill="zero", name=name)
            maps[f"{name}_out"] = stream_map(w_s, w_t, fill="avg", name=f"{name}_out")
            heads = circular_map(src.num_heads[s], tgt.num_heads[s], name=f"{name}_head")
            maps[f"{name}_head"] = heads
            maps[f"{name}_heads"] = replace(
                heads, name=f"{name}_heads", unit_size=w_s // heads.src_units
            )
            mlp_s, mlp_t = int(src.mlp_ratio * w_s), int(tgt.mlp_ratio * w_t)
            maps[f"{name}_mlp"] = circular_map(mlp_s, mlp_t, name=f"{name}_mlp")
        maps["last_stage"] = maps[f"stage{len(src.depths) - 1}"]
        # every stage grows by the same factor: stage 0's eta rescales the config's norm eps
        maps[HIDDEN] = maps["stage0_out"]
        return maps

    def write_config(self, cfg: Any, table: ArchTable, tgt: Targets, head_dim: int) -> None:
        f = self.fields
        setattr(cfg, f.embed_dim, tgt.embed_dim)
        setattr(cfg, f.heads, list(tgt.num_heads))
        setattr(cfg, f.depths, list(tgt.depths))
        setattr(cfg, f.mlp_ratio, tgt.mlp_ratio)
        setattr(cfg, f.last_width, self.widths(tgt)[-1])


PYRAMID = PyramidLayout()  # with the default (Swin-v2) config names
