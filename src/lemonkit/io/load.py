"""A saved folder -> an ``nn.Module``: ``from_pretrained`` with the class its config names.

Example::

    model = load_model("big/", dtype=torch.float64)
"""

from __future__ import annotations

from pathlib import Path

import torch

from lemonkit.errors import CheckpointError
from lemonkit.io.checkpoint import Checkpoint
from lemonkit.tables import model_class


def load_model(folder: str | Path, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """``from_pretrained`` with the class named in config.json (safetensors only), in
    ``dtype`` if given (else the checkpoint's); a user-declared plain ``nn.Module`` is
    built from its table's classes and loaded from the safetensors weights."""
    ckpt = Checkpoint.open(folder)  # validates, refuses pickles
    cls = model_class(ckpt.config)
    if not hasattr(cls, "from_pretrained"):  # a user-declared plain nn.Module
        from lemonkit.module import build_model

        state = {n: _cast(ckpt[n], dtype) for n in ckpt}
        return build_model(cls, ckpt.config, state).eval()
    try:
        kwargs = {"dtype": dtype} if dtype else {}
        return cls.from_pretrained(str(folder), use_safetensors=True, **kwargs).eval()
    except Exception as e:
        raise CheckpointError(
            f"{folder}: from_pretrained failed: {' '.join(str(e).split())[:300]}"
        ) from e


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor.to(dtype) if dtype and tensor.is_floating_point() else tensor
