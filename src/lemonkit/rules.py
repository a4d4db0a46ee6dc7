"""The paper's algebra on one axis of one tensor (LEMON, appendix B and C).

Every function takes a float64 tensor, the axis, and a :class:`~lemonkit.spaces.SpaceMap`,
and returns the tensor grown along that axis:

- :func:`expand_out` (producer axis): copies; extra stream units are the average of the
  source units (LayerNorm stream, B.4.1 row-average) or zero (RMSNorm stream, B.4.2).
- :func:`expand_in` (consumer axis): the copies of a source unit get weights that sum to
  the original (B.4.4 column-random); unequal per element with ``method="lemon"``
  (symmetry breaking, paper 4.1), equal ``1/n`` with ``method="net2net"``. Extra units
  get free random weights: they only ever multiply zeros.
- :func:`expand_gamma` / :func:`expand_beta`: a norm over the stream (C.1 with the
  corrected eta = sqrt(k*Ds/Dt), NOTES.md section 1).

Example:
    >>> import torch
    >>> from lemonkit.spaces import stream_map
    >>> w = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    >>> expand_out(w, 1, stream_map(2, 3, fill="avg")).tolist()
    [[1.0, 3.0, 2.0]]
"""

from __future__ import annotations

import math

import torch

from lemonkit.spaces import SpaceMap

METHODS = ("lemon", "net2net")


def expand_out(t: torch.Tensor, axis: int, space: SpaceMap) -> torch.Tensor:
    """Grow a producer axis: gather copies, fill extra units per ``space.fill``."""
    src = space.channel_sources()
    out = t.index_select(axis, src.clamp(min=0))
    extra = (src < 0).nonzero().flatten()
    if len(extra):
        if space.fill == "avg":
            fill = t.mean(dim=axis, keepdim=True)
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
    method: str,
    gen: torch.Generator,
    storage: torch.dtype | None = None,
) -> torch.Tensor:
    """Grow a consumer axis: split each source column over its copies, random extras.

    With ``lemon`` the copies of a column sum to it exactly once stored in ``storage``
    (default: the dtype of ``t``): every copy but the last is rounded to the grid of the
    source element's last bit in that dtype, and the last copy is the remainder, which
    then lies on the same grid and needs no rounding. So a zero- or copy-expanded input
    gives the same output, even in bfloat16. ``net2net`` copies are all W/n, identical.
    """
    src = space.channel_sources()
    valid = (src >= 0).nonzero().flatten()
    extra = (src < 0).nonzero().flatten()
    last = _last_copy(src, t.shape[axis])
    copies = t.index_select(axis, src.clamp(min=0))
    share = _split_shares(copies.shape, axis, src, method, gen, t.dtype)
    if method == "net2net":  # identical copies W/n (exact sums when n is a power of 2)
        out = copies * share
    else:
        out = snap_to_grid(copies * share, copies, storage or t.dtype)
        out.index_fill_(axis, last, 0.0)
        others = torch.zeros_like(t).index_add_(axis, src[valid], out.index_select(axis, valid))
        out.index_copy_(axis, last, t - others)
    if len(extra):
        shape = list(out.shape)
        shape[axis] = len(extra)
        scale = float(t.std()) if t.numel() > 1 and float(t.std()) > 0 else 0.02
        free = torch.randn(shape, generator=gen, dtype=t.dtype) * scale
        out.index_copy_(axis, extra, free)
    return out


def snap_to_grid(values: torch.Tensor, reference: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Round ``values`` to multiples of the last-bit value (ulp) of ``reference`` in ``dtype``.

    >>> snap_to_grid(torch.tensor([0.3]), torch.tensor([1.0]), torch.bfloat16).item()
    0.296875
    """
    bits = 1 - round(math.log2(torch.finfo(dtype).eps))  # significand bits, e.g. 8 for bf16
    _, exponent = torch.frexp(reference)
    ulp = torch.ldexp(torch.ones_like(reference), exponent - bits)
    return torch.round(values / ulp) * ulp


def expand_gamma(
    t: torch.Tensor, space: SpaceMap, *, scale: float, extra_zero: bool, gen: torch.Generator
) -> torch.Tensor:
    """Norm scale: ``scale * eta * [g, ..., g, zeta]`` (zeta ~ U(-1, 1), paper C.4).

    ``extra_zero`` sets zeta = 0 (used where the extras must stay constant).
    """
    out = expand_out(t, 0, _as_zero_fill(space)) * (space.eta * scale)
    extra = (space.channel_sources() < 0).nonzero().flatten()
    if len(extra) and not extra_zero:
        zeta = torch.rand(len(extra), generator=gen, dtype=t.dtype) * 2 - 1
        out[extra] = zeta * (space.eta * scale)
    return out


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


def _split_shares(
    shape: torch.Size,
    axis: int,
    src: torch.Tensor,
    method: str,
    gen: torch.Generator,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Per-element fractions that sum to 1 over the copies of each source channel."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    n_src = int(src.max()) + 1 if (src >= 0).any() else 0
    idx = src.clamp(min=0)
    if method == "net2net":
        counts = torch.bincount(src[src >= 0], minlength=n_src).to(dtype)
        share = (1.0 / counts)[idx]
        view = [1] * len(shape)
        view[axis] = -1
        return share.view(view).expand(shape)
    # LEMON: random positive weights, normalised within each copy group
    weights = torch.rand(shape, generator=gen, dtype=dtype) + 0.5
    weights.index_fill_(axis, (src < 0).nonzero().flatten(), 0.0)  # extras copy nothing
    sums_shape = list(shape)
    sums_shape[axis] = n_src
    sums = torch.zeros(sums_shape, dtype=dtype).index_add_(axis, idx, weights)
    return weights / sums.index_select(axis, idx).clamp(min=1e-300)


def _last_copy(src: torch.Tensor, n_src: int) -> torch.Tensor:
    """For each source channel, the index of its last copy in the target."""
    last = torch.full((n_src,), -1, dtype=torch.long)
    for j, s in enumerate(src.tolist()):
        if s >= 0:
            last[s] = j
    return last
