"""Run JSONs -> savings tables, plots and ``RESULTS.md``.

Savings are counted as the paper counts them: the FLOPs an expanded model trains for
until its validation loss reaches the *target* (the from-scratch seeds' mean final
validation loss; two evaluations in a row), against the FLOPs of the from-scratch run
(T steps). The net saving also charges the small model's own training (each run's own
source). Validation is measured every ``eval_every`` steps, so "steps to target" has that
granularity. Over seeds: mean ± sample sd, and LEMON against each method on the same seeds
(``stats``). The *dip*: the largest validation loss above the source's final loss in the
first ``DIP_WINDOW`` x T steps after growth (at least the first evaluation). Tied units
(``lemonkit.tied_units``, where this lemonkit has it): at the start and at the first
evaluation.

Example:
    >>> hist = [{"step": 10 * i, "val_loss": v, "flops": 5.0 * i}
    ...         for i, v in enumerate([3.0, 1.9, 2.1, 1.95, 1.9])]
    >>> hit_step(hist, target=2.0)  # the dip at step 10 is not confirmed
    (30, 15.0)
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from lemonkit.harness import invocation, stats, timing
from lemonkit.harness.describe import models_sentence, where_it_ran
from lemonkit.harness.plots import plot
from lemonkit.harness.runs import GROUP_ORDER, NOT_RUNS, OVERVIEW_RUNS, method_of

DIP_WINDOW = 0.25  # the dip is looked for in the first quarter of T after growth


def hit_step(history: list[dict], target: float) -> tuple[int, float] | None:
    """(step, cumulative FLOPs) of the first evaluation at or below ``target`` that the
    next evaluation confirms (also at or below); a run's last evaluation needs no
    confirmation. One noisy dip below the target is not a hit."""
    for i, rec in enumerate(history):
        nxt = history[i + 1] if i + 1 < len(history) else None
        if rec["val_loss"] <= target and (nxt is None or nxt["val_loss"] <= target):
            return rec["step"], rec["flops"]
    return None


def load_runs(folder: Path) -> dict[str, dict]:
    """Every run record in ``folder`` (not ``summary.json``, the report's own output, nor
    ``invocation.json``, the preset's wall time)."""
    files = sorted(f for f in folder.glob("*.json") if f.name not in NOT_RUNS)
    return {f.stem: json.loads(f.read_text()) for f in files}


def summarise(runs: dict[str, dict]) -> dict:
    """Target, scratch cost and one row per run (saved fractions, hit step, finals)."""
    # LEMON runs start after every scratch seed: until one exists the target may change
    if "small" not in runs or not any(r["run"]["group"] == "headline" for r in runs.values()):
        return {}
    models = runs["small"].get("key", {}).get("models")  # another preset's files are stale
    scratch = [
        r
        for r in runs.values()
        if r["run"]["group"] == "reference" and r.get("key", {}).get("models") == models
    ]
    target = _recorded_target(runs) or statistics.mean(
        r["history"][-1]["val_loss"] for r in scratch
    )
    scratch_flops = statistics.mean(r["history"][-1]["flops"] for r in scratch)
    small = runs["small"]
    small_flops = small["history"][-1]["flops"]
    T = scratch[0]["history"][-1]["step"]
    rows = [
        _row(name, r, runs, target, scratch_flops, T)
        for name, r in runs.items()
        if r["run"]["group"] != "source"
    ]
    rows.sort(key=lambda row: (GROUP_ORDER.index(row["group"]), row["run"]))
    return {
        "target": target,
        "scratch_flops": scratch_flops,
        "small_flops": small_flops,
        "small_final_val": small["history"][-1]["val_loss"],
        "small_steps": small["history"][-1]["step"],
        "rows": rows,
        "T": T,
        "wall_s": sum(r.get("wall_s", 0.0) for r in runs.values()),
        "paired": paired_comparisons(runs, rows),
        "unigram_nats": scratch[0].get("unigram_nats"),
        "sources": {
            n: {
                "steps": r["history"][-1]["step"],
                "final_val": r["history"][-1]["val_loss"],
                "flops": r["history"][-1]["flops"],
            }
            for n, r in runs.items()
            if r["run"]["group"] == "source"
        },
    }


def _recorded_target(runs: dict[str, dict]) -> float | None:
    """The target the expanded runs trained toward (their recorded ``config.target``):
    the current scratch seeds' mean, whatever stale ``scratch-*.json`` lies beside them."""
    targets = {
        r["config"]["target"]
        for r in runs.values()
        if isinstance(r.get("config"), dict) and r["config"].get("target") is not None
    }
    return targets.pop() if len(targets) == 1 else None


def _row(name: str, r: dict, runs: dict, target: float, scratch_flops: float, T: int) -> dict:
    """One run's line: savings as the paper counts and net of its source, dip, ties."""
    hist = r["history"]
    hit = hit_step(hist, target)
    source = runs.get(r["run"].get("source", "small"), runs["small"])
    source_flops, source_val = source["history"][-1]["flops"], source["history"][-1]["val_loss"]
    dip = None
    if r["run"]["init"] == "expand":
        early = [h for h in hist[1:] if h["step"] <= DIP_WINDOW * T] or hist[1:2]
        dip = max(h["val_loss"] for h in early) - source_val if early else None
    return {
        "run": name,
        "method": method_of(name),
        "seed": r["run"].get("seed", 0),
        "source": r["run"].get("source", "small"),
        "group": r["run"]["group"],
        "steps": hist[-1]["step"],
        "start_val": hist[0]["val_loss"],
        "final_val": hist[-1]["val_loss"],
        "init_rel_error": r.get("init_rel_error"),
        "hit_step": hit[0] if hit else None,
        "hit_flops": hit[1] if hit else None,
        "saved": 1 - hit[1] / scratch_flops if hit else None,
        "saved_net": 1 - (hit[1] + source_flops) / scratch_flops if hit else None,
        "final_acc": hist[-1].get("val_acc"),
        "dip": dip,
        "tied_start": r.get("tied_units_start"),
        "tied_after": next((h["tied_units"] for h in hist if "tied_units" in h), None),
    }


def paired_comparisons(runs: dict[str, dict], rows: list[dict]) -> dict[str, dict]:
    """LEMON (recipe) against every other method, the ablations included (on the seeds
    they share with it), seed by seed."""
    by: dict[str, dict[int, dict]] = {}
    for row in rows:
        if row["group"] in ("headline", "baseline", "ablation"):
            by.setdefault(row["method"], {})[row["seed"]] = {
                "history": runs[row["run"]]["history"],
                "saved": row["saved"],
            }
    lemon = by.pop("lemon", {})
    return {m: stats.paired(lemon, other) for m, other in by.items()} if lemon else {}


def _pct(x: float | None) -> str:
    return "not reached" if x is None else f"{100 * x:.1f}%"


def _num(x: float | int | None, fmt: str = "{:+.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def _rows_of(summary: dict, method: str) -> list[dict]:
    return [r for r in summary["rows"] if r["method"] == method]


def headline(summary: dict) -> dict:
    lemon = [r for r in summary["rows"] if r["group"] == "headline"]
    scratch = [r for r in summary["rows"] if r["group"] == "reference"]
    return {
        "saved": stats.mean_std([r["saved"] for r in lemon], pct=True),
        "saved_net": stats.mean_std([r["saved_net"] for r in lemon], pct=True),
        "lemon_final": [r["final_val"] for r in lemon],
        "scratch_final": [r["final_val"] for r in scratch],
    }


def saved_by_method(summary: dict) -> dict[str, list[float | None]]:
    """Savings of every run, grouped by method over seeds (``lemon-s0``, ``lemon-s1`` ->
    ``lemon``); the reference and the ablations left out."""
    out: dict[str, list[float | None]] = {}
    for r in summary["rows"]:
        if r["group"] in ("headline", "baseline"):
            out.setdefault(r["method"], []).append(r["saved"])
    return out


def _saving_sentence(h: dict, words: str) -> str:
    seeds = len(h["lemon_final"])
    if "%" not in h["saved"]:  # some seed never reached the target
        return f"**LEMON (recipe) did not reach the target** ({h['saved']}). {words}"
    return (
        f"**LEMON saves {h['saved']}** of the training FLOPs as the paper counts "
        f"(**{h['saved_net']} net of the small model's training**), over {seeds} seeds "
        f"(mean ± sd). {words}"
    )


def verdict(summary: dict) -> str:
    """Plain words from the paired comparisons: which methods are ahead of LEMON, which
    behind, which not distinguishable on these seeds, which never reached the target."""
    by = saved_by_method(summary)
    ablations = {r["method"] for r in summary["rows"] if r["group"] == "ablation"}
    paired = summary.get("paired", {})
    groups = stats.by_verdict(paired, set(paired) - ablations)
    words = []
    if groups.get("other ahead"):
        words.append(f"**LEMON loses to {', '.join(groups['other ahead'])}** (paired, > 2 SE).")
    if groups.get("LEMON ahead"):
        words.append(f"LEMON is ahead of {', '.join(groups['LEMON ahead'])} (paired, > 2 SE).")
    if groups.get("no difference"):
        words.append(f"No difference measured against {', '.join(groups['no difference'])}.")
    if groups.get("one seed: no verdict"):
        words.append(f"One seed, no verdict: {', '.join(groups['one seed: no verdict'])}.")
    missed = [m for m, v in by.items() if None in v]
    if missed:
        words.append("Not reaching the target with every seed: " + ", ".join(missed) + ".")
    words += stats.ablation_words(paired, ablations)
    return " ".join(words)


def table(summary: dict) -> str:
    """One line per run."""
    head = (
        "| run | group | init error (rel) | start val | final val | steps run | "
        "steps to target | FLOPs to target | saved (paper) | saved (net of small) | dip | "
        "tied (start → first eval) |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in summary["rows"]:
        err = "-" if r["init_rel_error"] is None else f"{r['init_rel_error']:.1e}"
        hit = "-" if r["hit_step"] is None else str(r["hit_step"])
        flops = "-" if r["hit_flops"] is None else f"{r['hit_flops']:.2e}"
        acc = "" if r["final_acc"] is None else f" (acc {100 * r['final_acc']:.1f}%)"
        saved = "-" if r["group"] == "reference" else _pct(r["saved"])
        net = "-" if r["group"] == "reference" else _pct(r["saved_net"])
        lines.append(
            f"| {r['run']} | {r['group']} | {err} | {r['start_val']:.4f} | "
            f"{r['final_val']:.4f}{acc} | {r['steps']} | {hit} | {flops} | {saved} | {net} | "
            f"{_num(r['dip'])} | {_tied(r)} |"
        )
    return "\n".join(lines)


def _tied(r: dict) -> str:
    if r["tied_start"] is None:
        return "-"
    return f"{r['tied_start']} → {_num(r['tied_after'], '{}')}"


def method_table(summary: dict) -> str:
    """One line per method over its seeds (mean ± sd), LEMON first, with the paired
    comparison against LEMON on the same seeds."""
    head = (
        "| method | seeds | saved (paper) | saved (net of small) | final val | dip | "
        "tied (start → first eval) | val − LEMON's, same step (± SE) | saved: LEMON − it "
        "(± SE) | verdict |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    paired = summary.get("paired", {})
    for method in dict.fromkeys(r["method"] for r in summary["rows"] if r["group"] != "reference"):
        rows = _rows_of(summary, method)
        dips = [r["dip"] for r in rows if r["dip"] is not None]
        tied = [_tied(r) for r in rows if r["tied_start"] is not None]
        p = paired.get(method)
        lines.append(
            f"| {method} | {len(rows)} | {stats.mean_std([r['saved'] for r in rows], True)} | "
            f"{stats.mean_std([r['saved_net'] for r in rows], True)} | "
            f"{stats.mean_std([r['final_val'] for r in rows])} | "
            f"{stats.mean_std(dips, digits=3) if dips else '-'} | {', '.join(tied) or '-'} | "
            + (
                f"{stats.diff_text(p['d_loss'])} | {stats.diff_text(p['d_saved'], True)} | "
                f"{p['verdict']} |"
                if p
                else "- | - | - |"
            )
        )
    return "\n".join(lines)


def experiment_section(folder: Path, results_root: Path) -> str | None:
    runs = load_runs(folder)
    summary = summarise(runs)
    if not summary:
        return None
    first = next(iter(runs.values()))
    name, preset = first["experiment"], first["preset"]
    summary["models"] = first["key"]["models"]
    summary["invocation"] = invocation.load(folder)
    png = folder / "curves.png"
    plot(runs, summary, png, f"{name} ({preset})")
    when = timing.section(summary, folder, results_root, f"{name} ({preset})")
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    h = headline(summary)
    small_gap = summary["small_final_val"] - summary["target"]
    scratch_spread = ", ".join(f"{v:.4f}" for v in h["scratch_final"])
    rel_png = png.relative_to(results_root)
    return "\n".join(
        [
            f"## {name} — preset `{preset}`",
            "",
            models_sentence(first["key"]["models"]),
            "",
            f"Target (mean final validation loss of the from-scratch seeds: {scratch_spread}): "
            f"**{summary['target']:.4f}** after T = {summary['T']} steps. "
            f"The small model ({summary['small_steps']} steps) ends at "
            f"{summary['small_final_val']:.4f}, {small_gap:+.4f} from the target; its training "
            f"costs {100 * summary['small_flops'] / summary['scratch_flops']:.1f}% of the "
            f"scratch run's FLOPs. All {len(runs)} runs took {summary['wall_s'] / 60:.1f} min "
            f"of wall time ({where_it_ran(first)}).{invocation.sentence(folder)}"
            f"{_plateau(summary)}",
            "",
            _saving_sentence(h, verdict(summary)),
            "",
            "By method (mean ± sd over seeds; LEMON against each method on the same seeds: "
            + stats.VERDICT_RULE
            + ")",
            "",
            method_table(summary),
            "",
            *when,
            "Every run:",
            "",
            table(summary),
            "",
            f"![{name}]({rel_png})",
            "",
        ]
    )


def _plateau(summary: dict) -> str:
    """How far below the unigram plateau the target lies (text only)."""
    u = summary.get("unigram_nats")
    if u is None:
        return ""
    return f" Unigram plateau (entropy of the training tokens): {u:.3f}; the target is " + (
        f"{u - summary['target']:.3f} below it." if summary["target"] < u else "**above it**."
    )


def overview(summaries: list[tuple[str, str, dict]]) -> str:
    """One line per experiment: LEMON's saving (mean ± sd), as the paper counts and net of
    the small model, next to every method's that any experiment ran."""
    ran = set().union(*(saved_by_method(s) for _, _, s in summaries))
    columns = [b for b in OVERVIEW_RUNS if b in ran]
    head = (
        "| experiment | preset | target | small model gap | LEMON recipe | LEMON, net of small | "
        + " | ".join(columns)
        + " | wall time (sum of runs) |\n|"
        + "---|" * (7 + len(columns))
    )
    lines = [head]
    for name, preset, s in summaries:
        h = headline(s)
        cells = [stats.mean_std(saved_by_method(s).get(b, []), pct=True) for b in columns]
        lines.append(
            f"| {name} | {preset} | {s['target']:.4f} | {s['small_final_val'] - s['target']:+.3f} "
            f"| {h['saved']} | **{h['saved_net']}** | "
            + " | ".join(cells)
            + f" | {s['wall_s'] / 60:.1f} min{invocation.overview_cell(s)} |"
        )
    return "\n".join(lines)


def write_results(root: Path) -> Path:
    """Regenerate ``root/RESULTS.md`` from every experiment folder under ``root``."""
    sections, summaries = [], []
    # experiment/preset folders; not a hidden one (.cache/tokenizers: prepared data)
    folders = [p for p in root.glob("*/*") if p.is_dir() and not p.parent.name.startswith(".")]
    for folder in sorted(folders):
        section = experiment_section(folder, root)
        if section:
            sections.append(section)
            summary = json.loads((folder / "summary.json").read_text())
            summaries.append((folder.parent.name, folder.name, summary))
    intro = (root / "INTRO.md").read_text() if (root / "INTRO.md").exists() else ""
    table = overview(summaries) if summaries else "(no finished experiment yet)"
    factors = timing.factor_table(summaries)
    out = root / "RESULTS.md"
    out.write_text(
        "# Results\n\n<!-- generated by `python experiments/run.py --report`; do not edit -->\n\n"
        + intro
        + "\n## Overview: FLOPs saved to reach the from-scratch final validation loss\n\n"
        + table
        + "\n\n"
        + (f"## Growth factor: LEMON by preset\n\n{factors}\n\n" if factors else "")
        + "\n".join(sections)
    )
    return out
