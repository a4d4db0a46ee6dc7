"""The engine: state dict in, state dict out, one tensor at a time.

Expanding one tensor needs only that tensor, its :class:`~lemonkit.plan.decisions.Decision`
and the plan (two configs and the seed); the decision's seed name seeds its random
choices. So a checkpoint can be expanded shard by shard and the result does not depend
on the order.

Example:
    >>> import torch
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> small = GPT2LMHeadModel(GPT2Config(n_embd=32, n_head=2, n_layer=1, vocab_size=50))
    >>> big_sd, plan = expand_state_dict(small.state_dict(), small.config, hidden_size=48)
    >>> tuple(big_sd["transformer.h.0.attn.c_attn.weight"].shape)
    (48, 144)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping

import torch

from lemonkit.engine.cancel import cancelling, pair_units
from lemonkit.engine.copies import is_copy, is_direct, iter_copy
from lemonkit.engine.lazy import LazyTensor, materialize
from lemonkit.engine.reductions import fixed_mean
from lemonkit.engine.replicas import untie_replicas
from lemonkit.engine.rules import (
    copy_ranks,
    expand_beta,
    expand_gamma,
    expand_in,
    expand_out,
    expert_piece,
)
from lemonkit.engine.runs import consecutive_runs
from lemonkit.errors import CheckpointError
from lemonkit.plan.cancel import group_sizes
from lemonkit.plan.decisions import Decision, decide
from lemonkit.plan.new_blocks import cancel_axis
from lemonkit.plan.planner import ExpansionPlan, make_plan
from lemonkit.tables.format import EXPERTS, Beta, Gamma, In, Out, SpaceRef, space_names

CHUNK_ELEMENTS = 1 << 21  # target elements per chunk (8 MB in float32)


def expand_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    config,
    *,
    compute_dtype: torch.dtype | None = None,
    out_dtype: torch.dtype | None = None,
    base_model: bool | None = None,
    **growth,
) -> tuple[dict[str, torch.Tensor], ExpansionPlan]:
    """Expand a whole state dict; ``growth`` are :func:`~lemonkit.plan.make_plan`'s
    keywords: the fields of :class:`~lemonkit.plan.targets.Targets` and
    :class:`~lemonkit.plan.targets.Options`.

    Returns the expanded state dict (the source's dtypes unless ``out_dtype``) and the plan.
    """
    plan = make_plan(config, base_model=base_model, **growth)
    expanded = iter_expanded(state_dict, plan, compute_dtype=compute_dtype, out_dtype=out_dtype)
    return dict(expanded), plan


def iter_expanded(
    state_dict: Mapping[str, torch.Tensor],
    plan: ExpansionPlan,
    *,
    compute_dtype: torch.dtype | None = None,
    out_dtype: torch.dtype | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (target name, tensor) lazily. ``state_dict`` may be a lazy mapping: one with
    an ``infos()`` method (a :class:`~lemonkit.io.checkpoint.Checkpoint`) is decided from
    its headers, without reading a tensor twice."""
    if hasattr(state_dict, "infos"):
        infos = state_dict.infos()
    else:
        infos = {name: (t.dtype, tuple(t.shape)) for name, t in state_dict.items()}
    for d in decide(plan, infos, out_dtype=out_dtype):
        donor = state_dict[d.donor] if d.donor else None
        yield d.name, expand_tensor(plan, d, state_dict[d.source], donor, compute_dtype)


def expand_tensor(
    plan: ExpansionPlan,
    decision: Decision,
    tensor: torch.Tensor,
    donor: torch.Tensor | None = None,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """One source tensor -> its target tensor (see :func:`iter_expand_tensor`)."""
    chunks = list(iter_expand_tensor(plan, decision, tensor, donor, compute_dtype))
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


def iter_expand_tensor(
    plan: ExpansionPlan,
    decision: Decision,
    tensor: torch.Tensor | LazyTensor,
    donor: torch.Tensor | LazyTensor | None = None,
    compute_dtype: torch.dtype | None = None,
) -> Iterator[torch.Tensor]:
    """Yield one source tensor's target in chunks of rows (axis 0), in order.

    ``donor``: the tensor ``decision.donor`` names (``method="aki"``). It is expanded
    alongside, chunk for chunk, seeded as ``decision.donor_seed``, and gives the new
    units their entries along every producer axis (bert2BERT-AKI).

    Arithmetic is in ``compute_dtype`` (default: float32 for 16-bit outputs, float64
    for 32- and 64-bit ones, so split remainders are exact) and each chunk is cast once
    to the decision's dtype. ``tensor`` may be a
    :class:`~lemonkit.engine.lazy.LazyTensor`: only the rows each chunk copies are read.
    """
    d = decision
    if tuple(tensor.shape) != d.source_shape:
        raise CheckpointError(f"{d.source}: shape {tuple(tensor.shape)}, not {d.source_shape}")
    if d.donor and donor is None:
        raise ValueError(f"{d.name}: its decision names the donor {d.donor}; pass that tensor")
    if d.op == "keep":  # integer buffers (position ids): nothing grows
        yield materialize(tensor)
        return
    if d.op == "zero":  # a new block's residual branch output (depth "zero"), by rows
        per_chunk = max(1, CHUNK_ELEMENTS // max(1, math.prod(d.shape[1:])))
        for start in range(0, d.shape[0], per_chunk) if d.shape else [0]:
            rows = min(per_chunk, d.shape[0] - start) if d.shape else None
            yield torch.zeros((rows, *d.shape[1:]) if d.shape else (), dtype=d.dtype)
        return
    if d.op == "cancel":  # a type-2 new block's branch output (depth "cancel")
        axis = cancel_axis(plan, d.shape, d.axes)
        gen = _generator(plan.seed, f"{d.seed_name}#cancel")
        name = d.axes[axis].space
        group = group_sizes(plan.maps, plan.table.derived).get(name, 1)
        yield cancelling(d.shape, axis, plan.maps[name], plan.sigma, gen, d.dtype, group)
        return
    if d.op == "identity":  # a norm that must pass its (normalised) input through: (1, 0)
        fill = torch.ones if isinstance(d.axes[0], Gamma) else torch.zeros
        yield fill(d.shape, dtype=d.dtype)
        return
    if compute_dtype is None and is_copy(plan, d):  # no arithmetic: the rows as stored
        yield from iter_copy(d, tensor, max(1, CHUNK_ELEMENTS // max(1, math.prod(d.shape[1:]))))
        return
    compute = compute_dtype or (torch.float32 if d.dtype.itemsize <= 2 else torch.float64)
    chunks = _iter_width(plan, d, d.seed_name, tensor, compute)
    if d.paired:
        groups = group_sizes(plan.maps, plan.table.derived)
        yield pair_units(plan.maps, d.axes, torch.cat(list(chunks)), groups)
        return
    if donor is None:
        yield from chunks
        return
    donor_chunks = _iter_width(plan, d, d.donor_seed, donor, compute)
    yield from _take_new_units(plan, d, chunks, donor_chunks)


def _take_new_units(
    plan: ExpansionPlan,
    d: Decision,
    chunks: Iterator[torch.Tensor],
    donor_chunks: Iterator[torch.Tensor],
) -> Iterator[torch.Tensor]:
    """bert2BERT-AKI: along every producer axis, the new units (later copies and extras,
    :meth:`~lemonkit.plan.spaces.SpaceMap.new_channels`) take the donor's entries. Chunks
    are runs of axis-0 rows, the same runs for both tensors (same shape, same plan)."""
    masks = {a: new_channels(plan, r.space) for a, r in enumerate(d.axes) if isinstance(r, Out)}
    start = 0
    for mine, theirs in zip(chunks, donor_chunks, strict=True):
        n = mine.shape[0]
        for axis, mask in masks.items():
            index = (mask[start : start + n] if axis == 0 else mask).nonzero().flatten()
            if len(index):  # out of place: a chunk may be a view of the source
                mine = mine.index_copy(axis, index, theirs.index_select(axis, index))
        start += n
        yield mine


def new_channels(plan: ExpansionPlan, space: SpaceRef) -> torch.Tensor:
    """New-unit flags per target channel of a (possibly fused) space."""
    return torch.cat([plan.maps[n].new_channels() for n in space_names(space)])


def _iter_width(
    plan: ExpansionPlan,
    d: Decision,
    seed_name: str,
    tensor: torch.Tensor | LazyTensor,
    compute: torch.dtype,
) -> Iterator[torch.Tensor]:
    """The width expansion of one tensor, in chunks of axis-0 rows.

    Memory stays near one chunk (``CHUNK_ELEMENTS``) beyond the source tensor. Rows are
    independent: a target row copies a source row (or is an extra stream row: the mean
    row for an average-filled stream, zeros otherwise) and then gets its own consumer
    splits, seeded by the seed name and the chunk's first row. The mean row works
    because any split of it still computes mean(W) x* = mean(W x).
    """
    rule = d.axes[0] if d.axes else None
    by_rows = len(tensor.shape) >= 2 and _fixed_or_producer(plan, rule)
    if by_rows:
        rows, fill = _row_sources(plan, rule, tensor.shape[0])
    if not by_rows or _splits_experts(plan, rule) or (fill == "avg" and (rows < 0).any()):
        tensor = materialize(tensor)  # (the mean row is taken over the whole tensor)
    # rounded to the output dtype: splits exact in it
    source = tensor if isinstance(tensor, LazyTensor) else tensor.detach().to(d.dtype)
    if len(source.shape) >= 2 and _splits_experts(plan, rule):
        yield from _iter_experts(plan, d, seed_name, source, compute)
        return
    if not by_rows:
        gen = _generator(plan.seed, seed_name)
        yield _expand_block(plan, d, source.to(compute), gen, 0, _expert_gen(plan, d, ""))
        return
    per_chunk = max(1, CHUNK_ELEMENTS // max(1, math.prod(d.shape[1:])))
    direct = is_direct(plan, d) and fill != "avg"  # rows grown in the output dtype
    rows_dtype = d.dtype if direct else compute
    mean_row = None
    for start, src, n in consecutive_runs(rows.tolist(), limit=per_chunk):
        if src >= 0:
            block = _source_rows(source, src, n, d.dtype).to(rows_dtype)
        elif fill == "avg":
            if mean_row is None:
                mean_row = fixed_mean(source.to(compute), 0)
            block = mean_row.expand(n, *mean_row.shape[1:]).clone()
        else:
            block = torch.zeros(n, *source.shape[1:], dtype=rows_dtype)
        gen = _generator(plan.seed, f"{seed_name}@{start}")
        expert_gen = _expert_gen(plan, d, f"@{start}")
        yield _expand_block(plan, d, block, gen, 1, expert_gen, start, compute)


def _source_rows(source, start: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows ``start:start+n`` in the output dtype (read now from a lazy tensor)."""
    if isinstance(source, LazyTensor):
        return source.rows(start, start + n).to(dtype)
    return source.narrow(0, start, n)


def _fixed_or_producer(plan: ExpansionPlan, rule) -> bool:
    """Axis 0 can be cut into independent chunks of rows: it does not grow, it is a
    producer axis, or a consumer axis whose space is kept (Mixtral's stacked experts)."""
    if rule is None or isinstance(rule, Out):
        return True
    return isinstance(rule, In) and all(m.is_identity for m in _maps(plan, rule.space))


def _splits_experts(plan: ExpansionPlan, rule) -> bool:
    """Axis 0 is the stacked expert axis of an expert's output tensor, and experts grow."""
    return isinstance(rule, In) and rule.space == EXPERTS and not plan.maps[EXPERTS].is_identity


def _iter_experts(
    plan: ExpansionPlan, d: Decision, seed_name: str, source: torch.Tensor, compute: torch.dtype
) -> Iterator[torch.Tensor]:
    """A stacked expert output tensor ([E, ...], down projections), one target expert at a
    time: its share of the source expert it copies, then the other axes."""
    space = plan.maps[EXPERTS]
    ranks, counts = (x.tolist() for x in copy_ranks(space.channel_sources()))
    for j, s in enumerate(space.sources):
        shared = _generator(plan.seed, f"{seed_name}#expert{s}")  # the same for every copy
        block = expert_piece(
            source[s].to(compute),
            ranks[j],
            counts[j],
            diluted=space.diluted,
            split=plan.split,
            gen=shared,
            storage=d.dtype,
            sigma=plan.sigma,
            spread=plan.options.spread,
        )
        gen = _generator(plan.seed, f"{seed_name}@{j}")
        yield _expand_block(plan, d, block.unsqueeze(0), gen, 1, row_start=j)


def _expert_gen(plan: ExpansionPlan, d: Decision, suffix: str) -> torch.Generator | None:
    """The generator a per-expert tensor's copies share (None: not a split copy)."""
    return _generator(plan.seed, d.expert_seed + suffix) if d.expert_copy else None


def _maps(plan: ExpansionPlan, space: SpaceRef) -> list:
    return [plan.maps[n] for n in space_names(space)]


def _expand_block(
    plan: ExpansionPlan,
    d: Decision,
    t: torch.Tensor,
    gen: torch.Generator,
    from_axis: int,
    expert_gen: torch.Generator | None = None,
    row_start: int = 0,
    compute: torch.dtype | None = None,
) -> torch.Tensor:
    """The decision's factors, its expert copy's share, then producer axes, consumer
    axes and norms, for the axes from ``from_axis`` on (``row_start``: the chunk's first
    target row), then a new block's replicas untied (``Decision.untie``). ``compute``:
    the dtype of random extras (default: ``t``'s; ``t`` is in the output dtype for
    :func:`~lemonkit.engine.copies.is_direct` decisions)."""
    given = t  # never modified in place: it may be a view of the source
    if d.stream_scale != 1.0:
        t = t * d.stream_scale
    if d.embedding_ratio != 1.0:
        t = t * d.embedding_ratio
    split = plan.split
    if d.expert_copy:
        rank, copies = d.expert_copy
        diluted = plan.maps[EXPERTS].diluted
        t = expert_piece(
            t,
            rank,
            copies,
            diluted=diluted,
            split=split,
            gen=expert_gen,
            storage=d.dtype,
            sigma=plan.sigma,
            spread=plan.options.spread,
        )
    # producer axes first: every copy of a unit then draws its own consumer splits
    # (a weight stored [in, out], GPT-2's Conv1D, would otherwise share them)
    for axis, rule in enumerate(d.axes):
        if axis >= from_axis and isinstance(rule, Out):
            t = _per_segment(t, axis, rule.space, plan, expand_out)
    for axis, rule in enumerate(d.axes):
        if axis >= from_axis and isinstance(rule, In):
            consumer = lambda t, axis, space: expand_in(  # noqa: E731
                t, axis, space, split, gen, d.dtype, plan.sigma, plan.options.spread, compute
            )
            t = _per_segment(t, axis, rule.space, plan, consumer)
    if from_axis == 0 and d.axes and isinstance(d.axes[0], Gamma | Beta):
        t = _expand_norm(plan, d, t, gen)
    if d.untie:
        gen = _generator(plan.seed, f"{d.seed_name}@{row_start}#untie")
        fresh = t.untyped_storage().data_ptr() != given.untyped_storage().data_ptr()
        t = untie_replicas(plan, d, t, from_axis, row_start, gen, compute, fresh)
    return t.to(d.dtype).contiguous()


def _row_sources(plan: ExpansionPlan, rule, n_rows: int) -> tuple[torch.Tensor, str]:
    """Source row of each target row (-1: extra stream row) and the extras' fill."""
    if rule is None or isinstance(rule, In):  # a consumer axis 0 here is a kept space
        return torch.arange(n_rows), "copy"
    parts, offset, fill = [], 0, "copy"
    for m in (plan.maps[n] for n in space_names(rule.space)):
        src = m.channel_sources()
        parts.append(torch.where(src >= 0, src + offset, src))
        offset += m.src_units * m.unit_size
        fill = m.fill if (src < 0).any() else fill
    return torch.cat(parts), fill


def _expand_norm(
    plan: ExpansionPlan, d: Decision, t: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    rule = d.axes[0]
    space = plan.maps[rule.space]
    if isinstance(rule, Gamma):
        return expand_gamma(
            t,
            space,
            scale=d.norm_scale,
            extra_zero=d.spec.stream_norm,
            gen=gen,
            offset=plan.table.norm_offset,
        )
    return expand_beta(t, space, scale=d.norm_scale, extra_mean=d.spec.stream_norm)


def _per_segment(
    t: torch.Tensor, axis: int, space: SpaceRef, plan: ExpansionPlan, fn
) -> torch.Tensor:
    """Apply ``fn(t, axis, map)`` to each segment of a fused axis and concatenate."""
    maps = [plan.maps[n] for n in space_names(space)]
    if len(maps) == 1:
        return fn(t, axis, maps[0])
    sizes = [m.src_units * m.unit_size for m in maps]
    parts = t.split(sizes, dim=axis)
    return torch.cat([fn(p, axis, m) for p, m in zip(parts, maps, strict=True)], dim=axis)


def _generator(seed: int, name: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
