"""Return freed heap memory to the system after each tensor, so peak RSS follows the
budget (glibc).

glibc raises its mmap threshold each time a large block is freed, up to 32 MB; from then
on chunk-sized buffers (a few MB, allocated and freed by the thousand while tensors
stream) come from the heap, where freed space can stay resident, fragmented. Measured
on the LLaMA-70B-sized blocks (parts check, one worker, load 4-7): 1.3 GB peak as is;
470 MB but twice as slow (136 s) with the threshold fixed at 1 MiB (every chunk mapped
and faulted in again); 582 MB at full speed (69 s) with :func:`release_freed` after each
tensor, which is what the folder job and the parts check do. Elsewhere than glibc it
does nothing.

Example::

    release_freed()   # malloc_trim(0): free heap pages go back to the system
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_freed() -> bool:
    """``malloc_trim(0)`` where glibc has it; True if memory was returned."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
