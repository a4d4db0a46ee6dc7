"""The engine: state dict in, state dict out, one tensor at a time.

Expanding one tensor needs only that tensor, its table entry, the plan (two configs and
the seed) and its target name, which seeds its random choices. So a checkpoint can be
expanded shard by shard and the result does not depend on the order.

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

from lemonkit.architectures.base import Beta, Gamma, In, Out, SpaceRef, Tensor
from lemonkit.checks import check_names, check_shape, effective_axes, match_or_raise, target_shape
from lemonkit.entries import target_entries
from lemonkit.errors import CheckpointError
from lemonkit.plan import ExpansionPlan, make_plan
from lemonkit.rules import expand_beta, expand_gamma, expand_in, expand_out
from lemonkit.spaces import HIDDEN


def expand_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    config,
    *,
    compute_dtype: torch.dtype | None = None,
    out_dtype: torch.dtype | None = None,
    **targets,
) -> tuple[dict[str, torch.Tensor], ExpansionPlan]:
    """Expand a whole state dict; ``targets`` are :func:`~lemonkit.plan.make_plan` args
    (``hidden_size``, ``num_layers``, ``num_heads``, ``num_kv_heads``,
    ``intermediate_size``, ``layer_map``, ``seed``, ``method``, ``depth``, ``allow_lossy``).

    Returns the expanded state dict (the source's dtypes unless ``out_dtype``) and the plan.
    """
    plan = make_plan(config, **targets)
    expanded = iter_expanded(state_dict, plan, compute_dtype=compute_dtype, out_dtype=out_dtype)
    return dict(expanded), plan


def iter_expanded(
    state_dict: Mapping[str, torch.Tensor],
    plan: ExpansionPlan,
    *,
    compute_dtype: torch.dtype | None = None,
    out_dtype: torch.dtype | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (target name, tensor) lazily; ``state_dict`` may be a lazy mapping."""
    check_names(plan, list(state_dict))
    for e in target_entries(plan, list(state_dict)):
        tensor = expand_tensor(
            plan,
            e.name,
            e.spec,
            state_dict[e.source],
            e.is_new,
            identity=e.identity,
            donor=state_dict[e.donor] if e.donor else None,
            donor_name=e.donor_name,
            compute_dtype=compute_dtype,
            out_dtype=out_dtype,
        )
        yield e.name, tensor


CHUNK_ELEMENTS = 1 << 21  # target elements per chunk (8 MB in float32)


def expand_tensor(
    plan: ExpansionPlan,
    target_name: str,
    spec: Tensor,
    tensor: torch.Tensor,
    is_new: bool,
    *,
    identity: bool = False,
    donor: torch.Tensor | None = None,
    donor_name: str | None = None,
    compute_dtype: torch.dtype | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """One source tensor -> its target tensor (see :func:`iter_expand_tensor`)."""
    chunks = list(
        iter_expand_tensor(
            plan,
            target_name,
            spec,
            tensor,
            is_new,
            identity=identity,
            donor=donor,
            donor_name=donor_name,
            compute_dtype=compute_dtype,
            out_dtype=out_dtype,
        )
    )
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


def iter_expand_tensor(
    plan: ExpansionPlan,
    target_name: str,
    spec: Tensor,
    tensor: torch.Tensor,
    is_new: bool,
    *,
    identity: bool = False,
    donor: torch.Tensor | None = None,
    donor_name: str | None = None,
    compute_dtype: torch.dtype | None = None,
    out_dtype: torch.dtype | None = None,
) -> Iterator[torch.Tensor]:
    """Yield one source tensor's target in chunks of rows (axis 0), in order.

    ``donor`` (``method="aki"``, from :func:`~lemonkit.entries.target_entries`): the same
    tensor of the next source layer. It is expanded alongside, chunk for chunk, as the
    target ``donor_name``, and gives the new units their entries along every producer
    axis (bert2BERT-AKI). A zeroed or identity tensor ignores it.
    """
    out_dtype = out_dtype or tensor.dtype
    zeroed = is_new and spec.branch_out and plan.zero_new_branches
    args = (plan, spec, compute_dtype, out_dtype)
    chunks = _iter_expand(*args, target_name, tensor, zeroed, identity)
    if donor is None or zeroed or identity or not tensor.is_floating_point():
        yield from chunks
        return
    if donor.shape != tensor.shape:
        raise CheckpointError(
            f"tensor {target_name}: the next layer's {donor_name} has shape "
            f"{tuple(donor.shape)}, not {tuple(tensor.shape)} (method aki needs equal layers)"
        )
    donor_chunks = _iter_expand(*args, donor_name or target_name, donor, False, False)
    yield from _take_new_units(plan, spec, chunks, donor_chunks)


def _take_new_units(
    plan: ExpansionPlan,
    spec: Tensor,
    chunks: Iterator[torch.Tensor],
    donor_chunks: Iterator[torch.Tensor],
) -> Iterator[torch.Tensor]:
    """bert2BERT-AKI: along every producer axis, the new units (later copies and extras,
    :meth:`~lemonkit.spaces.SpaceMap.new_channels`) take the donor's entries. Chunks
    are runs of axis-0 rows, the same runs for both tensors (same shape, same plan)."""
    axes = effective_axes(plan, spec)
    masks = {a: _new_channels(plan, r.space) for a, r in enumerate(axes) if isinstance(r, Out)}
    start = 0
    for mine, theirs in zip(chunks, donor_chunks, strict=True):
        n = mine.shape[0]
        for axis, mask in masks.items():
            index = (mask[start : start + n] if axis == 0 else mask).nonzero().flatten()
            if len(index):  # out of place: a chunk may be a view of the source
                mine = mine.index_copy(axis, index, theirs.index_select(axis, index))
        start += n
        yield mine


def _new_channels(plan: ExpansionPlan, space: SpaceRef) -> torch.Tensor:
    """New-unit flags per target channel of a (possibly fused) space."""
    names = (space,) if isinstance(space, str) else space
    return torch.cat([plan.maps[n].new_channels() for n in names])


def _iter_expand(
    plan: ExpansionPlan,
    spec: Tensor,
    compute_dtype: torch.dtype | None,
    out_dtype: torch.dtype,
    target_name: str,
    tensor: torch.Tensor,
    zeroed: bool,
    identity: bool,
) -> Iterator[torch.Tensor]:
    """The width (and zero-depth) expansion of one tensor, in chunks of axis-0 rows.

    Memory stays near one chunk (``CHUNK_ELEMENTS``) beyond the source tensor. Rows are
    independent: a target row copies a source row (or is an extra stream row: the mean
    row for an average-filled stream, zeros otherwise) and then gets its own consumer
    splits, seeded by the tensor name and the chunk's first row. The mean row works
    because any split of it still computes mean(W) x* = mean(W x).

    Arithmetic is in ``compute_dtype`` (default: float32 for 16-bit outputs, float64
    for 32- and 64-bit ones, so split remainders are exact) and each chunk is cast once
    to ``out_dtype`` (default: the source's).
    """
    check_shape(plan, spec, target_name, tuple(tensor.shape))
    if not tensor.is_floating_point():  # integer buffers (position ids): nothing grows
        yield tensor
        return
    compute = compute_dtype or (torch.float32 if out_dtype.itemsize <= 2 else torch.float64)
    shape = target_shape(plan, spec, tensor.shape)
    axes = effective_axes(plan, spec)
    seed_name = _seed_name(plan, target_name)
    source = tensor.detach().to(out_dtype)  # rounded to the output dtype: splits exact in it
    if zeroed:  # a new block's residual branch output (depth "zero")
        yield torch.zeros(shape, dtype=out_dtype)
        return
    if identity:  # a norm that must pass its (normalised) input through: (1, 0)
        fill = torch.ones if isinstance(axes[0], Gamma) else torch.zeros
        yield fill(shape, dtype=out_dtype)
        return
    if source.dim() < 2 or not (axes[0] is None or isinstance(axes[0], Out)):
        gen = _generator(plan.seed, seed_name)
        yield _expand_block(plan, spec, axes, source.to(compute), gen, out_dtype, from_axis=0)
        return
    rows, fill = _row_sources(plan, axes[0], source.shape[0])
    per_chunk = max(1, CHUNK_ELEMENTS // max(1, math.prod(shape[1:])))
    mean_row = None
    for start, src, n in _row_runs(rows, per_chunk):
        if src >= 0:
            block = source.narrow(0, src, n).to(compute)
        elif fill == "avg":
            if mean_row is None:
                mean_row = source.to(compute).mean(0, keepdim=True)
            block = mean_row.expand(n, *mean_row.shape[1:]).clone()
        else:
            block = torch.zeros(n, *source.shape[1:], dtype=compute)
        gen = _generator(plan.seed, f"{seed_name}@{start}")
        yield _expand_block(plan, spec, axes, block, gen, out_dtype, from_axis=1)


def _expand_block(plan, spec, axes, t: torch.Tensor, gen, out_dtype, from_axis: int):
    """Consumer axes, then producer axes, then norms, for the axes from ``from_axis`` on;
    anything written into the stream is scaled by ``plan.stream_scale``."""
    if plan.stream_scale != 1.0 and any(_writes_stream(plan, r) for r in axes):
        t = t * plan.stream_scale
    if plan.table.embed_scale_sqrt_hidden and _is_embedding(plan, spec):
        t = t * embedding_ratio(plan, out_dtype)
    for axis, rule in enumerate(axes):
        if axis >= from_axis and isinstance(rule, In):
            t = _per_segment(t, axis, rule.space, plan, _consumer(plan.split, gen, out_dtype))
    for axis, rule in enumerate(axes):
        if axis >= from_axis and isinstance(rule, Out):
            t = _per_segment(t, axis, rule.space, plan, expand_out)
    if from_axis == 0 and axes and isinstance(axes[0], Gamma | Beta):
        t = _expand_norm(plan, spec, axes[0], t, gen, out_dtype)
    return t.to(out_dtype).contiguous()


def _writes_stream(plan: ExpansionPlan, rule) -> bool:
    if not isinstance(rule, Out):
        return False
    names = (rule.space,) if isinstance(rule.space, str) else rule.space
    return any(plan.maps[n].name == HIDDEN for n in names)


def _is_embedding(plan: ExpansionPlan, spec: Tensor) -> bool:
    """The input embedding that the model scales, or a head tied to it."""
    tie = plan.table.tie_embeddings
    tied_head = plan.tied and tie and spec.name == tie[0]
    return spec.name == plan.table.embed_scale_sqrt_hidden or bool(tied_head)


def embedding_ratio(plan: ExpansionPlan, dtype: torch.dtype) -> float:
    """c = s(Ds) / s(Dt) with s(D) = sqrt(D) rounded to the weight dtype, as
    ``from_pretrained`` initialises Gemma's ``embed_scale``, so E* s(Dt) = [E..., 0] s(Ds)."""

    def s(d: int) -> float:
        return float(torch.tensor(d**0.5, dtype=dtype))

    return s(plan.source_sizes["hidden"]) / s(plan.sizes["hidden"])


def _head_reads_stream(plan: ExpansionPlan) -> bool:
    """Whether the tied embedding lives in the stream (not in a kept projection space)."""
    embedding = match_or_raise(plan.table, plan.table.tie_embeddings[1])[0]
    return any(_writes_stream(plan, rule) for rule in embedding.axes)


def _row_sources(plan: ExpansionPlan, rule, n_rows: int) -> tuple[torch.Tensor, str]:
    """Source row of each target row (-1: extra stream row) and the extras' fill."""
    if rule is None:
        return torch.arange(n_rows), "copy"
    names = (rule.space,) if isinstance(rule.space, str) else rule.space
    parts, offset, fill = [], 0, "copy"
    for m in (plan.maps[n] for n in names):
        src = m.channel_sources()
        parts.append(torch.where(src >= 0, src + offset, src))
        offset += m.src_units * m.unit_size
        fill = m.fill if (src < 0).any() else fill
    return torch.cat(parts), fill


def _row_runs(rows: torch.Tensor, limit: int) -> Iterator[tuple[int, int, int]]:
    """(target start, source start or -1, length): runs of consecutive rows, <= limit."""
    rows = rows.tolist()
    start = 0
    for j in range(1, len(rows) + 1):
        same = (
            j < len(rows)
            and j - start < limit
            and (
                (rows[j] < 0 and rows[j - 1] < 0)
                or (rows[j - 1] >= 0 and rows[j] == rows[j - 1] + 1)
            )
        )
        if not same:
            yield start, rows[start], j - start
            start = j


def _consumer(method: str, gen: torch.Generator, storage: torch.dtype):
    return lambda t, axis, space: expand_in(t, axis, space, method, gen, storage)


def _expand_norm(
    plan: ExpansionPlan, spec: Tensor, rule, t: torch.Tensor, gen, out_dtype: torch.dtype
) -> torch.Tensor:
    space = plan.maps[rule.space]
    # a tied head reads with the grown embedding: k copies, each scaled like the stream
    tied = spec.tied_head_norm and plan.tied and _head_reads_stream(plan)
    scale = 1.0 / (space.copies * plan.stream_scale) if tied else 1.0
    if tied and plan.table.embed_scale_sqrt_hidden:
        scale /= embedding_ratio(plan, out_dtype)
    if isinstance(rule, Gamma):
        return expand_gamma(
            t,
            space,
            scale=scale,
            extra_zero=spec.stream_norm,
            gen=gen,
            offset=plan.table.norm_offset,
        )
    return expand_beta(t, space, scale=scale, extra_mean=spec.stream_norm)


def _per_segment(
    t: torch.Tensor, axis: int, space: SpaceRef, plan: ExpansionPlan, fn
) -> torch.Tensor:
    """Apply ``fn(t, axis, map)`` to each segment of a fused axis and concatenate."""
    names = (space,) if isinstance(space, str) else space
    maps = [plan.maps[n] for n in names]
    if len(maps) == 1:
        return fn(t, axis, maps[0])
    sizes = [m.src_units * m.unit_size for m in maps]
    parts = t.split(sizes, dim=axis)
    return torch.cat([fn(p, axis, m) for p, m in zip(parts, maps, strict=True)], dim=axis)


def _seed_name(plan: ExpansionPlan, target_name: str) -> str:
    tie = plan.table.tie_embeddings
    return tie[1] if (plan.tied and tie and target_name == tie[0]) else target_name


def _generator(seed: int, name: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
