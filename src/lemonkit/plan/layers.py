"""Layer maps: which source block each target block copies, grouped by layer group.

A Transformer has one group of blocks (``"layers"``); a staged CNN has one group per
stage. In a group's map, the first occurrence of each source block keeps its weights and
later occurrences are *new* blocks (whose start the depth rule decides).

Example:
    >>> group = LayerGroup.of("layers", default_layer_map(2, 3))
    >>> group.layer_map, group.new, group.src_layers
    ((0, 1, 1), (False, False, True), 2)
"""

from __future__ import annotations

from dataclasses import dataclass

from lemonkit.errors import ImpossibleExpansionError
from lemonkit.plan.spaces import check_growth

DEFAULT_GROUP = "layers"  # the blocks of a Transformer (a table's per-layer tensors)


@dataclass(frozen=True)
class LayerGroup:
    """One group's layer map (target layer -> source layer) and which target layers are new."""

    name: str
    layer_map: tuple[int, ...]
    new: tuple[bool, ...]
    src_layers: int

    @classmethod
    def of(cls, name: str, layer_map: list[int], src_layers: int | None = None) -> LayerGroup:
        """Validate ``layer_map`` (see :func:`check_layer_map`) and build the group."""
        src_layers = max(layer_map) + 1 if src_layers is None else src_layers
        new = check_layer_map(layer_map, src_layers)
        return cls(name, tuple(layer_map), tuple(new), src_layers)

    def run_start(self, t: int) -> int:
        """The original (not new) target layer that the run holding layer ``t`` starts at."""
        return max(i for i in range(t + 1) if not self.new[i])


def default_layer_map(src_layers: int, tgt_layers: int) -> list[int]:
    """Each source layer followed by its new copies, extras spread evenly (paper 4.3).

    >>> default_layer_map(2, 4)
    [0, 0, 1, 1]
    >>> default_layer_map(4, 6)
    [0, 1, 1, 2, 3, 3]
    """
    check_growth("num_layers", src_layers, tgt_layers)
    base, extra = divmod(tgt_layers, src_layers)
    out: list[int] = []
    for i in range(src_layers):
        gets_extra = (i + 1) * extra // src_layers > i * extra // src_layers
        out += [i] * (base + int(gets_extra))
    return out


def periodic_layer_map(src_layers: int, tgt_layers: int, period: int) -> list[int]:
    """:func:`default_layer_map` for blocks that the class builds by their position modulo
    ``period`` (Swin's windows alternate unshifted / shifted: period 2). Whole groups of
    ``period`` blocks are copied right after the group they copy, so every source block
    keeps its position modulo ``period``; fewer than ``period`` further blocks go at the
    end, each a copy of the last source block of its position's residue.

    >>> periodic_layer_map(2, 5, 2)
    [0, 1, 0, 1, 0]
    >>> periodic_layer_map(4, 8, 2)
    [0, 1, 0, 1, 2, 3, 2, 3]
    """
    check_growth("depth", src_layers, tgt_layers)
    groups = src_layers // period
    extra_groups = (tgt_layers - src_layers) // period
    out: list[int] = []
    for g in default_layer_map(groups, groups + extra_groups) if groups else []:
        out += range(g * period, (g + 1) * period)
    out += range(groups * period, src_layers)  # an incomplete last group (an odd depth)
    for t in range(len(out), tgt_layers):
        same = [j for j in range(src_layers) if j % period == t % period]
        out.append(same[-1] if same else src_layers - 1)
    return out


def stack_layer_map(src_layers: int, tgt_layers: int) -> list[int]:
    """StackBERT (Gong et al. 2019): the whole source stack copied on top of itself.

    >>> stack_layer_map(2, 5)
    [0, 1, 0, 1, 0]
    """
    check_growth("num_layers", src_layers, tgt_layers)
    return [i % src_layers for i in range(tgt_layers)]


def check_layer_map(layer_map: list[int], src_layers: int) -> list[bool]:
    """Validate an explicit layer map; return which target layers are *new* blocks.

    The first occurrence of each source layer keeps its weights; later occurrences are new
    blocks whose residual branch starts at zero. Lossless iff the first occurrences are
    the source layers in order.

    >>> check_layer_map([0, 1, 0, 1], 2)
    [False, False, True, True]
    """
    seen: list[int] = []
    is_new = []
    for s in layer_map:
        if not 0 <= s < src_layers:
            raise ImpossibleExpansionError(
                f"layer map entry {s} is not a source layer (0..{src_layers - 1})"
            )
        is_new.append(s in seen)
        if s not in seen:
            seen.append(s)
    if seen != list(range(src_layers)):
        raise ImpossibleExpansionError(
            f"layer map {layer_map} cannot be lossless: the first occurrences of the source "
            f"layers must be 0..{src_layers - 1} in order (got {seen})"
        )
    return is_new
