"""The README's tied-units table: per family, tied rows and columns right after expansion
and after 60 AdamW steps, lemonkit's default construction against Net2Net.

Run ``python -m lemonkit.testing.tied_table`` (about a minute on one core) and paste the
Markdown it prints into the README.
"""

from __future__ import annotations

import torch

import lemonkit
from lemonkit.testing.untie import train, unexplained_ties
from lemonkit.testing.zoo import BUILDERS, build, mlp_size
from lemonkit.verification.symmetry import tied_units, total_tied

STEPS = 60
NEAR = 1e-6  # after training: rows within 1e-6 x max|W| of another (rounding aside)


def grown(arch: str, **options) -> torch.nn.Module:
    """A divisible expansion (where Net2Net's replicas provably stay identical): width
    and MLP x 2, heads following, one new block."""
    small = build(arch, dtype=torch.float32)
    sizes = dict(hidden_size=128, intermediate_size=2 * mlp_size(small))
    return lemonkit.expand(small, num_layers=3, **sizes, **options)


def row(arch: str) -> list[str]:
    """Tied rows + columns: default at the start (exactly equal), after training; Net2Net
    after training (after training: within ``NEAR``, among units that received a
    gradient)."""
    cells = []
    for method in ("lemon", "net2net"):
        big = grown(arch, method=method)
        start = total_tied(tied_units(big), "all")
        ties = unexplained_ties(big, train(big, steps=STEPS), near_rtol=NEAR)
        after = sum(c["rows"] + c["cols"] for c in ties.values())
        cells += [str(start), str(after)] if method == "lemon" else [str(after)]
    return cells


def table() -> str:
    """The Markdown table, one row per family of the zoo."""
    head = [
        "| family | default: at expansion | default: after 60 steps | Net2Net: after 60 steps |",
        "|---|---|---|---|",
    ]
    return "\n".join(head + [f"| {a} | " + " | ".join(row(a)) + " |" for a in BUILDERS])


if __name__ == "__main__":
    print(table())  # noqa: T201 (a command's output)
