"""``make demo`` (``python examples/demo.py``): train a small LM on real text, expand it,
prove it lossless, train on. A script that uses lemonkit (``expand``, ``verify``) and its
experiment harness (``lemonkit.harness``: data, training runs, savings report, plot).

1. Train a small LLaMA-style byte-level LM on the Python docs (Debian python3.11-doc);
   cached under ``demo_out/`` after the first run.
2. Expand it with LEMON 128x2 -> 192x4 (an indivisible width) and verify in float64 and
   float32 that the large model computes the same function.
3. Train the large model side by side: from scratch for T steps, and from the expansion
   with the LEMON recipe (same peak LR, decay over T/2). Print the compute saved and save
   the plot (``demo_out/training/demo/demo/curves.png``).
4. Print the lossless error table of every architecture x every kind of expansion.

Everything is built from configs on the spot; nothing is downloaded. ``demo_out/`` sits
next to ``examples/`` (the repository root), wherever the script is run from; ``--out``
puts it elsewhere.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

import lemonkit
from lemonkit.harness import report
from lemonkit.harness.experiment import Experiment, load_data, load_small_model, run_one
from lemonkit.harness.models import expand_kwargs
from lemonkit.harness.plots import plot
from lemonkit.harness.runs import run_specs
from lemonkit.testing.error_table import measure, staged_markdown, to_markdown

OUT = Path(__file__).resolve().parents[1] / "demo_out"
# the Python docs' reST sources as bytes, as in experiments/configs/lm_llama.toml
DOCS = {
    "kind": "text_files",
    "root": "/usr/share/doc/python3.11/html/_sources",
    "glob": "**/*.txt",
    "val_every": 20,
    "env": "LEMONKIT_DOCS",
    "package": "python3.11-doc",
}
DEMO = {
    "small": {
        "arch": "llama",
        "hidden": 128,
        "layers": 2,
        "heads": 4,
        "kv_heads": 2,
        "intermediate": 344,
    },
    "large": {
        "arch": "llama",
        "hidden": 192,
        "layers": 4,
        "heads": 6,
        "kv_heads": 3,
        "intermediate": 512,
    },
    "seq_len": 64,
    "batch_size": 16,
    "lr": 4e-3,
    "warmup": 50,
    "min_lr_ratio": 0.1,
    "small_steps": 400,
    "small_min_lr_ratio": 1.0,
    "steps": 800,
    "lemon_ratio": 0.5,
    "eval_every": 25,
    "eval_batches": 10,
    "seeds": [0],
    "ckpt_every": 200,
}
# What the demo grows with, and why (experiments/results/RESULTS.md, lm_llama small and
# ablate, 96 -> 144, paired over the same seeds): no lossless construction saved more
# FLOPs than lemonkit's defaults beyond the seed spread on any experiment (within 2.2
# points everywhere; the paper's C.4 split ended 0.004 nats lower on LLaMA, level or behind
# elsewhere; AKI and stacking, lossy, ended lower and saved 2 points more on LLaMA). The
# decay: 0.3 T reached the target soonest on lm_llama (T = 600; 72% saved against 64% at
# 0.5 T), but on this demo's run (T = 800) it reached it at step 350 against 325 at 0.5 T
# (`python examples/demo.py --decay 0.3`): too short a decay ends above the target and
# crawls at the floor LR. The demo keeps the paper's 0.5 T.
CONSTRUCTION = (
    "lemonkit's defaults (multiplicative unequal splits, zero-output new blocks) with the "
    "LEMON recipe (decay over T/2): no lossless construction measured saved more beyond "
    "the seed spread, and the shorter decay that did on lm_llama lost on this demo's run "
    "(experiments/results/RESULTS.md)"
)
QUICK = {
    **DEMO,
    "small": {**DEMO["small"], "hidden": 32, "intermediate": 64},
    "large": {**DEMO["large"], "hidden": 48, "intermediate": 96},
    "small_steps": 6,
    "steps": 8,
    "warmup": 2,
    "eval_every": 2,
    "eval_batches": 2,
    "batch_size": 4,
    "seq_len": 16,
}


def _say(quiet: bool, *lines: str) -> None:
    if not quiet:
        print(*lines, sep="\n", flush=True)


def train_and_compare(out: Path, preset: dict, quiet: bool = False, name: str = "demo") -> dict:
    """Steps 1-3; returns the savings summary (``report.summarise``). ``name`` keeps the
    cache of each preset apart."""
    exp = Experiment(
        "demo",
        "LLaMA-style byte LM on the Python docs",
        "causal_lm",
        name,
        preset,
        out / "training" / "demo" / name,
        DOCS,
    )
    data = load_data(exp)
    specs = {s.name: s for s in run_specs(exp.p)}
    cached = (exp.out / "small.json").exists() and (exp.out / "small.safetensors").exists()
    _say(
        quiet,
        f"1. small model {_size(preset['small'])}, {preset['small_steps']} steps"
        + (" (cached; delete demo_out/ to retrain)" if cached else ""),
    )
    small_run = run_one(exp, specs["small"], data, progress=not quiet)
    _say(
        quiet,
        f"   validation loss {small_run['history'][-1]['val_loss']:.4f} (bytes, nats per byte)\n",
    )
    small = load_small_model(exp)
    big = lemonkit.expand(small, **expand_kwargs(preset["large"]), seed=0)
    _say(
        quiet,
        f"2. LEMON expansion {_size(preset['small'])} -> {_size(preset['large'])}",
        f"   construction: {CONSTRUCTION}",
        f"   {lemonkit.verify(small, big)}\n",
    )
    _say(
        quiet,
        f"3. large model: from scratch ({preset['steps']} steps) and from the "
        f"expansion, LEMON recipe (decay over {preset['lemon_ratio']:g} T: "
        f"{round(preset['steps'] * preset['lemon_ratio'])} steps)",
    )
    for run_name in ("scratch-s0", "lemon-s0"):
        run = run_one(exp, specs[run_name], data, progress=not quiet, force=True)
        _say(
            quiet,
            f"   {run_name}: final validation loss {run['history'][-1]['val_loss']:.4f} "
            f"({run['wall_s']:.0f} s)",
        )
    runs = report.load_runs(exp.out)
    runs = {k: v for k, v in runs.items() if k in ("small", "scratch-s0", "lemon-s0")}
    summary = report.summarise(runs)
    png = exp.out / "curves.png"
    plot(runs, summary, png, "demo")
    lemon = next(r for r in summary["rows"] if r["run"] == "lemon-s0")
    _say(
        quiet,
        "",
        report.table(summary),
        "",
        f"   LEMON reached the from-scratch final loss {summary['target']:.4f} "
        + (
            f"at step {lemon['hit_step']}: {100 * lemon['saved']:.0f}% of the training "
            f"FLOPs saved ({100 * lemon['saved_net']:.0f}% counting the small model)"
            if lemon["hit_step"] is not None
            else "only partly: not reached in this run"
        ),
        f"   plot: {png}\n",
    )
    return summary


def _size(spec: dict) -> str:
    return f"{spec['hidden']}x{spec['layers']}"


def demo(out: Path, quick: bool = False, quiet: bool = False, decay: float | None = None) -> None:
    """Steps 1-4 (``quick``: tiny sizes and steps 1-3 only), results under ``out``;
    ``decay``: the LEMON run's decay length as a fraction of T (default 0.5)."""
    hf_logging.set_verbosity_error()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    _say(quiet, f"lemonkit {lemonkit.__version__}: expand a trained model, train on\n")
    preset = QUICK if quick else DEMO
    if decay is not None:
        preset = {**preset, "lemon_ratio": decay}
    train_and_compare(out, preset, quiet, name="quick" if quick else "demo")
    if not quick:
        _say(
            quiet,
            "4. every architecture x every expansion (float64 rel error / float32 rel error):",
        )
        table = to_markdown(measure()) + "\n\n" + staged_markdown()
        _say(quiet, table)
        (out / "error_table.md").write_text(table + "\n")
    _say(quiet, f"\ndone in {time.perf_counter() - start:.0f} s; results in {out}/")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction of T in (0, 1]")
    return value


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="lemonkit demo: train small, expand, train on")
    ap.add_argument("--out", type=Path, default=OUT, help=f"results and cache (default: {OUT})")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a few steps (tests)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument(
        "--decay",
        type=_fraction,
        help="the LEMON run decays over this fraction of T (default 0.5, the paper's)",
    )
    args = ap.parse_args(argv)
    try:
        demo(args.out, args.quick, args.quiet, args.decay)
    except lemonkit.LemonkitError as e:  # e.g. the Python docs are not installed
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
