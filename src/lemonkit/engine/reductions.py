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
