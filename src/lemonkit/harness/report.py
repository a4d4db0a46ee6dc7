"""Run JSONs -> savings tables, plots and ``RESULTS.md``.

Savings are counted as the paper counts them: the FLOPs an expanded model trains for
until its validation loss reaches the *target* (the from-scratch seeds' mean final
validation loss; two evaluations in a row), against the FLOPs of the from-scratch run
(T steps). The net saving also charges the small model's own training. Validation is measured every
``eval_every`` steps, so "steps to target" has that granularity.

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

from lemonkit.harness.plots import plot
from lemonkit.harness.runs import GROUP_ORDER, OVERVIEW_RUNS, method_of


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
    """Every run record in ``folder`` (``summary.json`` is the report's own output)."""
    files = sorted(f for f in folder.glob("*.json") if f.name != "summary.json")
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
    rows = []
    for name, r in runs.items():
        if name == "small":
            continue
        hit = hit_step(r["history"], target)
        row = {
            "run": name,
            "group": r["run"]["group"],
            "steps": r["history"][-1]["step"],
            "start_val": r["history"][0]["val_loss"],
            "final_val": r["history"][-1]["val_loss"],
            "init_rel_error": r.get("init_rel_error"),
            "hit_step": hit[0] if hit else None,
            "hit_flops": hit[1] if hit else None,
            "saved": 1 - hit[1] / scratch_flops if hit else None,
            "saved_net": 1 - (hit[1] + small_flops) / scratch_flops if hit else None,
            "final_acc": r["history"][-1].get("val_acc"),
        }
        rows.append(row)
    rows.sort(key=lambda row: (GROUP_ORDER.index(row["group"]), row["run"]))
    return {
        "target": target,
        "scratch_flops": scratch_flops,
        "small_flops": small_flops,
        "small_final_val": small["history"][-1]["val_loss"],
        "small_steps": small["history"][-1]["step"],
        "rows": rows,
        "T": scratch[0]["history"][-1]["step"],
        "wall_s": sum(r.get("wall_s", 0.0) for r in runs.values()),
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


def _pct(x: float | None) -> str:
    return "not reached" if x is None else f"{100 * x:.1f}%"


def _spread(values: list[float | None]) -> str:
    """mean +- half range over seeds; 'not reached' when any seed misses; '-' not run."""
    if not values:
        return "-"
    if len(values) == 1:
        return _pct(values[0])
    if any(v is None for v in values):
        reached = sum(v is not None for v in values)
        return f"reached by {reached}/{len(values)} seeds"
    mean = statistics.mean(values)
    half = (max(values) - min(values)) / 2
    return f"{100 * mean:.1f}% ± {100 * half:.1f}"


def headline(summary: dict) -> dict:
    lemon = [r for r in summary["rows"] if r["group"] == "headline"]
    scratch = [r for r in summary["rows"] if r["group"] == "reference"]
    return {
        "saved": _spread([r["saved"] for r in lemon]),
        "saved_net": _spread([r["saved_net"] for r in lemon]),
        "lemon_final": [r["final_val"] for r in lemon],
        "scratch_final": [r["final_val"] for r in scratch],
    }


def saved_by_method(summary: dict) -> dict[str, list[float | None]]:
    """Savings of every run, grouped by method over seeds (``lemon-s0``, ``lemon-s1`` ->
    ``lemon``); the reference and the ablations left out."""
    out: dict[str, list[float | None]] = {}
    for r in summary["rows"]:
        if r["group"] in ("headline", "baseline"):
            out.setdefault(method_of(r["run"]), []).append(r["saved"])
    return out


def _saving_sentence(h: dict, words: str) -> str:
    seeds = len(h["lemon_final"])
    if "%" not in h["saved"]:  # some seed never reached the target
        return f"**LEMON (recipe) did not reach the target** ({h['saved']}). {words}"
    return (
        f"**LEMON saves {h['saved']}** of the training FLOPs (as the paper counts; "
        f"{h['saved_net']} counting the small model's training), over {seeds} seeds "
        f"(mean ± half range). {words}"
    )


def verdict(summary: dict) -> str:
    """Plain words: which baselines did as well as LEMON (mean over seeds), which never
    reached the target."""
    by = saved_by_method(summary)
    lemon = by.pop("lemon", [])
    if not lemon or any(v is None for v in lemon):
        return (
            "Baselines that reached it: "
            + (", ".join(m for m, v in by.items() if None not in v) or "none")
            + "."
        )
    mean = statistics.mean(lemon)
    level = [m for m, v in by.items() if None not in v and statistics.mean(v) >= mean]
    missed = [m for m, v in by.items() if None in v]
    words = [
        f"**LEMON does not win here:** {', '.join(level)} saved as much or more."
        if level
        else "LEMON saved more than every baseline."
    ]
    if missed:
        words.append("Not reaching the target with every seed: " + ", ".join(missed) + ".")
    return " ".join(words)


def table(summary: dict) -> str:
    head = (
        "| run | group | init error (rel) | start val | final val | steps run | "
        "steps to target | FLOPs to target | saved (paper) | saved (net of small) |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
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
            f"{r['final_val']:.4f}{acc} | {r['steps']} | {hit} | {flops} | {saved} | {net} |"
        )
    return "\n".join(lines)


def where_it_ran(record: dict) -> str:
    """``"GPU: NVIDIA H200"``, ``"GPU"`` (older records) or ``"CPU, 2 threads"``."""
    if record.get("device") == "cuda":
        return f"GPU: {record['gpu']}" if record.get("gpu") else "GPU"
    return f"CPU, {record.get('threads', '?')} threads"


def describe_model(spec: dict) -> str:
    """A model spec in words, e.g. ``llama 192 x 4 (6 heads, 2 KV heads, MLP 512)``."""
    extras = [f"{spec['heads']} heads"]
    if "kv_heads" in spec:
        extras.append(f"{spec['kv_heads']} KV heads")
    extras.append(f"MLP {spec.get('intermediate', 4 * spec['hidden'])}")
    if "patch" in spec:
        extras.append(f"patch {spec['patch']}")
    return f"{spec['arch']} {spec['hidden']} x {spec['layers']} ({', '.join(extras)})"


def models_sentence(models: dict) -> str:
    """The small and large model of an experiment in one line.

    Example:
        >>> spec = {"arch": "gpt2", "hidden": 128, "layers": 2, "heads": 4}
        >>> models_sentence({"small": spec, "large": {**spec, "hidden": 192, "layers": 4}})[25:]
        'gpt2 128 x 2 (4 heads, MLP 512) -> gpt2 192 x 4 (4 heads, MLP 768).'
    """
    return (
        f"Models (width x layers): {describe_model(models['small'])} -> "
        f"{describe_model(models['large'])}."
    )


def experiment_section(folder: Path, results_root: Path) -> str | None:
    runs = load_runs(folder)
    summary = summarise(runs)
    if not summary:
        return None
    first = next(iter(runs.values()))
    name, preset = first["experiment"], first["preset"]
    png = folder / "curves.png"
    plot(runs, summary, png, f"{name} ({preset})")
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
            f"of wall time ({where_it_ran(first)}).",
            "",
            _saving_sentence(h, verdict(summary)),
            "",
            table(summary),
            "",
            f"![{name}]({rel_png})",
            "",
        ]
    )


def overview(summaries: list[tuple[str, str, dict]]) -> str:
    """One line per experiment: LEMON's saving (seeds) next to every baseline's."""
    head = (
        "| experiment | preset | target | small model gap | LEMON recipe | LEMON, net of small | "
        + " | ".join(OVERVIEW_RUNS)
        + " | wall time |\n|"
        + "---|" * (7 + len(OVERVIEW_RUNS))
    )
    lines = [head]
    for name, preset, s in summaries:
        h = headline(s)
        cells = [_spread(saved_by_method(s).get(b, [])) for b in OVERVIEW_RUNS]
        lines.append(
            f"| {name} | {preset} | {s['target']:.4f} | {s['small_final_val'] - s['target']:+.3f} "
            f"| {h['saved']} | {h['saved_net']} | "
            + " | ".join(cells)
            + f" | {s['wall_s'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def write_results(root: Path) -> Path:
    """Regenerate ``root/RESULTS.md`` from every experiment folder under ``root``."""
    sections, summaries = [], []
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        section = experiment_section(folder, root)
        if section:
            sections.append(section)
            summary = json.loads((folder / "summary.json").read_text())
            summaries.append((folder.parent.name, folder.name, summary))
    intro = (root / "INTRO.md").read_text() if (root / "INTRO.md").exists() else ""
    table = overview(summaries) if summaries else "(no finished experiment yet)"
    out = root / "RESULTS.md"
    out.write_text(
        "# Results\n\n<!-- generated by `python experiments/run.py --report`; do not edit -->\n\n"
        + intro
        + "\n## Overview: FLOPs saved to reach the from-scratch final validation loss\n\n"
        + table
        + "\n\n"
        + "\n".join(sections)
    )
    return out
