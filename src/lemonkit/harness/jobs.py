"""Several runs of one preset at once, in worker processes (``run.py --jobs N``).

A small model on a few CPU cores uses two threads poorly: two one-thread runs side by side
finish more runs per minute than one two-thread run at a time. The runs of a preset depend
on each other in two phases: the sources (``small``, the when-to-grow sources) with the
from-scratch references (their mean sets the target of every other run), which need
nothing, then the rest, which need both. (Sources and references were two phases: the
small model then trained alone, one core idle.) Each phase runs its runs in ``jobs``
spawned processes; each process loads the data once and trains with ``threads`` torch
threads. A run's record does not depend on ``jobs``: it depends on its thread count, as
any run does (tested: the same records with 1 and 2 jobs).

The worker functions come in as arguments (``load`` and ``run``: the experiment's
``load_data`` and ``run_one``), so this module imports nothing of the experiment.

Example::

    records = run_in_phases(exp, specs, jobs=2, threads=1, load=load_data, run=run_one)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import torch

from lemonkit.harness.runs import RunSpec

log = logging.getLogger(__name__)

FIRST = ("source", "reference")  # need nothing; every other group needs them
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def phases(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """The specs in dependency phases, the longest runs first, empty phases left out.

    Example:
        >>> s = [RunSpec("small", "small", "source"), RunSpec("scratch-s0", "scratch",
        ...      "reference"), RunSpec("lemon-s0", "expand", "headline")]
        >>> [[x.name for x in p] for p in phases(s)]
        [['scratch-s0', 'small'], ['lemon-s0']]
    """
    groups = [[s for s in specs if s.group in FIRST], [s for s in specs if s.group not in FIRST]]
    return [sorted(g, key=longest_first) for g in groups if g]


def longest_first(spec: RunSpec) -> int:
    """Runs that never stop at the target (from-scratch references, KI students: KI runs
    took 440-480 of 600 steps) start first, so that no core ends a phase alone on one of
    them; a stable sort keeps the rest in order. Records do not depend on the order."""
    return 0 if spec.group == "reference" or spec.ki else 1


_WORKER: dict = {}  # in each worker process: the experiment, its data, the run function


def die_with_parent(parent: int) -> None:
    """Linux: end this worker (SIGTERM) when ``parent``, the process that started it,
    dies. A ``kill`` of ``run.py`` reaches it alone; its workers would otherwise go on
    training and writing run records into the results folder (it happened). Elsewhere
    it does nothing."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent:  # the parent died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def _init_worker(exp, threads: int, level: int, load: Callable, run: Callable, parent: int):
    die_with_parent(parent)
    logging.basicConfig(level=level, format="%(message)s")
    torch.set_num_threads(threads)
    _WORKER.update(exp=exp, data=load(exp), run=run)


def _run(spec: RunSpec, force: bool) -> dict:
    log.info("%s/%s: %s", _WORKER["exp"].name, _WORKER["exp"].preset, spec.name)
    return _WORKER["run"](_WORKER["exp"], spec, _WORKER["data"], progress=False, force=force)


def run_in_phases(
    exp,
    specs: list[RunSpec],
    jobs: int,
    threads: int,
    *,
    load: Callable,
    run: Callable,
    force: bool = False,
) -> list[dict]:
    """Every spec's record (in ``specs`` order), ``jobs`` runs at a time per phase;
    ``load(exp)`` gives a worker its data, ``run(exp, spec, data, progress, force)`` a
    record (module-level functions: they travel to the workers by name)."""
    by_name: dict[str, dict] = {}
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    level = logging.getLogger("lemonkit").getEffectiveLevel()
    initargs = (exp, threads, level, load, run, os.getpid())
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_init_worker, initargs=initargs
    ) as pool:
        for phase in phases(specs):
            records = pool.map(_run, phase, [force] * len(phase))
            by_name.update({s.name: r for s, r in zip(phase, records, strict=True)})
    return [by_name[s.name] for s in specs]
