"""Return freed heap memory to the system after each tensor, so peak RSS follows the
budget (glibc).

glibc raises its mmap threshold each time a large block is freed, up to 32 MB; from then
on chunk-sized buffers (a few MB, allocated and freed by the thousand while tensors
stream) come from the heap, where freed space can stay resident, fragmented. Measured
on the LLaMA-70B-sized blocks (parts check, one worker, load 4-7): 1.3 GB peak as is;
470 MB but twice as slow (136 s) with the threshold fixed at 1 MiB (every chunk mapped
and faulted in again); 582 MB at full speed (69 s) with :func:`release_freed` after each
tensor. Elsewhere than glibc it does nothing.

Returning pages has its own cost: the next chunks fault them in again, zeroed by the
kernel. So :func:`release_freed` keeps freed heap for reuse while the process's anonymous
memory stays below ``KEEP_BELOW``, and returns it beyond. Measured on the 1.07B
width + depth growth (``--no-verify``, 2 workers): trimming after every tensor took 2.55M
page faults and 21 s of system time; keeping took 0.36-0.48M faults and 15-17 s, and the
run 1.5-3 s less (`benchmarks/results/expand_ab_trim_streamed.txt`).

Example::

    release_freed()         # free heap pages go back to the system beyond 512 MiB
    release_freed(above=0)  # malloc_trim(0) now
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

KEEP_BELOW = 512 << 20  # bytes of anonymous memory the expand job may keep for reuse
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_freed(above: int = KEEP_BELOW) -> bool:
    """``malloc_trim(0)`` where glibc has it, once this process's anonymous resident
    memory exceeds ``above`` bytes (0: always); True if memory was returned."""
    libc = _libc()
    if libc is None or (above and anonymous_rss() <= above):
        return False
    return bool(libc.malloc_trim(0))


def anonymous_rss() -> int:
    """Resident bytes not backed by a file (the heap, the arenas, large tensors): resident
    minus shared pages of ``/proc/self/statm``; 0 where there is no ``/proc``.

    Example:
        >>> anonymous_rss() >= 0
        True
    """
    try:
        with open("/proc/self/statm") as f:
            _, resident, shared = (int(x) for x in f.read().split()[:3])
    except (OSError, ValueError):
        return 0
    return (resident - shared) * _PAGE
