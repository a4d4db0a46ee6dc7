"""Runs of consecutive source indices: the unit of every copy the engine makes.

A target axis is described by the source index of each target channel (``-1`` for an
extra channel that copies nothing). Copies are long runs of consecutive sources, so the
engine works run by run (``narrow`` + ``cat``) rather than index by index.

Example:
    >>> list(consecutive_runs([0, 1, 2, 0, 1, -1, -1]))
    [(0, 0, 3), (3, 0, 2), (5, -1, 2)]
    >>> list(consecutive_runs([0, 1, 2, 3], limit=3))
    [(0, 0, 3), (3, 3, 1)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence


def consecutive_runs(
    sources: Sequence[int],
    limit: int | None = None,
    same: Callable[[int], bool] | None = None,
) -> Iterator[tuple[int, int, int]]:
    """(target start, source start or -1, length) of maximal runs in which each source
    follows the previous one (or both are extras), at most ``limit`` long, and where
    ``same(j)`` holds between channel j - 1 and j."""
    start = 0
    for j in range(1, len(sources) + 1):
        joined = (
            j < len(sources)
            and (limit is None or j - start < limit)
            and (
                (sources[j] < 0 and sources[j - 1] < 0)
                or (sources[j - 1] >= 0 and sources[j] == sources[j - 1] + 1)
            )
            and (same is None or same(j))
        )
        if not joined:
            yield start, sources[start], j - start
            start = j
