"""The command line of the harness: ``python experiments/run.py CONFIG... [options]``.

``main`` runs each config's preset, then regenerates ``RESULTS.md`` in the results folder;
a ``LemonkitError`` (a bad config, missing data, a run whose prerequisites are missing)
ends it with one line ``error: ...`` on stderr and exit status 2.

Example:
    >>> args = parser(default_out=Path("results")).parse_args(["a.toml", "--preset", "large"])
    >>> args.config, args.preset, args.out
    (['a.toml'], 'large', PosixPath('results'))
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from lemonkit import LemonkitError
from lemonkit.harness import loop
from lemonkit.harness.errors import HarnessError
from lemonkit.harness.experiment import load_experiment, prune, run_experiment
from lemonkit.harness.report import write_results


def parser(default_out: Path | None = None) -> argparse.ArgumentParser:
    """The options; ``--out`` is required unless the caller gives its default."""
    ap = argparse.ArgumentParser(description="Run lemonkit experiments (config files).")
    ap.add_argument("config", nargs="*", help="experiments/configs/*.toml")
    ap.add_argument("--report", action="store_true", help="only regenerate RESULTS.md")
    ap.add_argument("--preset", default="small", help="small (CPU) or large (GPU)")
    ap.add_argument("--only", nargs="*", help="run names to run (default: all)")
    ap.add_argument(
        "--out",
        type=Path,
        default=default_out,
        required=default_out is None,
        help=f"results folder (default: {default_out})",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--force", action="store_true", help="re-run finished runs")
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at a time, each in its own process of --threads threads (default 1; "
        "0: one per core, one thread each)",
    )
    ap.add_argument(
        "--prune",
        action="store_true",
        help="delete the results of runs the configs' presets no longer list (then run)",
    )
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    return ap


def main(argv: list[str] | None = None, default_out: Path | None = None) -> int:
    """Parse ``argv``, run; returns the exit status (a ``LemonkitError`` is one line on
    stderr and status 2)."""
    ap = parser(default_out)
    args = ap.parse_args(argv)
    if not args.config and not args.report:
        ap.error("give config files, or --report")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        run(args)
    except LemonkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def run(args: argparse.Namespace) -> None:
    """Train every config's preset (skipping finished runs), then write RESULTS.md."""
    rank, size = loop.world()
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 matmuls on a GPU
    if args.jobs < 0:
        raise HarnessError(f"--jobs must be 0 (one per core) or more, got {args.jobs}")
    if args.jobs != 1 and size > 1:
        raise HarnessError("--jobs runs several runs at once; under torchrun, leave it at 1")
    jobs = args.jobs or os.cpu_count() or 1
    if args.threads or size > 1:
        torch.set_num_threads(args.threads or max(1, torch.get_num_threads() // size))
    threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)
    for config in [] if args.report else args.config:
        exp = load_experiment(config, args.preset, args.out)
        if args.prune and rank == 0:
            prune(exp)
        run_experiment(
            exp, args.only, progress=not args.quiet, force=args.force, jobs=jobs, threads=threads
        )
    if args.report or (not args.no_report and rank == 0 and not args.only):
        written = write_results(args.out)
        if not args.quiet:
            print(f"wrote {written}")
