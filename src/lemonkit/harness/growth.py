"""The growth methods an experiment compares, as data: a name -> ``lemonkit.expand`` keywords.

Each row says how the large model starts: the keywords given to ``lemonkit.expand`` (per
task where the paper's choice depends on the model family, appendix C.4), and for
HyperCloning-style runs the Gaussian noise the harness adds after the expansion. A method
is trained with the LEMON recipe under its own name and with the from-scratch schedule as
``{name}-default`` (``runs``). Options that this lemonkit does not have yet (issue 11:
``split``, ``sigma``, ``new_blocks``, ``depth="cancel"``) are refused by ``lemonkit.expand``
when such a run starts, not when the table is read.

Example:
    >>> GROWTHS["lemon-paper"].kwargs("image")
    {'split': 'paper', 'sigma': 0.02, 'depth': 'cancel'}
    >>> GROWTHS["aki"].kwargs("mlm"), GROWTHS["hyperclone"].noise_snr
    ({'method': 'aki', 'depth': 'stack'}, 100.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

import lemonkit
from lemonkit.harness.models import EMBEDDING_NAMES

# appendix C.4: the paper's LEMON, per family (ViT: type-2 depth; LMs: new blocks from the
# next layer); the additive split's sigma 0.02 (ViT) and 0.002 (BERT, and here the LMs)
PAPER_C4 = {
    "image": {"split": "paper", "sigma": 0.02, "depth": "cancel"},
    "causal_lm": {"split": "paper", "sigma": 0.002, "new_blocks": "next"},
    "mlm": {"split": "paper", "sigma": 0.002, "new_blocks": "next"},
}

HYPERCLONE_SNR = 100.0  # signal-to-noise power ratio of the added noise (20 dB)


@dataclass(frozen=True)
class Growth:
    """One growth method: ``expand`` keywords (``per_task`` overrides them for a task),
    ``noise_snr`` (Gaussian noise added after the expansion: lossy), a label and colour."""

    name: str
    label: str
    color: str
    expand: dict = field(default_factory=dict)
    per_task: dict = field(default_factory=dict)
    noise_snr: float | None = None

    def kwargs(self, task: str) -> dict:
        """The ``lemonkit.expand`` keywords of this method for ``task``."""
        return {**self.expand, **self.per_task.get(task, {})}


GROWTHS: dict[str, Growth] = {
    g.name: g
    for g in (
        Growth("lemon", "LEMON (lemonkit's defaults)", "tab:red"),
        Growth(
            "lemon-paper",
            "LEMON as the paper builds it (C.4)",
            "tab:brown",
            per_task=PAPER_C4,
        ),
        Growth("lemon-cancel", "LEMON, type-2 (cancelling) depth", "tab:pink", {"depth": "cancel"}),
        Growth(
            "net2net", "Net2Net / bert2BERT-FPI (equal splits)", "tab:blue", {"method": "net2net"}
        ),
        Growth(
            "aki",
            "bert2BERT-AKI (AKI width, stacked depth)",
            "tab:purple",
            {"method": "aki", "depth": "stack"},
        ),
        Growth("stack", "LEMON width, G_stack / StackBERT depth", "tab:cyan", {"depth": "stack"}),
        Growth(
            "hyperclone",
            f"HyperCloning-style (equal splits + noise, SNR {HYPERCLONE_SNR:g})",
            "tab:gray",
            {"method": "net2net"},
            noise_snr=HYPERCLONE_SNR,
        ),
    )
}


@torch.no_grad()
def add_noise(model: torch.nn.Module, snr: float, seed: int) -> None:
    """HyperCloning-style symmetry breaking, after an equal-split expansion: every matrix
    outside the embeddings gets N(0, var(W) / snr) added (lossy)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() < 2 or any(s in name for s in EMBEDDING_NAMES):
            continue
        noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
        p.add_((noise * (p.float().var() / snr).sqrt()).to(p.dtype))


def tied_count(model: torch.nn.Module) -> int:
    """Rows and columns exactly tied to another one, summed over the model's matrices
    (``lemonkit.tied_units``)."""
    return sum(v["rows"] + v["cols"] for v in lemonkit.tied_units(model).values())
