"""Symmetry diagnostic: how many rows and columns of each weight are tied.

Replicated units that stay exactly equal never give the large model more capacity than the
small one (LEMON, section 3 and 4.1). :func:`tied_units` counts, per weight matrix, the
rows and the columns that equal another row or column of the same matrix, exactly and
within a relative tolerance ("near"). Embeddings (and heads tied to them) are left out:
their rows are tokens, not units. Stacked expert tensors ``[E, a, b]`` count each
expert's matrix and, along the expert axis, experts equal to another expert.

Example:
    >>> import torch
    >>> layer = torch.nn.Linear(2, 3, bias=False)
    >>> with torch.no_grad():
    ...     _ = layer.weight.copy_(torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]]))
    >>> tied_units(layer)["weight"]
    {'rows': 2, 'cols': 0, 'near_rows': 2, 'near_cols': 0}
"""

from __future__ import annotations

import torch

NEAR_RTOL = 1e-6  # near-tied: rows closer than this, relative to the matrix's largest entry


def tied_units(model: torch.nn.Module, near_rtol: float = NEAR_RTOL) -> dict[str, dict[str, int]]:
    """Per parameter of two or more dimensions (embeddings aside): ``rows`` and ``cols``,
    how many rows and columns equal another one exactly, and ``near_rows`` /
    ``near_cols``, how many lie within ``near_rtol`` x max|W| of another one (max norm).
    For a 3-D tensor (stacked experts) the counts add up over its matrices, and
    ``experts`` counts matrices equal to another. Only tensors with a tie are listed."""
    skip = _embedding_storages(model)
    found: dict[str, dict[str, int]] = {}
    for name, p in model.named_parameters():
        if p.dim() < 2 or p.untyped_storage().data_ptr() in skip:
            continue
        counts = _tensor_counts(p.detach(), near_rtol)
        if any(counts.values()):
            found[name] = counts
    return found


def total_tied(counts: dict[str, dict[str, int]], key: str = "rows") -> int:
    """Sum of one count (``rows``, ``cols``, ``near_rows`` ...) over all tensors;
    ``key="all"``: rows and columns, exact."""
    keys = ("rows", "cols", "experts") if key == "all" else (key,)
    return sum(c.get(k, 0) for c in counts.values() for k in keys)


def _embedding_storages(model: torch.nn.Module) -> set[int]:
    return {
        m.weight.untyped_storage().data_ptr()
        for m in model.modules()
        if isinstance(m, torch.nn.Embedding)
    }


def _tensor_counts(t: torch.Tensor, near_rtol: float) -> dict[str, int]:
    matrices = [t] if t.dim() == 2 else list(t.reshape(-1, *t.shape[-2:]))
    counts = {"rows": 0, "cols": 0, "near_rows": 0, "near_cols": 0}
    for m in matrices:
        scale = float(m.abs().max()) if m.numel() else 0.0
        for axis, key in ((0, "rows"), (1, "cols")):
            vectors = m if axis == 0 else m.T
            counts[key] += _duplicates(vectors, 0.0)
            counts["near_" + key] += _duplicates(vectors, near_rtol * scale)
    if t.dim() == 3:
        counts["experts"] = _duplicates(t.reshape(t.shape[0], -1), 0.0)
    return counts


def _duplicates(vectors: torch.Tensor, atol: float) -> int:
    """How many of the vectors (rows) equal another within ``atol`` (max norm)."""
    if len(vectors) < 2:
        return 0
    unique, inverse, counts = torch.unique(vectors, dim=0, return_inverse=True, return_counts=True)
    tied = counts > 1  # exact copies (one sort, whatever their number)
    if atol > 0.0 and len(unique) > 1:
        tied |= near_any(unique.double(), atol)
    return int(tied[inverse].sum())


def near_any(v: torch.Tensor, atol: float) -> torch.Tensor:
    """Per row of ``v`` (distinct rows): whether another row lies within ``atol`` (max norm).

    Rows within ``atol`` of each other have projections onto a fixed vector ``r`` within
    ``atol * |r|_1``, so after sorting the rows by that projection only neighbours closer
    than that in projection are compared: O(n log n + candidates) row comparisons, not the
    n x n of a distance matrix (a wide MLP has tens of thousands of rows).

    Example:
        >>> near_any(torch.tensor([[0.0, 1.0], [1e-9, 1.0], [5.0, 5.0]]), 1e-6).tolist()
        [True, True, False]
    """
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(v.shape[1], generator=gen, dtype=v.dtype)
    proj = v @ r
    order = proj.argsort()
    v, proj = v[order], proj[order]
    r1 = float(r.abs().sum())
    # the projections' own rounding (float64) must not hide a near pair: a generous margin
    bound = atol * r1 + 1e-12 * r1 * float(v.abs().max())
    near = torch.zeros(len(v), dtype=torch.bool)
    for k in range(1, len(v)):  # pairs k apart in projection order
        close = ((proj[k:] - proj[:-k]) <= bound).nonzero().flatten()
        if len(close) == 0:  # sorted: pairs further apart are further in projection too
            break
        hit = close[(v[close + k] - v[close]).abs().amax(dim=1) <= atol]
        near[hit] = True
        near[hit + k] = True
    out = torch.empty_like(near)
    out[order] = near
    return out
