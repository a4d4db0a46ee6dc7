"""The parts check while the output is written: each shard checked once it is closed.

``lemonkit expand`` writes the shards in order, one thread writing while the workers
expand the next tensors; the machine is rarely busy on every core in that time (the
writer waits for a tensor, or the workers for the writer). :class:`StreamedCheck` runs
:func:`~lemonkit.verification.parts.check_part` on each finished shard's tensors in one
background thread at the lowest scheduling priority (Linux: ``nice`` 19 for that thread
alone), so the check fills those gaps instead of following the write. The record is the
one :func:`~lemonkit.verification.parts.check_parts` makes after the write, for the same
tensors in the same order (tested). Measured on the 1.07B width + depth growth, 2 cores:
the check's time after the last shard fell from 3-4 s to 0.4 s, and the default command
from 23.2 to 21.3 s in an A/B (``benchmarks/results/expand_ab_trim_streamed.txt``).

Example::

    check = StreamedCheck(source, plan, decisions, level=LEVELS["cheap"], chunk_bytes=2**25)
    write_shards(tmp, shards, tensors, on_shard=check.shard_done)
    parts = check.result()   # waits for the last shard; exceptions come out here
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path

from lemonkit.io.checkpoint import Checkpoint
from lemonkit.plan import ExpansionPlan
from lemonkit.plan.decisions import Decision
from lemonkit.verification.parts import Level, check_part, summarize

log = logging.getLogger(__name__)

LOWEST_PRIORITY = 19  # nice value of the checking thread


class StreamedCheck:
    """The parts check of ``decisions`` (the saved ones, in write order), shard by shard."""

    def __init__(
        self,
        source: Checkpoint,
        plan: ExpansionPlan,
        decisions: list[Decision],
        *,
        level: Level,
        chunk_bytes: int,
        seed: int = 0,
        checksums: dict[str, int] | None = None,
    ) -> None:
        self._source, self._plan, self._level = source, plan, level
        self._by_name = {d.name: d for d in decisions}
        self._order = [d.name for d in decisions]
        self._one = partial(
            check_part, level=level, chunk_bytes=chunk_bytes, seed=seed, checksums=checksums
        )  # ``checksums`` is filled while the shards are written: read when a shard is checked
        self._pool = ThreadPoolExecutor(1, "lemonkit-check", initializer=lower_priority)
        self._pending: list[Future] = []

    def shard_done(self, path: Path, names: list[str]) -> None:
        """``path`` is written and closed: check its tensors ``names`` (in the background)."""
        ds = [self._by_name[n] for n in names]
        infos = {d.name: (d.dtype, d.shape) for d in ds}
        config = getattr(self._source, "config", None)  # an upcycled source has one too
        view = Checkpoint(path.parent, config, dict.fromkeys(infos, path), infos)
        self._pending.append(self._pool.submit(self._check, view, ds))

    def _check(self, view: Checkpoint, ds: list[Decision]) -> list[tuple]:
        return [self._one(self._source, view, self._plan, d) for d in ds]

    def result(self) -> dict:
        """The parts record, once every shard is checked (a tensor never written: missing)."""
        try:
            results = {r[0].name: r for f in self._pending for r in f.result()}
        finally:
            self._pool.shutdown(wait=True)
        missing = [(self._by_name[n], None, "missing") for n in self._order if n not in results]
        ordered = [results[n] for n in self._order if n in results]
        return summarize(self._plan, self._level, ordered + missing)

    def cancel(self) -> None:
        """Stop: shards not started are dropped, the one being checked is waited for."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def lower_priority() -> None:
    """The calling thread alone at the lowest priority (Linux); elsewhere nothing, since
    ``setpriority`` there would lower the whole process."""
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)
    except OSError as e:  # pragma: no cover - a sandbox without the syscall
        log.debug("check thread keeps its priority: %s", e)
