"""A source tensor read on demand, so the engine holds rows, not the whole tensor.

The engine's row path (axis 0 a producer or fixed axis) reads only the source rows each
chunk copies; every other path loads the tensor whole. A folder's tensors are handed to
the engine this way (``Checkpoint.lazy``), so expanding a 470 MB LLaMA-70B MLP weight
holds a few chunks of it, not all of it.

Example::

    lazy = LazyTensor((4, 2), torch.float32, rows=lambda a, b: t[a:b], load=lambda: t)
    lazy.rows(1, 3)    # two rows, read when asked
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LazyTensor:
    """Shape and dtype known; rows ``[a, b)`` or the whole tensor read when asked."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    rows: Callable[[int, int], torch.Tensor]
    load: Callable[[], torch.Tensor]


def materialize(tensor: torch.Tensor | LazyTensor) -> torch.Tensor:
    """The whole tensor (a lazy one read now)."""
    return tensor.load() if isinstance(tensor, LazyTensor) else tensor
