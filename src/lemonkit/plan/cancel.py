"""Type-2 depth (LEMON figure 5c): which units of a new block cancel each other.

A new block built with ``depth="cancel"`` is not silenced by a zeroed last linear.
Instead its units come in pairs (leader, partner) with the same fan-in, and the branch's
last linear gives the pair the fan-out ``alpha`` and ``-alpha``: the two contributions
cancel exactly, so the block adds zero, while all its weights are non-zero and train
from the first step (the pair's fan-in gets opposite gradients).

The pairs, per space that is not the stream (heads, KV heads, MLP, their derived spaces):
the copies of each source unit two by two (copy 0 with copy 1, 2 with 3; an odd last copy
and the extras are unpaired: zero fan-out). A space with no copies at all (depth-only
growth) pairs units 0 with 1, 2 with 3...: the partner's fan-in is overwritten with its
leader's, so such a block has half as many distinct units in that space.

Example:
    >>> from lemonkit.plan.spaces import circular_map
    >>> [p.tolist() for p in channel_pairs(circular_map(2, 4))]
    [[0, 1], [2, 3]]
    >>> [p.tolist() for p in channel_pairs(circular_map(3, 3))]
    [[0], [1]]
"""

from __future__ import annotations

import functools

import torch

from lemonkit.plan.spaces import EXPERTS, HIDDEN, SpaceMap


def paired_spaces(maps: dict[str, SpaceMap]) -> frozenset[str]:
    """The spaces whose units a cancelling new block pairs: all but the stream (and the
    spaces that are the stream) and the experts."""
    stream = maps.get(HIDDEN)
    return frozenset(n for n, m in maps.items() if n not in (HIDDEN, EXPERTS) and m is not stream)


def channel_pairs(space: SpaceMap) -> tuple[torch.Tensor, torch.Tensor]:
    """(leader channels, partner channels) of a space's target units, see the module."""
    return _pairs(space.sources, space.unit_size)


@functools.lru_cache(maxsize=256)
def _pairs(sources: tuple[int, ...], unit_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    copies: dict[int, list[int]] = {}
    for unit, s in enumerate(sources):
        if s >= 0:
            copies.setdefault(s, []).append(unit)
    if any(len(units) > 1 for units in copies.values()):
        groups = list(copies.values())
    else:
        groups = [[unit for unit, s in enumerate(sources) if s >= 0]]
    leaders = [g[i] for g in groups for i in range(0, len(g) - 1, 2)]
    partners = [g[i + 1] for g in groups for i in range(0, len(g) - 1, 2)]

    def channels(units: list[int]) -> torch.Tensor:
        u = torch.tensor(units, dtype=torch.long)
        return (u[:, None] * unit_size + torch.arange(unit_size)[None, :]).reshape(-1)

    return channels(leaders), channels(partners)
