"""When to grow: LEMON's saving against the small model's training, and against the growth
factor, as tables (and a plot) for RESULTS.md.

A preset's timing runs (``runs``: ``lemon-x{f}-s{k}`` grown from ``small-x{f}``, trained
f x ``small_steps``; ``lemon-annealed-s{k}`` from a small model whose LR was decayed) sit
next to its headline LEMON runs (``small``, 1 x). The growth factor compares the presets
of one experiment that share the small model (width 1.5x vs 2x, depth 2x vs 4x).

Example:
    >>> timing_tag("lemon-x0.25"), timing_tag("lemon"), timing_tag("lemon-annealed")
    ('x0.25', 'x1', 'annealed')
"""

from __future__ import annotations

from pathlib import Path

from lemonkit.harness import stats


def timing_tag(method: str) -> str | None:
    """``x{f}`` / ``annealed`` for LEMON grown from a sweep source, ``x1`` for LEMON."""
    if method == "lemon":
        return "x1"
    tag = method.removeprefix("lemon-")
    return tag if tag != method and (tag == "annealed" or tag.startswith("x")) else None


def timing_rows(summary: dict) -> list[dict]:
    """One line per source of the sweep: its training, and LEMON's savings from it."""
    by: dict[str, list[dict]] = {}
    for r in summary["rows"]:
        tag = timing_tag(r["method"]) if r["group"] in ("headline", "timing") else None
        if tag is not None:
            by.setdefault(tag, []).append(r)
    out = []
    for tag, rows in by.items():
        source = summary["sources"].get(rows[0]["source"], {})
        dips = [r["dip"] for r in rows if r["dip"] is not None]
        out.append(
            {
                "tag": tag,
                "source_steps": source.get("steps"),
                "source_val": source.get("final_val"),
                "source_cost": source.get("flops", 0.0) / summary["scratch_flops"],
                "saved": [r["saved"] for r in rows],
                "saved_net": [r["saved_net"] for r in rows],
                "dip": dips,
            }
        )
    out.sort(key=lambda row: (row["tag"] == "annealed", row["source_steps"] or 0))
    return out


def timing_table(rows: list[dict]) -> str:
    head = (
        "| small model | its steps | its final val | its cost (of scratch) | seeds | "
        "LEMON saved (paper) | LEMON saved (net of small) | dip |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        val = "-" if r["source_val"] is None else f"{r['source_val']:.4f}"
        lines.append(
            f"| {r['tag']} | {r['source_steps']} | {val} | {100 * r['source_cost']:.1f}% | "
            f"{len(r['saved'])} | {stats.mean_std(r['saved'], pct=True)} | "
            f"{stats.mean_std(r['saved_net'], pct=True)} | "
            f"{stats.mean_std(r['dip'], digits=3) if r['dip'] else '-'} |"
        )
    return "\n".join(lines)


def plot_timing(rows: list[dict], path: Path, title: str) -> None:
    """Saved (paper and net) against the small model's steps; the annealed source apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, color in (
        ("saved", "as the paper counts", "tab:red"),
        ("saved_net", "net of the small model", "tab:blue"),
    ):
        for annealed in (False, True):
            pts = [r for r in rows if (r["tag"] == "annealed") == annealed]
            pts = [r for r in pts if None not in r[key] and r[key]]
            if not pts:
                continue
            xs = [r["source_steps"] for r in pts]
            ms = [100 * stats.mean_sd(r[key])[0] for r in pts]
            sds = [100 * stats.mean_sd(r[key])[1] for r in pts]
            ax.errorbar(
                xs,
                ms,
                yerr=sds,
                color=color,
                capsize=3,
                fmt="s" if annealed else "o-",
                label=f"{label}" + (" (annealed small model)" if annealed else ""),
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("small model's training steps before growth")
    ax.set_ylabel("FLOPs saved (%)")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_title(f"{title}: when to grow", fontsize=9)
    if ax.get_legend_handles_labels()[0]:  # nothing to draw where no source reached it
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(summary: dict, folder: Path, root: Path, title: str) -> list[str]:
    """The when-to-grow table and plot of a preset, or nothing without timing runs."""
    rows = timing_rows(summary)
    if len(rows) < 2:
        return []
    png = folder / "when_to_grow.png"
    plot_timing(rows, png, title)
    return [
        "When to grow (LEMON recipe, grown from the small model after each length of "
        "training; `annealed`: its LR decayed to the floor instead of held constant):",
        "",
        timing_table(rows),
        "",
        f"![when to grow]({png.relative_to(root)})",
        "",
    ]


def factor_table(summaries: list[tuple[str, str, dict]]) -> str:
    """LEMON's saving by growth factor, over the presets of an experiment that grow the
    same small model by different factors, one row per growth (the ``small`` preset's
    where several presets grow alike, as an ablation preset does); empty when there is
    none.

    Example (two presets from one 128 x 2 model, 1.5x and 2x wide):
        >>> run = {"group": "headline", "saved": 0.6, "saved_net": 0.5}
        >>> def preset(hidden):
        ...     models = {"small": {"hidden": 128, "layers": 2},
        ...               "large": {"hidden": hidden, "layers": 4}}
        ...     return {"models": models, "rows": [run, run, run]}
        >>> table = factor_table([("lm", "when", preset(192)), ("lm", "w2x", preset(256))])
        >>> print(table.splitlines()[-1])
        | lm | w2x | 128 x 2 -> 256 x 4 | 2x | 2x | 3 | 60.0% ± 0.0 | 50.0% ± 0.0 |
    """
    lines = []
    for name in dict.fromkeys(n for n, _, _ in summaries):
        mine = [(p, s) for n, p, s in summaries if n == name and "models" in s]
        for small in dict.fromkeys(repr(s["models"]["small"]) for _, s in mine):
            same = [(p, s) for p, s in mine if repr(s["models"]["small"]) == small]
            if len({_factors(s["models"]) for _, s in same}) < 2:
                continue
            one: dict[str, tuple[str, dict]] = {}  # one row per growth, `small` first
            for preset, s in sorted(same, key=lambda ps: ps[0] != "small"):
                one.setdefault(repr(s["models"]), (preset, s))
            lines += [_factor_row(name, preset, s) for preset, s in one.values()]
    if not lines:
        return ""
    head = (
        "| experiment | preset | models (width x layers) | width | depth | seeds | "
        "LEMON saved (paper) | LEMON saved (net of small) |\n|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *lines])


def _factors(models: dict) -> tuple[float, float]:
    a, b = models["small"], models["large"]
    return b["hidden"] / a["hidden"], b["layers"] / a["layers"]


def _factor_row(name: str, preset: str, summary: dict) -> str:
    a, b = summary["models"]["small"], summary["models"]["large"]
    width, depth = _factors(summary["models"])
    lemon = [r for r in summary["rows"] if r["group"] == "headline"]
    return (
        f"| {name} | {preset} | {a['hidden']} x {a['layers']} -> {b['hidden']} x "
        f"{b['layers']} | {width:g}x | {depth:g}x | {len(lemon)} | "
        f"{stats.mean_std([r['saved'] for r in lemon], pct=True)} | "
        f"{stats.mean_std([r['saved_net'] for r in lemon], pct=True)} |"
    )
