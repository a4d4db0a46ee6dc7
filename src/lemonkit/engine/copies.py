"""Tensors the expansion copies unchanged: moved as stored, without arithmetic.

A depth-only expansion copies every tensor of its new blocks (and keeps the others), and
a width expansion keeps the tensors none of whose axes grow. For those the general path
(source rows -> float32 -> every axis's rule -> the output dtype) is an exact round trip:
its bytes are the source's bytes in the output dtype. This path yields those rows
directly, chunk by chunk, and the parts check compares them bytewise
(:mod:`lemonkit.verification.parts`). Both paths give the same bytes (tests/test_golden.py).

:func:`is_direct` names the tensors whose rows are copies plus new units that need no
arithmetic on the source's values either: zero extras along producer axes, random extras
(and each source column once) along one consumer axis, as a width growth's attention
and MLP input projections, embeddings and head. The engine grows their chunks in the
output dtype; only the random values are drawn in the compute dtype and rounded once,
as the general path rounds them, so the bytes are the same (tests/test_copies.py), but
for a new block's untied tensors: there the untying noise is added, in the compute
dtype, to rows whose random extras are already rounded to the output dtype (the
general path rounds their sum once), so those entries, which multiply zeros, may differ
in their last bit.

Example::

    if is_copy(plan, decision):
        chunks = iter_copy(decision, tensor, rows_per_chunk=4096)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from lemonkit.engine.lazy import LazyTensor
from lemonkit.plan.decisions import Decision
from lemonkit.plan.planner import ExpansionPlan
from lemonkit.tables.format import In, Out, space_names


def is_copy(plan: ExpansionPlan, d: Decision) -> bool:
    """Whether ``d``'s target is its source's values in the output dtype: an expanded
    floating tensor whose every axis is fixed or maps a space that does not grow, with no
    factor, norm rule, donor, expert split, untying noise or pairing."""
    if d.op != "expand" or not d.dtype.is_floating_point or d.shape != d.source_shape:
        return False
    if d.donor or d.expert_copy or d.untie or d.paired:
        return False
    if (d.stream_scale, d.embedding_ratio, d.norm_scale) != (1.0, 1.0, 1.0):
        return False
    for rule in d.axes:
        if rule is None:
            continue
        if not isinstance(rule, In | Out):  # Gamma / Beta: the norm rules run
            return False
        if not all(plan.maps[n].is_identity for n in space_names(rule.space)):
            return False
    return True


def is_direct(plan: ExpansionPlan, d: Decision) -> bool:
    """Whether ``d``'s chunks of rows (axis 0 a run of source rows or extras) can be grown
    in the output dtype: no factor, norm rule, donor, expert split or pairing;
    along axes 1 and on, producer axes only copy units or add zero extras (no averaged
    ones), and at most one consumer axis grows, by extras only (each source unit at most
    once, no diluted copies: no split, so no arithmetic on the source's values), and
    some axis from 1 on grows."""
    if d.op != "expand" or not d.dtype.is_floating_point or len(d.shape) < 2:
        return False
    if d.donor or d.expert_copy or d.paired:
        return False
    if (d.stream_scale, d.embedding_ratio, d.norm_scale) != (1.0, 1.0, 1.0):
        return False
    grown_ins = grown = 0
    for rule in d.axes[1:]:
        if rule is None:
            continue
        if not isinstance(rule, In | Out):
            return False
        maps = [plan.maps[n] for n in space_names(rule.space)]
        if isinstance(rule, Out) and any(m.fill == "avg" and -1 in m.sources for m in maps):
            return False
        if isinstance(rule, In) and any(m.diluted or not _once(m.sources) for m in maps):
            return False
        grows = not all(m.is_identity for m in maps)
        grown, grown_ins = grown + grows, grown_ins + (grows and isinstance(rule, In))
    return grown >= 1 and grown_ins <= 1  # a grown axis: new memory, never the source's


def _once(sources: tuple[int, ...]) -> bool:
    """No source unit has two copies (extras, -1, aside)."""
    kept = [s for s in sources if s >= 0]
    return len(set(kept)) == len(kept)


def iter_copy(
    d: Decision, tensor: torch.Tensor | LazyTensor, rows_per_chunk: int
) -> Iterator[torch.Tensor]:
    """The source's rows in ``d.dtype``, ``rows_per_chunk`` at a time (an in-memory
    source is copied: the target never shares its storage)."""
    if not d.shape:
        whole = tensor.load() if isinstance(tensor, LazyTensor) else tensor
        yield whole.detach().to(d.dtype, copy=True)
        return
    for start in range(0, d.shape[0], rows_per_chunk):
        stop = min(start + rows_per_chunk, d.shape[0])
        if isinstance(tensor, LazyTensor):
            yield tensor.rows(start, stop).to(d.dtype).contiguous()
        else:
            yield tensor.detach()[start:stop].to(d.dtype, copy=True).contiguous()
