"""The plan of a staged CNN (ResNet): per-stage channel spaces and per-stage layer maps.

Example:
    >>> from lemonkit.testing.zoo import resnet
    >>> from lemonkit.plan import make_plan
    >>> plan = make_plan(resnet().config, hidden_sizes=[24, 48], depths=[3, 2])
    >>> plan.maps["stage0"].sources, plan.groups["stage0"][0]
    ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7), [0, 1, 1])
"""

from __future__ import annotations

import copy

from lemonkit.architectures.base import ArchTable
from lemonkit.errors import ImpossibleExpansionError
from lemonkit.plan import ExpansionPlan
from lemonkit.spaces import check_layer_map, circular_map, default_layer_map


def stage_plan(config, table: ArchTable, widths, depths, stem, seed, method) -> ExpansionPlan:
    """The plan of a staged CNN: one channel space per stage (and its bottleneck), the
    stem's, and one layer map per stage (new blocks copy blocks after the first)."""
    f = table.stages
    for name, value in ((f.widths, widths), (f.depths, depths)):
        if value is not None and len(value) != len(getattr(config, name)):
            raise ImpossibleExpansionError(
                f"{name} needs {len(getattr(config, name))} entries, one per stage; got {value}"
            )
    for field_name, value, why in table.requires:
        if getattr(config, field_name, value) != value:
            raise ImpossibleExpansionError(f"{field_name}={getattr(config, field_name)!r}: {why}")
    src = {
        "stem": getattr(config, f.embedding),
        "widths": list(getattr(config, f.widths)),
        "depths": list(getattr(config, f.depths)),
    }
    tgt = {
        "stem": stem or src["stem"],
        "widths": list(widths or src["widths"]),
        "depths": list(depths or src["depths"]),
    }
    channels = config.num_channels
    maps = {
        "pixels": circular_map(channels, channels, name="pixels"),
        "stem": circular_map(src["stem"], tgt["stem"], name="stem"),
    }
    groups = {}
    for s, (w_s, w_t, d_s, d_t) in enumerate(
        zip(src["widths"], tgt["widths"], src["depths"], tgt["depths"], strict=True)
    ):
        if w_s % f.reduction or w_t % f.reduction:
            raise ImpossibleExpansionError(
                f"stage {s}: width {w_t} must be a multiple of the bottleneck reduction "
                f"{f.reduction}"
            )
        maps[f"stage{s}"] = circular_map(w_s, w_t, name=f"stage{s}")
        maps[f"stage{s}_mid"] = circular_map(
            w_s // f.reduction, w_t // f.reduction, name=f"stage{s}_mid"
        )
        if d_t > d_s and d_s < 2:
            raise ImpossibleExpansionError(
                f"stage {s} has a single block, whose input width and shortcut differ from "
                "the stage's: new blocks need a block after the first to copy"
            )
        lmap = (
            list(range(d_s))
            if d_t == d_s
            else [0] + [1 + i for i in default_layer_map(d_s - 1, d_t - 1)]
        )
        groups[f"stage{s}"] = (lmap, check_layer_map(lmap, d_s))
    maps["last_stage"] = maps[f"stage{len(src['widths']) - 1}"]
    cfg = copy.deepcopy(config)
    setattr(cfg, f.embedding, tgt["stem"])
    setattr(cfg, f.widths, tgt["widths"])
    setattr(cfg, f.depths, tgt["depths"])
    src["layers"], tgt["layers"] = sum(src["depths"]), sum(tgt["depths"])
    return ExpansionPlan(
        table=table,
        source_config=config,
        target_config=cfg,
        sizes=tgt,
        source_sizes=src,
        maps=maps,
        layer_map=[],
        new_layers=[],
        method=method,
        seed=seed,
        groups=groups,
    )
