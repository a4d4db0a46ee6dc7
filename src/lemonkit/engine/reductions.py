"""Reductions whose result does not depend on the thread count.

``torch.sum``, ``mean`` and ``std`` split a long reduction over threads, so their last
bits change with ``OMP_NUM_THREADS``, and with them every random number scaled by a
standard deviation. These run the reduction as a cumulative sum along the reduced axis,
which torch computes in order (threads only split the other axes), in float64.

Example:
    >>> import torch
    >>> fixed_mean(torch.tensor([[1.0, 2.0], [3.0, 5.0]]), 0).tolist()
    [[2.0, 3.5]]
"""

from __future__ import annotations

import math

import torch

SAMPLE = 1 << 16  # elements :func:`sampled_std` reads at most


def fixed_sum(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum along ``dim`` (kept, size 1), in float64 and in index order."""
    if t.shape[dim] == 0:
        shape = list(t.shape)
        shape[dim] = 1
        return t.new_zeros(shape, dtype=torch.float64)
    return t.double().cumsum(dim).narrow(dim, t.shape[dim] - 1, 1)


def fixed_mean(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean along ``dim`` (kept), computed in float64 in index order, in ``t``'s dtype."""
    return (fixed_sum(t, dim) / max(1, t.shape[dim])).to(t.dtype)


def fixed_std(t: torch.Tensor) -> float:
    """The sample standard deviation of all elements (0.0 for fewer than two)."""
    n = t.numel()
    if n < 2:
        return 0.0
    # fixed_sum's arithmetic, in two float64 buffers (fresh 16 MB ones page-fault: 4x)
    flat = t.reshape(-1).to(torch.float64, copy=True)
    buf = torch.empty_like(flat)
    mean = float(torch.cumsum(flat, 0, out=buf)[-1]) / n
    torch.sub(flat, mean, out=buf).mul_(buf)  # (x - mean) ** 2
    return math.sqrt(float(torch.cumsum(buf, 0, out=flat)[-1]) / (n - 1))


def sampled_std(t: torch.Tensor, limit: int = SAMPLE) -> float:
    """:func:`fixed_std` of at most ``limit`` elements of ``t``: all of them when there
    are few, else every ``s``-th element in row-major order from the first, ``s`` the
    smallest stride >= numel / limit that is coprime to the last dimension (so the sample
    meets every column, and every row band). It depends on ``t``'s values and shape
    only, not on the thread count, and reads ~``limit`` elements whatever the size: a
    scale for random numbers that multiply zeros, not a statistic to report.

    >>> t = torch.arange(12.0).reshape(3, 4)
    >>> sampled_std(t) == fixed_std(t), sampled_std(t, limit=4) == fixed_std(t.flatten()[::3])
    (True, True)
    """
    n = t.numel()
    if n <= limit:
        return fixed_std(t)
    last = t.shape[-1] if t.dim() else 1
    stride = -(-n // limit)
    while math.gcd(stride, last) != 1:
        stride += 1
    if t.is_contiguous():  # a strided view: no index tensor, no gather kernel (3x faster)
        return fixed_std(t.reshape(-1)[::stride])
    return fixed_std(torch.take(t, torch.arange(0, n, stride)))
