"""Validation-loss curves of an experiment's runs, as the paper's figures 6-8 draw them.

Runs are named ``{method}-s{seed}`` (seeds share a colour) or after an ablation (each its
own colour); names, labels and colours come from ``runs``. The x axis is training FLOPs
as a fraction of the from-scratch run's. matplotlib is imported inside ``plot`` only.

Example:
    >>> runs = {"lemon-s0": {"run": {"group": "headline"}},
    ...         "lemon-lr0.2": {"run": {"group": "ablation"}}}
    >>> _color("lemon-s0", runs), _color("lemon-lr0.2", runs)
    ('tab:red', 'tab:blue')
"""

from __future__ import annotations

from pathlib import Path

from lemonkit.harness.runs import (
    ABLATION_COLORS,
    COLORS,
    DEFAULT_SCHEDULE_BASELINES,
    label_of,
    method_of,
)


def _color(name: str, runs: dict[str, dict]) -> str | None:
    """One colour per method (seeds share it); each ablation its own, never LEMON's."""
    if runs[name]["run"]["group"] != "ablation":
        return COLORS.get(method_of(name))
    ablations = sorted(n for n, r in runs.items() if r["run"]["group"] == "ablation")
    return ABLATION_COLORS[ablations.index(name) % len(ABLATION_COLORS)]


def _zoom(runs: dict[str, dict], target: float) -> tuple[float, float]:
    """Y range from the lowest loss to a little above where the small model starts the
    expanded runs (from-scratch curves enter from above)."""
    ys = [h["val_loss"] for r in runs.values() for h in r["history"]]
    start = max(
        [target]
        + [r["history"][0]["val_loss"] for r in runs.values() if r["run"]["init"] == "expand"]
    )
    top = start + 0.6 * (start - target) + 0.02
    bottom = min(ys)
    return bottom - 0.1 * (top - bottom), top


def plot(runs: dict[str, dict], summary: dict, path: Path, title: str) -> None:
    """Validation loss against training FLOPs (as a fraction of scratch): the main
    comparison on the left, the LEMON recipe ablations on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {"main": ("reference", "headline", "baseline")}
    if any(r["run"]["group"] == "ablation" for r in runs.values()):
        groups["ablation"] = ("headline", "ablation")
    fig, axes = plt.subplots(1, len(groups), figsize=(6.8 * len(groups), 5), sharey=True)
    axes = list(axes) if len(groups) > 1 else [axes]
    for ax, (panel, wanted) in zip(axes, groups.items(), strict=True):
        for name, r in runs.items():
            if name == "small" or r["run"]["group"] not in wanted:
                continue
            xs = [h["flops"] / summary["scratch_flops"] for h in r["history"]]
            ys = [h["val_loss"] for h in r["history"]]
            style = "--" if r["run"]["group"] == "reference" else "-"
            if method_of(name) in DEFAULT_SCHEDULE_BASELINES:
                style = "-."
            ax.plot(xs, ys, style, label=label_of(name), lw=1.4, color=_color(name, runs))
        ax.axhline(summary["target"], color="k", lw=0.8, ls=":", label="target (scratch final)")
        ax.set_xlabel("training FLOPs / from-scratch FLOPs")
        ax.set_title(
            f"{title}: {'comparison' if panel == 'main' else 'LEMON recipe ablations'}", fontsize=9
        )
        ax.set_ylim(*_zoom(runs, summary["target"]))
        ax.legend(fontsize=6.5, loc="upper right", framealpha=0.8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
