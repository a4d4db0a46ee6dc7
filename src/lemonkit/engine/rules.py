"""The paper's algebra on one axis of one tensor (LEMON, appendix B and C).

Every function takes a tensor in the compute dtype (float64, or float32 for 16-bit
outputs), the axis, and a :class:`~lemonkit.plan.spaces.SpaceMap`, and returns the tensor
grown along that axis:

- :func:`expand_out` (producer axis): copies; extra stream units are the average of the
  source units (LayerNorm stream, B.4.1 row-average) or zero (RMSNorm stream, B.4.2).
- :func:`expand_in` (consumer axis): the copies of a source unit get weights that sum to
  the original (B.4.4 column-random); unequal per element with ``split="lemon"``
  (symmetry breaking, paper 4.1), equal ``1/n`` with ``split="equal"`` (Net2Net). Extra
  units get free random weights: they only ever multiply zeros.
- :func:`expand_gamma` / :func:`expand_beta`: a norm over the stream (C.1 with the
  corrected eta = sqrt(k*Ds/Dt), NOTES.md section 1).

Example:
    >>> import torch
    >>> from lemonkit.plan.spaces import stream_map
    >>> w = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    >>> expand_out(w, 1, stream_map(2, 3, fill="avg")).tolist()
    [[1.0, 3.0, 2.0]]
"""

from __future__ import annotations

import functools
import math

import torch

from lemonkit.engine.reductions import fixed_mean, sampled_std
from lemonkit.engine.runs import consecutive_runs
from lemonkit.plan.spaces import SpaceMap

SPLITS = ("lemon", "paper", "equal")  # the consumer-axis rules (``plan.split``)


def expand_out(t: torch.Tensor, axis: int, space: SpaceMap) -> torch.Tensor:
    """Grow a producer axis: gather copies, fill extra units per ``space.fill``."""
    if space.is_identity:
        return t
    src = space.channel_sources()
    out = gather(t, axis, src, zeros=False)  # every extra is filled below
    extra = (src < 0).nonzero().flatten()
    if len(extra):
        if space.fill == "avg":
            fill = fixed_mean(t, axis)
        elif space.fill == "zero":
            fill = torch.zeros_like(t.narrow(axis, 0, 1))
        else:
            raise AssertionError(f"space {space.name} has extras but fill={space.fill}")
        shape = list(out.shape)
        shape[axis] = len(extra)
        out.index_copy_(axis, extra, fill.expand(shape))
    return out


def expand_in(
    t: torch.Tensor,
    axis: int,
    space: SpaceMap,
    split: str,
    gen: torch.Generator,
    storage: torch.dtype | None = None,
    sigma: float = 0.0,
    spread: float = 0.7,
    noise: torch.dtype | None = None,
) -> torch.Tensor:
    """Grow a consumer axis: split each source column over its copies, random extras.

    ``lemon``: copy j of a column gets ``(1 + u v_j) / c`` of it (c copies; u ~ U(-s, s)
    per element of the other axes, e.g. per row of a weight, v_j ~ U(-s, s) per target
    channel, s = ``spread`` (0.7: every element's fraction differs and lies in
    (0.51/c, 1.49/c); s < 1 keeps every copy exact).
    Every copy but the last is rounded onto the grid of the source element's last bit in
    ``storage`` (default: the dtype of ``t``) and the last copy is the exact remainder,
    which lies on the same grid: the copies sum to the column exactly once stored, even
    in bfloat16. The remainder is the element minus the copies one at a time: every
    partial remainder is below the top of the element's binade, so each subtraction is
    exact even where the compute dtype has no extra bits (float64 storage); a running sum
    of the copies could pass that top and round. ``paper`` (LEMON C.4): copy j gets
    ``W/c + Phi_j``, Phi ~ N(0, sigma^2) per element, on the same grid, the last copy the
    remainder; Phi is clipped where an element is too small to hold it exactly
    (:func:`_additive_noise`).
    ``equal``: every copy is W/c (identical; exact sums when c is a power of 2). Extra
    columns get N(0, std(W)^2), std over a bounded sample of the chunk
    (:func:`~lemonkit.engine.reductions.sampled_std`): they only ever multiply zeros.
    Softmax-diluted copies (:func:`_split_diluted`) take ``paper`` as ``lemon``.
    ``noise``: the dtype the extras are drawn and scaled in (default: that of ``t``;
    the compute dtype where ``t`` is in the output dtype, see
    :func:`~lemonkit.engine.copies.is_direct`).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if space.is_identity:
        return t
    out = gather(t, axis, space.channel_sources(), zeros=space.diluted)  # extras: filled below
    runs = split_runs(space)
    if space.diluted:
        split = "lemon" if split == "paper" else split
        return _split_diluted(t, out, axis, runs, split, gen, storage or t.dtype, spread)
    rest = None  # per source element: what its copies so far leave
    u_shape = list(t.shape)
    u_shape[axis] = 1
    u = None
    std = None  # of the chunk (a bounded sample): computed once, for the first run of extras
    for start, first, n, rank, count in runs:
        part = out.narrow(axis, start, n)
        if first < 0:
            shape = list(t.shape)
            shape[axis] = n
            std = sampled_std(t) if std is None else std
            extra = torch.randn(shape, generator=gen, dtype=noise or t.dtype)
            torch.mul(extra, std or 0.02, out=part)  # scaled in extra's dtype, stored once
        elif count == 1:
            continue
        elif split == "equal":
            part.mul_(1.0 / count)
        elif split == "paper" and rank < count - 1:
            if rest is None:
                rest = t.clone()
            noise = _additive_noise(part, count, sigma, gen, storage or t.dtype)
            piece = snap_to_grid(part / count + noise, part, storage or t.dtype)
            part.copy_(piece)
            rest.narrow(axis, first, n).sub_(piece)
        elif rank < count - 1:
            if u is None:
                u = (torch.rand(u_shape, generator=gen, dtype=t.dtype) - 0.5) * (2 * spread)
                rest = t.clone() if rest is None else rest
            v = torch.rand(n, generator=gen, dtype=t.dtype).sub_(0.5).mul_(2 * spread)
            v = _along(axis, t.dim(), v)
            share = (u * v).add_(1.0).div_(count)
            piece = snap_to_grid(part * share, part, storage or t.dtype)
            part.copy_(piece)
            rest.narrow(axis, first, n).sub_(piece)
        else:
            part.copy_(rest.narrow(axis, first, n))
    return out


def _split_diluted(
    t: torch.Tensor,
    out: torch.Tensor,
    axis: int,
    runs: list,
    split: str,
    gen: torch.Generator,
    storage: torch.dtype,
    spread: float = 0.7,
) -> torch.Tensor:
    """Copies that the model weighs 1/count each (a softmax router's copies of an
    expert): they must sum to count x the source, so each is the source plus a deviation,
    the deviations summing to zero. ``lemon``: copy j deviates by ``t u v_j / (count-1)``
    (u per element, v per copy, both U(-spread, spread)), the last copy by minus the others'
    sum, every deviation on the grid of the element's last bit in ``storage``. An element
    whose copies would not all stay below the top of its binade (where that grid is no
    longer representable) keeps plain copies, so every stored copy is exact and the
    copies sum to count x t exactly in any dtype. ``equal``: plain copies (Net2Net)."""
    if split == "equal":
        return out
    u_shape = list(t.shape)
    u_shape[axis] = 1
    u = (torch.rand(u_shape, generator=gen, dtype=t.dtype) - 0.5) * (2 * spread)
    taken, bad = torch.zeros_like(t), torch.zeros_like(t, dtype=torch.bool)
    top = 2 * _binade(t).clamp(min=torch.finfo(storage).smallest_normal)
    for start, first, n, rank, count in runs:
        if first < 0 or count == 1:
            continue
        src = t.narrow(axis, first, n)
        if rank < count - 1:
            v = torch.rand(n, generator=gen, dtype=t.dtype).sub_(0.5).mul_(2 * spread)
            v = _along(axis, t.dim(), v)
            delta = snap_to_grid(src * u * v / (count - 1), src, storage)
            taken.narrow(axis, first, n).add_(delta)
        else:
            delta = -taken.narrow(axis, first, n)
        piece = src + delta
        bad.narrow(axis, first, n).logical_or_(piece.abs() >= top.narrow(axis, first, n))
        out.narrow(axis, start, n).copy_(piece)
    for start, first, n, _, count in runs:
        if first >= 0 and count > 1:
            part = out.narrow(axis, start, n)
            part.copy_(torch.where(bad.narrow(axis, first, n), t.narrow(axis, first, n), part))
    return out


def _additive_noise(
    w: torch.Tensor, count: int, sigma: float, gen: torch.Generator, storage: torch.dtype
) -> torch.Tensor:
    """N(0, sigma^2) per element of ``w``, clipped so that every copy of the element (W/c
    plus at most c - 1 such terms) stays below the top of its binade in ``storage``, where
    the grid of its last bit is exact: small elements get noise up to about |W|."""
    top = 2 * _binade(w).clamp(min=torch.finfo(storage).smallest_normal)
    bound = (top - w.abs() / count).clamp(min=0) * (0.9 / (count - 1))
    noise = torch.randn(w.shape, generator=gen, dtype=w.dtype) * sigma
    return torch.maximum(torch.minimum(noise, bound), -bound)


def _binade(t: torch.Tensor) -> torch.Tensor:
    """2^e with 2^e <= |t| < 2^(e+1), elementwise (0 for 0)."""
    _, mask, int_type = _FLOAT_BITS[t.dtype]
    return torch.bitwise_and(t.contiguous().view(int_type), mask).view(t.dtype)


def expert_piece(
    t: torch.Tensor,
    rank: int,
    copies: int,
    *,
    diluted: bool,
    split: str,
    gen: torch.Generator,
    storage: torch.dtype | None = None,
    sigma: float = 0.0,
    spread: float = 0.7,
) -> torch.Tensor:
    """Copy ``rank`` of an expert's output tensor ``t`` (down projection, its bias) in a
    target with ``copies`` copies of the expert: the :func:`expand_in` split of ``t``
    over its copies, which sum to ``t`` (or to ``copies x t`` where the model weighs each
    copy 1/copies: ``diluted``). Every copy draws the same random numbers (``gen`` is
    seeded by the source expert), so each is computed from ``t`` alone.

    >>> import torch
    >>> t = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    >>> parts = [expert_piece(t, r, 2, diluted=True, split="lemon",
    ...     gen=torch.Generator().manual_seed(0)) for r in range(2)]
    >>> (parts[0] + parts[1]).tolist()
    [[2.0, 4.0]]
    """
    if copies == 1:
        return t
    space = SpaceMap("copies", 1, copies, (0,) * copies, diluted=diluted)
    return expand_in(t.unsqueeze(0), 0, space, split, gen, storage, sigma, spread)[rank]


@functools.lru_cache(maxsize=256)
def split_runs(space: SpaceMap) -> list[tuple[int, int, int, int, int]]:
    """(target start, source start or -1, length, copy rank, copy count) for maximal runs
    of target channels with consecutive sources and the same rank and count, ordered by
    rank (so every non-last copy comes before the last one).

    >>> split_runs(SpaceMap("x", 3, 4, (0, 1, 2, -1), fill="zero"))
    [(0, 0, 3, 0, 1), (3, -1, 1, 0, 1)]
    """
    src = space.channel_sources()
    rank, count = (x.tolist() for x in copy_ranks(src))
    same = lambda j: rank[j] == rank[j - 1] and count[j] == count[j - 1]  # noqa: E731
    runs = [
        (start, first, n, rank[start], count[start])
        for start, first, n in consecutive_runs(src.tolist(), same=same)
    ]
    return sorted(runs, key=lambda r: r[3])


def gather(t: torch.Tensor, axis: int, src: torch.Tensor, zeros: bool = True) -> torch.Tensor:
    """``t.index_select(axis, src)`` with zeros for extras (-1), done as a concatenation
    of contiguous runs: copies are long runs, and this is about twice as fast.
    ``zeros=False``: extras left uninitialised, for a caller that fills every one.

    >>> gather(torch.arange(4), 0, torch.tensor([0, 1, 2, 3, 0, 1, -1])).tolist()
    [0, 1, 2, 3, 0, 1, 0]
    """
    pieces = []
    for first, n in _runs(tuple(src.tolist())):
        if first < 0:
            shape = list(t.shape)
            shape[axis] = n
            pieces.append(t.new_zeros(shape) if zeros else t.new_empty(shape))
        else:
            pieces.append(t.narrow(axis, first, n))
    return torch.cat(pieces, dim=axis) if len(pieces) > 1 else pieces[0].clone()


@functools.lru_cache(maxsize=256)
def _runs(src: tuple[int, ...]) -> list[tuple[int, int]]:
    """(source start or -1, length) of maximal runs of consecutive sources (or extras)."""
    return [(first, n) for _, first, n in consecutive_runs(src)]


def copy_ranks(src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each target channel: which copy of its source it is (0, 1, ...) and how many
    copies its source has. Extras (-1) get rank 0, count 1.

    >>> [r.tolist() for r in copy_ranks(torch.tensor([0, 1, 0, -1]))]
    [[0, 0, 1, 0], [2, 1, 2, 1]]
    """
    valid = src >= 0
    n_src = int(src.max()) + 1 if valid.any() else 0
    order = torch.argsort(torch.where(valid, src, n_src), stable=True)
    sorted_src = torch.where(valid, src, n_src)[order]
    starts = torch.searchsorted(sorted_src, sorted_src, right=False)
    rank = torch.empty_like(src)
    rank[order] = torch.arange(len(src)) - starts
    counts = torch.bincount(src[valid], minlength=n_src)
    count = torch.where(valid, counts[src.clamp(min=0)], torch.ones_like(src))
    return torch.where(valid, rank, torch.zeros_like(src)), count


def snap_to_grid(values: torch.Tensor, reference: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Round ``values`` to multiples of the last-bit value (ulp) of ``reference`` in ``dtype``,
    exactly for any |values| < 2^(e+1) of either sign.

    The ulp is 2^e * 2^(1 - p): 2^e the power of two of ``reference`` (at least the
    smallest normal of ``dtype``: subnormals get the dtype's finest grid), p the
    significand bits of ``dtype`` (at most those of the compute dtype, P). With two or more
    spare bits (P - p >= 2: bf16 or float16 in float32, float32 in float64), adding and
    subtracting c = 1.5 * 2^e * 2^(P - p) rounds there (fast). Without them (float64 in
    float64) that trick misses the grid for values below -2^(e-1), and c overflows for
    bfloat16 weights of 2^112 and more: there, ``values / ulp`` (exact, a power of two)
    is rounded half to even and scaled back.

    >>> snap_to_grid(torch.tensor([0.3]), torch.tensor([1.0]), torch.bfloat16).item()
    0.296875
    """
    bits, mask, int_type = _FLOAT_BITS[values.dtype]
    p = min(bits, _significand_bits(dtype))
    power = torch.bitwise_and(reference.view(int_type), mask).view(values.dtype)  # 2^e
    power.clamp_(min=torch.finfo(dtype).smallest_normal)
    if bits - p >= 2:
        scale = 1.5 * 2.0 ** (bits - p)
        top = float(power.max()) if power.numel() else 0.0
        if top * scale <= torch.finfo(values.dtype).max:
            c = power.mul_(scale)
            return values.add(c).sub_(c)
    ulp = power.mul_(2.0 ** (1 - p))
    return values.div(ulp).round_().mul_(ulp)


_FLOAT_BITS = {
    torch.float32: (24, 0x7F800000, torch.int32),
    torch.float64: (53, 0x7FF0000000000000, torch.int64),
}


def _significand_bits(dtype: torch.dtype) -> int:
    """Bits of the significand, the implicit one included (8 for bf16, 24 for float32)."""
    return 1 - round(math.log2(torch.finfo(dtype).eps))


def _along(axis: int, ndim: int, values: torch.Tensor) -> torch.Tensor:
    """``values`` shaped to broadcast along ``axis`` of an ``ndim`` tensor."""
    shape = [1] * ndim
    shape[axis] = -1
    return values.view(shape)


def expand_gamma(
    t: torch.Tensor,
    space: SpaceMap,
    *,
    scale: float,
    extra_zero: bool,
    gen: torch.Generator,
    offset: float = 0.0,
) -> torch.Tensor:
    """Norm scale: ``scale * eta * [g, ..., g, zeta]`` (zeta ~ U(-1, 1), paper C.4).

    ``extra_zero`` sets zeta = 0 (used where the extras must stay constant). ``offset``:
    the norm multiplies by ``offset + weight`` (Gemma: 1 + w); the rule applies to that.
    """
    g = t + offset
    out = expand_out(g, 0, _as_zero_fill(space)) * (space.eta * scale)
    extra = (space.channel_sources() < 0).nonzero().flatten()
    if len(extra) and not extra_zero:
        zeta = torch.rand(len(extra), generator=gen, dtype=t.dtype) * 2 - 1
        out[extra] = zeta * (space.eta * scale)
    return out - offset


def expand_beta(
    t: torch.Tensor, space: SpaceMap, *, scale: float, extra_mean: bool
) -> torch.Tensor:
    """Norm shift: ``scale * [b, ..., b, 0]``; ``extra_mean`` fills extras with mean(b)."""
    fill = "avg" if extra_mean else "zero"
    return expand_out(t, 0, _as_zero_fill(space, fill)) * scale


def _as_zero_fill(space: SpaceMap, fill: str = "zero") -> SpaceMap:
    return SpaceMap(
        space.name, space.src_units, space.tgt_units, space.sources, fill, space.unit_size
    )
