"""The streamed part-by-part check: every stored tensor, in chunks of rows, in bounded memory.

A lossless expansion makes each linear map of the target compute its source's map on the
lifted stream: copies of a source unit carry its value, extra units carry zeros, and the
copies of a source column sum to that column (LEMON's split). So for sampled inputs ``x``
(``probes`` random vectors per tensor) pushed through a source part and its target part,

    target(lift(x)) == lift_out(source(x))          (the decision's factors applied)

where ``lift_out`` copies the output units along the producer axis (extras: the mean or
zeros, as the engine fills them). Each part is one tensor: an embedding, each attention
projection, each MLP projection, each expert, the head. Target rows are read from disk
in chunks (``Checkpoint.rows``), so memory holds one chunk plus a vector per row: it
does not depend on the block size. Tensors whose rule is not one linear map of one
consumer axis (norms, biases of norms, stacked experts being split, AKI donors, new
blocks' zeros) are compared with the engine's recomputation of them, chunk by chunk.

What this catches: any wrong row, column or value of any stored tensor (a planted wrong
row is caught with probability 1), a shape or dtype mismatch, a missing tensor. What it
cannot catch, unlike the whole-model comparison: an error in how parts compose (the
target config, the norm rescale of a plan, attention grouping), because each part is
checked against the plan's own lift. :mod:`lemonkit.verification.certificate` therefore
adds the end-to-end comparison whenever it fits the memory budget.

Example::

    report = check_parts(ckpt, out_ckpt, plan, decisions, level=LEVELS["cheap"])
    report["ok"], report["worst"]
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import torch
from tqdm.auto import tqdm

from lemonkit.engine.copies import is_copy
from lemonkit.engine.runs import consecutive_runs
from lemonkit.engine.tensor import _per_segment, _row_sources, iter_expand_tensor
from lemonkit.io.checkpoint import Checkpoint
from lemonkit.io.memory import release_freed
from lemonkit.plan import ExpansionPlan
from lemonkit.plan.decisions import Decision
from lemonkit.tables.format import Beta, Gamma, In, Out, space_names
from lemonkit.verification.checksums import stored_crc
from lemonkit.verification.chunks import Buffer as _Buffer
from lemonkit.verification.chunks import reduced as _reduced
from lemonkit.verification.chunks import rows_of as _rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Level:
    """How much a check costs: the arithmetic dtype, probes per part, the tolerance."""

    name: str
    dtype: torch.dtype
    probes: int
    tol: float


LEVELS = {
    "cheap": Level("cheap", torch.float32, 4, 1e-4),
    "full": Level("full", torch.float64, 16, 1e-10),
}


def check_parts(
    source: Checkpoint,
    target: Checkpoint,
    plan: ExpansionPlan,
    decisions: list[Decision],
    *,
    level: Level,
    chunk_bytes: int = 32 * 2**20,
    seed: int = 0,
    progress: bool = False,
    workers: int = 1,
    checksums: dict[str, int] | None = None,
) -> dict:
    """Check every saved decision's stored tensor; returns the JSON-able parts record.
    ``workers`` tensors are checked at once, sharing ``chunk_bytes``. ``checksums``: the
    CRC-32 of tensors as the engine made them (the expand run's,
    :mod:`~lemonkit.verification.checksums`): those of them the check would recompute
    are compared with the stored bytes' CRC instead (a mismatch is then recomputed, for
    its error)."""
    chunk = max(2**20, chunk_bytes // max(1, workers))  # the budget shared by the workers
    one = partial(check_part, source, target, plan, level=level, chunk_bytes=chunk,
                  seed=seed, checksums=checksums)  # fmt: skip
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(one, decisions)
        bar = tqdm(results, total=len(decisions), desc="verify parts", disable=not progress)
        return summarize(plan, level, list(bar))


def check_part(
    source: Checkpoint,
    target: Checkpoint,
    plan: ExpansionPlan,
    d: Decision,
    *,
    level: Level,
    chunk_bytes: int,
    seed: int = 0,
    checksums: dict[str, int] | None = None,
) -> tuple[Decision, str | None, float | str]:
    """One stored tensor checked: (decision, how, its error), or (decision, None, what is
    wrong with it) when it is missing or stored with another dtype or shape."""
    stored = target.infos()
    if d.name not in stored:
        return d, None, "missing"
    dtype, shape = stored[d.name]
    if (dtype, tuple(shape)) != (d.dtype, d.shape):
        return d, None, f"stored {dtype} {tuple(shape)}"
    how = check_kind(plan, d)
    per = _rows_per_chunk(d, chunk_bytes)
    checksums = checksums or {}
    summed = how == "recompute" and d.name in checksums
    if summed and stored_crc(target, d.name, d.shape, per) == checksums[d.name]:
        return d, "checksum", 0.0
    check = {"copy": _compare_copy, "probe": _probe, "recompute": _recompute}[how]
    err = check(source, target, plan, d, level, per, seed)
    release_freed()  # the chunks' heap pages back to the system: RSS stays bounded
    return d, how, err


def summarize(plan: ExpansionPlan, level: Level, results: list[tuple]) -> dict:
    """The JSON-able parts record of :func:`check_part`'s results, in their order."""
    tol_scale = 1.0 if not plan.lossy_reason else float("inf")
    parts, failing = [], []
    for d, how, err in results:
        if how is None:
            failing.append({"name": d.name, "error": err})
            continue
        tol = tolerance(plan, d, level) * tol_scale
        parts.append((d.name, how, err, tol))
        if not err <= tol:
            failing.append({"name": d.name, "check": how, "error": err, "tolerance": tol})
    worst = max(parts, key=lambda p: p[2] / p[3] if p[3] else p[2], default=None)
    return {
        "ok": not failing,
        "parts": len(parts) + sum(1 for f in failing if "check" not in f),
        "probed": sum(1 for p in parts if p[1] == "probe"),
        "recomputed": sum(1 for p in parts if p[1] == "recompute"),
        "copied": sum(1 for p in parts if p[1] == "copy"),  # compared bytewise
        "checksummed": sum(1 for p in parts if p[1] == "checksum"),  # the engine's bytes
        "probes_per_part": level.probes,
        "dtype": str(level.dtype).removeprefix("torch."),
        "worst": {"name": worst[0], "check": worst[1], "error": worst[2], "tolerance": worst[3]}
        if worst
        else None,
        "failing": failing[:20],
    }


def tolerance(plan: ExpansionPlan, d: Decision, level: Level) -> float:
    """The level's arithmetic tolerance, or one rounding of the storage dtype where the
    stored copies are rounded (a factor, equal splits, a narrower output)."""
    rounded = (
        d.stream_scale != 1.0
        or d.embedding_ratio != 1.0
        or d.norm_scale != 1.0
        or plan.width_method.split != "lemon"
        or d.approximate
        or any(_averaged_extras(plan, r) for r in d.axes if isinstance(r, Out))
    )
    storage = 2 * torch.finfo(d.dtype).eps if d.dtype.is_floating_point and rounded else 0.0
    return max(level.tol, storage)


def _averaged_extras(plan: ExpansionPlan, rule: Out) -> bool:
    """Extra units computed as a mean (then rounded to the storage dtype), not copied."""
    maps = [plan.maps[n] for n in space_names(rule.space)]
    return any(m.fill == "avg" and -1 in m.sources for m in maps)


def check_kind(plan: ExpansionPlan, d: Decision) -> str:
    """How the parts check verifies ``d``'s stored tensor: ``copy`` (bytewise against the
    source), ``probe`` (through the plan's lift, on probes) or ``recompute`` (against the
    engine's output: zeros, norms, a new block's untied replicas, donors, experts)."""
    return "copy" if is_copy(plan, d) else "probe" if probe_kind(plan, d) else "recompute"


def probe_kind(plan: ExpansionPlan, d: Decision) -> bool:
    """Whether ``d`` is one linear map checked on probes: an expanded tensor with at most
    one grown consumer axis (axis 1, or axis 0 of a matrix), the other grown axes producer
    axes 0 or 1, no norm, no donor, no expert split, no diluted copies, and not a new
    block's replicas made to differ (fan-in noise, type-2 pairs): those are recomputed."""
    if d.op != "expand" or d.donor or d.expert_copy or not d.dtype.is_floating_point:
        return False
    if d.untie or d.paired:
        return False
    if len(d.shape) == 0 or any(isinstance(r, Gamma | Beta) for r in d.axes):
        return False
    grown = {a: r for a, r in enumerate(d.axes) if _grows(plan, r)}
    ins = [a for a, r in grown.items() if isinstance(r, In)]
    if len(ins) > 1 or any(a >= 2 for a in grown):
        return False
    if ins and any(plan.maps[n].diluted for n in space_names(grown[ins[0]].space)):
        return False
    return not ins or ins == [1] or (ins == [0] and len(d.shape) == 2)


def _grows(plan: ExpansionPlan, rule) -> bool:
    return isinstance(rule, In | Out) and not all(
        plan.maps[n].is_identity for n in space_names(rule.space)
    )


def _rows_per_chunk(d: Decision, chunk_bytes: int) -> int:
    row = max(1, int(torch.Size(d.shape[1:]).numel())) * 8
    return max(1, chunk_bytes // row)


def _probe(source, target, plan, d: Decision, level: Level, per: int, seed: int) -> float:
    """max over output units of ||target(lift x) - lift_out(source x)|| / ||.||."""
    c = level.dtype
    factor = d.stream_scale * d.embedding_ratio
    grown = {a: r for a, r in enumerate(d.axes) if _grows(plan, r)}
    ins = [a for a, r in grown.items() if isinstance(r, In)]
    src_rows, tgt_rows = d.source_shape[0], d.shape[0]

    # each chunk is converted into one reused buffer (consumed before the next chunk):
    # fresh buffers, returned to the system after every chunk, page-fault each time
    def src_chunks() -> Iterator[tuple[int, torch.Tensor]]:
        buf = _Buffer(per, d.source_shape[1:], c)
        for a in range(0, src_rows, per):
            rows = _rows(source, d.source, a, min(a + per, src_rows)).to(d.dtype)
            yield a, buf.fill(rows).mul_(factor) if factor != 1.0 else buf.fill(rows)
            del rows
            release_freed()

    def tgt_chunks() -> Iterator[tuple[int, torch.Tensor]]:
        buf = _Buffer(per, d.shape[1:], c)
        for a in range(0, tgt_rows, per):
            yield a, buf.fill(_rows(target, d.name, a, min(a + per, tgt_rows)))
            release_freed()  # threads' arenas keep freed chunks otherwise (measured)

    if ins == [0]:  # a [in, out] matrix (GPT-2's Conv1D): accumulate over input rows
        p_s = _probes(d, d.source_shape[0], level, seed)
        p_t = _lift(plan, d.axes[0], p_s)
        want = sum(p_s[a : a + len(s)].T @ s for a, s in src_chunks())
        got = sum(p_t[a : a + len(t)].T @ t for a, t in tgt_chunks())
        if 1 in grown:
            want = _per_segment(want, 1, grown[1].space, plan, _expand_out)
        return _row_error(got.T, want.T)
    if ins == [1]:
        p_s = _probes(d, d.source_shape[1], level, seed)
        p_t = _lift(plan, d.axes[1], p_s)
        chunks = _reduced(source, d.source, d.source_shape, per, p_s, d.dtype, factor)
        reduced = torch.cat(list(chunks))
        rows, fill = _axis0_sources(plan, d, grown, tgt_rows)
        mean = reduced.mean(0, keepdim=True)
        worst, a = 0.0, 0
        for got in _reduced(target, d.name, d.shape, per, p_t):
            want = _gather_rows(reduced, rows[a : a + len(got)], fill, mean)
            worst = max(worst, _row_error(got, want))
            a += len(got)
        return worst
    # no consumer axis (embeddings, biases, a kept-MLP down projection): rows compared
    # with the source rows they copy, read run by run, chunk for chunk; bytewise first
    # where the engine stores them unrounded (no factor, no averaged extras)
    rows, fill = _axis0_sources(plan, d, grown, tgt_rows)
    mean = None
    if fill == "avg" and (rows < 0).any():
        mean = sum(s.sum(0, keepdim=True) for _, s in src_chunks()) / src_rows
    exact = factor == 1.0 and mean is None
    exact = exact and not (1 in grown and _averaged_extras(plan, grown[1]))
    worst = 0.0
    for a in range(0, tgt_rows, per):
        got = _rows(target, d.name, a, min(a + per, tgt_rows))
        lift = (source, plan, d, grown, rows[a : a + len(got)], mean, factor)
        if exact and torch.equal(got, _copied_rows(*lift, d.dtype)):
            continue  # the same bytes (a differing chunk gets its error below)
        worst = max(worst, _row_error(got.to(c), _copied_rows(*lift, c)))
        del got
        release_freed()
    return worst


def _copied_rows(source, plan, d: Decision, grown, rows, mean, factor, dtype) -> torch.Tensor:
    """The target rows a tensor without a consumer axis should hold, in ``dtype``: the
    source rows ``rows`` names (times ``factor``; -1: ``mean`` or zeros), then axis 1's
    producer map."""
    pieces = []
    for _, first, n in consecutive_runs(rows.tolist()):
        if first >= 0:
            piece = _rows(source, d.source, first, first + n).to(d.dtype).to(dtype)
            pieces.append(piece * factor if factor != 1.0 else piece)
        else:
            extra = mean if mean is not None else torch.zeros(1, *d.source_shape[1:], dtype=dtype)
            pieces.append(extra.to(dtype).expand(n, *extra.shape[1:]))
    want = torch.cat(pieces)
    return _per_segment(want, 1, grown[1].space, plan, _expand_out) if 1 in grown else want


def _compare_copy(source, target, plan, d: Decision, level: Level, per: int, seed: int):
    """A copied tensor (:func:`~lemonkit.engine.copies.is_copy`): its stored rows against
    the source's rows in the output dtype, bytewise; a chunk that differs gets the probe's
    row error (so -0.0 for 0.0 still passes and a NaN still fails, as before)."""
    if not d.shape:
        return _row_error(target[d.name].reshape(1).to(level.dtype),
                          source[d.source].to(d.dtype).reshape(1).to(level.dtype))  # fmt: skip
    worst = 0.0
    for a in range(0, d.shape[0], per):
        b = min(a + per, d.shape[0])
        got, want = _rows(target, d.name, a, b), _rows(source, d.source, a, b).to(d.dtype)
        if not torch.equal(got, want):
            worst = max(worst, _row_error(got.to(level.dtype), want.to(level.dtype)))
        del got, want
        release_freed()
    return worst


def _expand_out(t: torch.Tensor, axis: int, space) -> torch.Tensor:
    from lemonkit.engine.rules import expand_out

    return expand_out(t, axis, space)


def _axis0_sources(plan, d: Decision, grown: dict, n_rows: int) -> tuple[torch.Tensor, str]:
    if 0 in grown:
        return _row_sources(plan, grown[0], n_rows)
    return torch.arange(n_rows), "copy"


def _gather_rows(reduced: torch.Tensor, rows: torch.Tensor, fill: str, mean: torch.Tensor):
    out = reduced[rows.clamp(min=0)]
    extra = rows < 0
    if extra.any():
        out[extra] = mean[0] if fill == "avg" else 0.0
    return out


def _probes(d: Decision, n: int, level: Level, seed: int) -> torch.Tensor:
    """``level.probes`` random input vectors for the part, seeded by its name."""
    digest = hashlib.sha256(f"{seed}:{d.name}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
    return torch.randn(n, level.probes, generator=gen, dtype=level.dtype)


def _lift(plan: ExpansionPlan, rule: In, p: torch.Tensor) -> torch.Tensor:
    """The probes on the target's consumer axis: each copy carries its source unit's
    value, extras carry zeros (segments of a fused axis one after the other)."""
    parts, offset = [], 0
    for m in (plan.maps[n] for n in space_names(rule.space)):
        seg = p[offset : offset + m.src_units * m.unit_size]
        src = m.channel_sources()
        lifted = seg[src.clamp(min=0)]
        lifted[src < 0] = 0.0
        parts.append(lifted)
        offset += m.src_units * m.unit_size
    return torch.cat(parts)


def _row_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max over rows of ||got - want|| / max(||want||, rms of the rows' norms)."""
    got, want = got.reshape(len(got), -1), want.reshape(len(want), -1)
    diff = (got - want).norm(dim=1)
    norms = want.norm(dim=1)
    floor = norms.square().mean().sqrt().clamp(min=torch.finfo(want.dtype).tiny)
    return float((diff / torch.maximum(norms, floor)).max()) if len(diff) else 0.0


def _recompute(source, target, plan, d: Decision, level: Level, per: int, seed: int) -> float:
    """The stored tensor against the engine's recomputation, chunk for chunk."""
    c = level.dtype
    if d.op in ("zero", "identity"):
        value = 1.0 if d.op == "identity" and isinstance(d.axes[0], Gamma) else 0.0
        worst = 0.0
        for a in range(0, d.shape[0], per):
            t = _rows(target, d.name, a, min(a + per, d.shape[0]))
            if not bool((t != value).any()):  # in the stored dtype: no conversion
                continue
            worst = max(worst, float((t.to(c) - value).abs().max()))
        return worst
    # lazily: the engine reads only the rows each chunk needs (a 70B-sized MLP matrix
    # read whole is 0.5 GB in bf16)
    read = source.lazy if hasattr(source, "lazy") else source.__getitem__
    donor = read(d.donor) if d.donor else None
    worst, start = 0.0, 0
    for chunk in iter_expand_tensor(plan, d, read(d.source), donor):
        n = chunk.shape[0] if chunk.dim() else 1
        t = _rows(target, d.name, start, start + n) if chunk.dim() else target[d.name]
        start += n
        if t.dtype == chunk.dtype and torch.equal(t, chunk.reshape(t.shape)):
            continue  # the same bytes (a differing chunk gets its error below)
        t, want = t.to(c), chunk.to(c).reshape(t.shape)
        scale = float(want.abs().max()) if want.numel() else 0.0
        diff = float((t - want).abs().max()) if want.numel() else 0.0
        worst = max(worst, diff / scale if scale else diff)
    return worst
