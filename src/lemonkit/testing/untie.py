"""Training a few steps and finding the replicated units that stayed tied.

Used by ``tests/test_tied_units.py`` and by ``python -m lemonkit.testing.tied_table``. A
tie is allowed only where the tied rows or columns never received a gradient (a ReLU unit
that never fires, an expert the router never picks): nothing can separate those.

Example:
    >>> import lemonkit
    >>> from lemonkit.testing.zoo import build
    >>> big = lemonkit.expand(build("llama", dtype=torch.float32), hidden_size=128)
    >>> unexplained_ties(big, train(big, steps=2))
    {}
"""

from __future__ import annotations

import torch

from lemonkit.verification.compare import random_inputs
from lemonkit.verification.symmetry import tied_units


def _output(model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    out = model(**inputs)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def train(
    model: torch.nn.Module, steps: int = 60, lr: float = 1e-3, optimizer: str = "adamw"
) -> dict[str, torch.Tensor]:
    """``steps`` optimizer steps on a squared error to random targets over the outputs
    (2 sequences of 8 tokens, or 2 images), in eval mode: dropout would break ties by
    chance. Returns each parameter's summed |gradient|."""
    model.config._experts_implementation = "eager"  # MoE kernels: any dtype, any size
    inputs = random_inputs(model.config, 2, 8, seed=0)
    dtype = next(model.parameters()).dtype
    inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    with torch.no_grad():
        shape = _output(model, inputs).shape
    target = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    opt_cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.SGD
    opt = opt_cls(model.parameters(), lr=lr)
    seen = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for _ in range(steps):
        opt.zero_grad()
        ((_output(model, inputs) - target) ** 2).mean().backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                seen[n].add_(p.grad.abs())
        opt.step()
    return seen


def unexplained_ties(
    model: torch.nn.Module, seen: dict[str, torch.Tensor], near_rtol: float = 0.0
) -> dict[str, dict[str, int]]:
    """The tensors with tied rows or columns that did receive a gradient: per tensor,
    how many such rows and columns (see :func:`train`). ``near_rtol`` > 0: rows within
    ``near_rtol`` x max|W| of another count as tied (float rounding can make replicas
    that get the same gradient in exact arithmetic differ in the last bits)."""
    found = {}
    params = dict(model.named_parameters())
    for name in tied_units(model, near_rtol=near_rtol or 1e-6):
        w, g = params[name].detach(), seen[name]
        mats = zip(w.reshape(-1, *w.shape[-2:]), g.reshape(-1, *g.shape[-2:]), strict=True)
        rows = cols = 0
        for m, gm in mats:
            atol = near_rtol * float(m.abs().max())
            rows += _trained_duplicates(m, gm, atol)
            cols += _trained_duplicates(m.T, gm.T, atol)
        if rows or cols:
            found[name] = {"rows": rows, "cols": cols}
    return found


def _trained_duplicates(vectors: torch.Tensor, grads: torch.Tensor, atol: float) -> int:
    """Rows equal to another row (within ``atol``), among the rows that received a
    gradient."""
    if atol > 0:
        v = vectors.double()
        close = torch.cdist(v, v, p=float("inf")) <= atol
        close.fill_diagonal_(False)
        tied = close.any(dim=1)
    else:
        _, inverse, counts = torch.unique(vectors, dim=0, return_inverse=True, return_counts=True)
        tied = counts[inverse] > 1
    trained = grads.ne(0).any(dim=1)
    return int((tied & trained).sum())
