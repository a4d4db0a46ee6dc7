"""Several tensors expanded at once, written in the planned order (``--workers N``).

The writer consumes tensors in the planned order; with ``workers > 1`` a thread pool
computes the next tensors ahead of it (torch releases the GIL in its kernels), each
tensor whole, within ``in_flight`` bytes of target tensors waiting (this generator and
the writer drop each tensor once written, before waiting for the next, so the one being
written is not held beside them). A tensor larger
than that is streamed chunk by chunk in the calling thread as with one worker, so memory
stays bounded whatever N is: ``in_flight`` plus what the workers are computing (about
one source tensor and its target each). The bytes written do not depend on N: every
tensor's random numbers are seeded by its name and its chunk's first row, never by
order or thread.

How the work divides on a large machine: one tensor per worker (a 70B-class layer has
7-9 tensors of 50-500 MB each, and hundreds of them in all), so 32-128 workers keep busy
until disk bandwidth is the limit: the output is written by one thread in order, and
the source is read by every worker at once.

Example::

    for item in in_order(jobs, sizes, workers=4):
        write(item)   # a list of chunks, or an iterator of them (a streamed tensor)
"""

from __future__ import annotations

import argparse
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import torch

IN_FLIGHT_BYTES = 256 * 2**20  # target bytes computed ahead of the writer, in all

Job = Callable[[], Iterable[torch.Tensor]]


def default_workers() -> int:
    """All the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def add_workers_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="tensors expanded at once (default: all cores); the output is the same for any N",
    )


def in_order(
    jobs: list[Job], sizes: list[int], workers: int, in_flight: int = IN_FLIGHT_BYTES
) -> Iterator[Iterable[torch.Tensor]]:
    """Each job's chunks, in the jobs' order; up to ``workers`` jobs computed at once."""
    if workers <= 1:
        yield from (job() for job in jobs)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="lemonkit-expand")
    window: deque[tuple[int, Future | None]] = deque()
    held, nxt = 0, 0
    try:
        for i in range(len(jobs)):
            while nxt < len(jobs) and len(window) < 2 * workers:
                streamed = sizes[nxt] > in_flight
                if window and (streamed or held + sizes[nxt] > in_flight):
                    break
                future = None if streamed else pool.submit(_whole, jobs[nxt])
                held += 0 if streamed else sizes[nxt]
                window.append((nxt, future))
                nxt += 1
            j, future = window.popleft()
            assert j == i, (i, j)
            if future is None:
                yield jobs[i]()
            else:
                held -= sizes[i]
                yield future.result()
            future = None  # a written tensor is freed before the next one is awaited
    finally:
        for _, future in window:
            if future is not None:
                future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _whole(job: Job) -> list[torch.Tensor]:
    return list(job())
