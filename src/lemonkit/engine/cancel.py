"""Type-2 depth in the engine: a new block's paired units and its cancelling fan-out
(:mod:`lemonkit.plan.cancel` says which units pair).

Example:
    >>> import torch
    >>> from lemonkit.plan.spaces import circular_map
    >>> t = torch.arange(8.0).view(4, 2)
    >>> copy_leaders(t, 0, circular_map(2, 4)).tolist()  # units 2 and 3 copy 0 and 1
    [[0.0, 1.0], [2.0, 3.0], [0.0, 1.0], [2.0, 3.0]]
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lemonkit.plan.cancel import channel_pairs, paired_spaces
from lemonkit.plan.spaces import SpaceMap
from lemonkit.tables.format import Beta, Gamma, Out, space_names


def copy_leaders(t: torch.Tensor, axis: int, space: SpaceMap, group: int = 1) -> torch.Tensor:
    """Every partner unit along ``axis`` gets its leader's entries (same fan-in);
    ``group``: see :func:`~lemonkit.plan.cancel.channel_pairs`."""
    leaders, partners = channel_pairs(space, group)
    if not len(leaders):
        return t
    return t.index_copy(axis, partners, t.index_select(axis, leaders))


def cancelling(
    shape: tuple[int, ...],
    axis: int,
    space: SpaceMap,
    sigma: float,
    gen: torch.Generator,
    dtype: torch.dtype,
    group: int = 1,
) -> torch.Tensor:
    """A branch's last linear in a cancelling new block: along the consumer ``axis``,
    each leader channel reads N(0, sigma^2) weights ``alpha`` (rounded to ``dtype``), its
    partner ``-alpha`` (exact in any dtype), every other channel zero (``group``: see
    :func:`~lemonkit.plan.cancel.channel_pairs`)."""
    leaders, partners = channel_pairs(space, group)
    out = torch.zeros(shape, dtype=dtype)
    if not len(leaders):
        return out
    alpha_shape = list(shape)
    alpha_shape[axis] = len(leaders)
    alpha = (torch.randn(alpha_shape, generator=gen, dtype=torch.float64) * sigma).to(dtype)
    out.index_copy_(axis, leaders, alpha)
    out.index_copy_(axis, partners, -alpha)
    return out


def pair_units(
    maps: Mapping[str, SpaceMap], axes, t: torch.Tensor, groups: Mapping[str, int] | None = None
) -> torch.Tensor:
    """A type-2 new block's tensor: along every axis that writes or normalises a paired
    space, the partners take their leaders' entries (the whole tensor at once);
    ``groups``: :func:`~lemonkit.plan.cancel.group_sizes`."""
    paired = paired_spaces(maps)
    for axis, rule in enumerate(axes):
        if not isinstance(rule, Out | Gamma | Beta):
            continue
        names = space_names(rule.space)
        sizes = [maps[n].tgt_units * maps[n].unit_size for n in names]
        parts = [
            copy_leaders(p, axis, maps[n], (groups or {}).get(n, 1)) if n in paired else p
            for p, n in zip(t.split(sizes, dim=axis), names, strict=True)
        ]
        t = torch.cat(parts, dim=axis) if len(parts) > 1 else parts[0]
    return t.contiguous()
