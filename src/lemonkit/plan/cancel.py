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
leader's, so such a block has half as many distinct units in that space. Query heads that
share KV heads (``group`` query heads per KV head) pair across KV pairs instead: head t of
KV head 2i with head t of KV head 2i+1, so a pair never shares its KV head. Paired heads
on one KV head would cancel in that KV head's gradient, exactly, and leave the KV pair
tied after the first step.

Example:
    >>> from lemonkit.plan.spaces import circular_map
    >>> [p.tolist() for p in channel_pairs(circular_map(2, 4))]
    [[0, 1], [2, 3]]
    >>> [p.tolist() for p in channel_pairs(circular_map(3, 3))]
    [[0], [1]]
    >>> [p.tolist() for p in channel_pairs(circular_map(4, 4), group=2)]  # 2 KV heads
    [[0, 1], [2, 3]]
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import torch

from lemonkit.plan.spaces import EXPERTS, HEADS, HIDDEN, KV_HEADS, SpaceMap


def paired_spaces(maps: dict[str, SpaceMap]) -> frozenset[str]:
    """The spaces whose units a cancelling new block pairs: all but the stream (and the
    spaces that are the stream) and the experts."""
    stream = maps.get(HIDDEN)
    return frozenset(n for n, m in maps.items() if n not in (HIDDEN, EXPERTS) and m is not stream)


def channel_pairs(space: SpaceMap, group: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(leader channels, partner channels) of a space's target units, see the module;
    ``group``: units per unit of the space they read (query heads per KV head)."""
    return _pairs(space.sources, space.unit_size, group)


def group_sizes(maps: Mapping[str, SpaceMap], derived=()) -> dict[str, int]:
    """Query heads per KV head, for the query-head space and the spaces derived from it
    (``derived``: the table's :class:`~lemonkit.tables.format.DerivedSpace` entries, e.g.
    gpt-oss's per-head sinks), in a grouped-query attention; spaces not listed pair with
    group 1.

    Example:
        >>> from lemonkit.plan.spaces import attention_maps
        >>> q, kv = attention_maps(4, 2, 4, 2, head_dim=8)
        >>> group_sizes({"heads": q, "kv_heads": kv})
        {'heads': 2}
    """
    if HEADS not in maps or KV_HEADS not in maps:
        return {}
    group = maps[HEADS].tgt_units // max(1, maps[KV_HEADS].tgt_units)
    if group <= 1:
        return {}
    names = [HEADS, *(d.name for d in derived if d.base == HEADS and d.name in maps)]
    return dict.fromkeys(names, group)


@functools.lru_cache(maxsize=256)
def _pairs(
    sources: tuple[int, ...], unit_size: int, group: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    copies: dict[int, list[int]] = {}
    for unit, s in enumerate(sources):
        if s >= 0:
            copies.setdefault(s, []).append(unit)
    if any(len(units) > 1 for units in copies.values()):
        groups = list(copies.values())
        leaders = [g[i] for g in groups for i in range(0, len(g) - 1, 2)]
        partners = [g[i + 1] for g in groups for i in range(0, len(g) - 1, 2)]
    else:
        leaders, partners = _no_copy_pairs([u for u, s in enumerate(sources) if s >= 0], group)

    def channels(units: list[int]) -> torch.Tensor:
        u = torch.tensor(units, dtype=torch.long)
        return (u[:, None] * unit_size + torch.arange(unit_size)[None, :]).reshape(-1)

    return channels(leaders), channels(partners)


def _no_copy_pairs(units: list[int], group: int) -> tuple[list[int], list[int]]:
    """Depth-only pairs: consecutive units, or with ``group`` > 1 unit t of block 2i with
    unit t of block 2i+1 (blocks of ``group`` units: the heads of one KV head, whose KV
    heads pair 2i with 2i+1); the heads of an odd last KV head pair among themselves."""
    blocks = [units[i : i + group] for i in range(0, len(units), group)]
    leaders, partners = [], []
    for b in range(0, len(blocks) - 1, 2):
        leaders += blocks[b]
        partners += blocks[b + 1]
    if len(blocks) % 2:
        last = blocks[-1]
        leaders += last[0 : len(last) - 1 : 2]
        partners += last[1::2]
    return leaders, partners
