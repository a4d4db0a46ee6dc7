"""A new block's replicated units made to differ: N(0, untie^2) noise on their fan-in.

A new block (depth growth) copies a source block, so along a producer axis the copies
of a source unit (replicas) would compute the same outputs and get the same gradients
forever. :func:`untie_replicas` adds each replica's own noise. Lossless: the block's
residual branch ends in a zeroed linear, so nothing it computes reaches the output.

Example::

    t = untie_replicas(plan, decision, chunk, from_axis=1, row_start=0, gen=gen)
"""

from __future__ import annotations

import torch

from lemonkit.engine.rules import copy_ranks
from lemonkit.plan.decisions import Decision
from lemonkit.plan.planner import ExpansionPlan
from lemonkit.tables.format import Out, space_names


def untie_replicas(
    plan: ExpansionPlan,
    d: Decision,
    t: torch.Tensor,
    from_axis: int,
    row_start: int,
    gen: torch.Generator,
    compute: torch.dtype | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """``t`` (a chunk of rows from ``row_start`` when ``from_axis`` is 1) with
    N(0, ``d.untie``^2) noise added to the replicated channels of its producer axes.

    Noise is drawn for the replicated channels only (one producer axis with replicas,
    the usual case), or for the whole tensor under a mask (several). Noise and sums are
    in ``compute`` (default: ``t``'s dtype; the compute dtype where ``t`` is already in
    the output dtype, :func:`~lemonkit.engine.copies.is_direct`), the result in ``t``'s
    dtype. ``t`` is modified only if ``inplace`` (the caller's own fresh tensor; else it
    may be a view of the source)."""
    replicated = replicated_channels(plan, d, t, from_axis, row_start)
    if not replicated:
        return t
    compute = compute or t.dtype
    if len(replicated) == 1:
        ((axis, flags),) = replicated.items()
        index = flags.nonzero().flatten()
        shape = list(t.shape)
        shape[axis] = len(index)
        noise = torch.randn(shape, generator=gen, dtype=compute).mul_(d.untie)
        if t.dtype == compute:
            return t.index_add_(axis, index, noise) if inplace else t.index_add(axis, index, noise)
        noisy = noise.add_(t.index_select(axis, index)).to(t.dtype)  # summed in compute
        return t.index_copy_(axis, index, noisy) if inplace else t.index_copy(axis, index, noisy)
    mask = None
    for axis, flags in replicated.items():
        shape = [1] * t.dim()
        shape[axis] = -1
        mask = flags.view(shape) if mask is None else mask | flags.view(shape)
    noise = torch.randn(t.shape, generator=gen, dtype=compute).mul_(d.untie) * mask
    return (t.to(compute) + noise).to(t.dtype)


def replicated_channels(
    plan: ExpansionPlan, d: Decision, t: torch.Tensor, from_axis: int, row_start: int
) -> dict[int, torch.Tensor]:
    """Per producer axis of ``t`` with a replicated unit: its channels' replica flags
    (axis 0 cut to the chunk's rows when the chunk is a run of rows)."""
    out = {}
    for axis, rule in enumerate(d.axes):
        if not isinstance(rule, Out):
            continue
        maps = [plan.maps[n] for n in space_names(rule.space)]
        replicated = torch.cat([copy_ranks(m.channel_sources())[1] > 1 for m in maps])
        if axis < from_axis:  # axis 0 of a chunk of rows
            replicated = replicated[row_start : row_start + t.shape[0]]
        if bool(replicated.any()):
            out[axis] = replicated
    return out
