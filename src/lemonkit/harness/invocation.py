"""What one whole-preset command cost: ``invocation.json`` in the preset's folder.

A preset's time budget is a property of the command that runs all of it, not of its runs
(they run several at a time with ``--jobs``). :func:`save` records the wall time and the
CPU time of the command (its worker processes included), the jobs and threads, and how
many of the runs it trained (the others were finished before it). The report states the
preset's time only when one command trained every run.

Example::

    start, cpu = time.time(), cpu_seconds()
    ...                                   # every run of the preset
    save(exp.out, records, start, cpu, jobs=2, threads=1)
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import torch

from lemonkit.harness.checkpoints import write_json
from lemonkit.harness.runs import INVOCATION


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished worker processes: unlike
    the wall time, it does not grow when the machine is shared or the run is paused."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def save(
    out: Path, records: list[dict], start: float, cpu_start: float, jobs: int, threads: int
) -> dict:
    """Write ``out/invocation.json`` (atomically) for a command that began at ``start``
    (``time.time()``) and ``cpu_start`` (:func:`cpu_seconds`); returns the record."""
    record = {
        "wall_s": time.time() - start,
        "cpu_s": cpu_seconds() - cpu_start,
        "runs": len(records),
        "trained": sum(r.get("finished_at", 0.0) >= start for r in records),
        "jobs": jobs,
        "threads": threads,
        "cores": os.cpu_count(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / INVOCATION, record)
    return record


def load(folder: Path) -> dict | None:
    """The preset folder's ``invocation.json``, or None."""
    path = folder / INVOCATION
    return json.loads(path.read_text()) if path.exists() else None


def sentence(folder: Path) -> str:
    """What the preset's last whole run took (``invocation.json``), when it trained every
    run: the preset's time budget as one command spends it; else empty.

    Example: `` The whole preset, in one command (`--jobs 2 --threads 1` on 2 CPU cores,
    data preparation included), took 19.3 min.``"""
    inv = load(folder)
    if not inv or inv["trained"] != inv["runs"]:
        return ""
    where = "a GPU" if inv["device"] == "cuda" else f"{inv['cores']} CPU cores"
    cpu = f" ({inv['cpu_s'] / 60:.1f} CPU-min)" if "cpu_s" in inv else ""
    return (
        f" The whole preset, in one command (`--jobs {inv['jobs']} --threads {inv['threads']}` "
        f"on {where}, data preparation included), took {inv['wall_s'] / 60:.1f} min{cpu}."
    )


def overview_cell(summary: dict) -> str:
    """`` (one command: 19.3 min)`` when the preset's last invocation trained every run."""
    inv = summary.get("invocation")
    if not inv or inv["trained"] != inv["runs"]:
        return ""
    return f" (one command: {inv['wall_s'] / 60:.1f} min)"
