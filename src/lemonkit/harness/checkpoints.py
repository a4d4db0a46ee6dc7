"""A run's checkpoints: atomic saves, resume after a save cut off half-way, clean-up.

A checkpoint is a folder: ``model.safetensors``, ``optimizer.pt`` (optimizer and
scheduler state) and ``progress.json`` (step, history, wall time and the run's settings,
which a resume must match). ``ckpt`` saves to ``ckpt.tmp``, keeps the previous one as
``ckpt.old`` while it renames, and a resume reads ``ckpt.old`` when ``ckpt`` is missing.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     ckpt = Path(tmp) / "ckpt"
    ...     (ckpt.with_name("ckpt.old")).mkdir()
    ...     _ = (ckpt.with_name("ckpt.old") / "progress.json").write_text("{}")
    ...     found = find_checkpoint(ckpt).name
    ...     remove_checkpoint(ckpt)
    ...     left = list(Path(tmp).iterdir())
    >>> found, left
    ('ckpt.old', [])
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lemonkit.harness.errors import StaleCheckpointError


def save_checkpoint(path: Path, model, optimizer, scheduler, progress: dict) -> None:
    """Atomic: written to ``path.tmp``, then renamed over ``path`` (the previous one is
    kept as ``path.old`` until the rename is done, and read if ``path`` is missing)."""
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(model, tmp / "model.safetensors")
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        tmp / "optimizer.pt",
    )
    (tmp / "progress.json").write_text(json.dumps(progress))
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(path: Path | None) -> Path | None:
    """The checkpoint to resume from: ``path``, or ``path.old`` if a save was cut off."""
    if path is None:
        return None
    for candidate in (path, path.with_name(path.name + ".old")):
        if (candidate / "progress.json").exists():
            return candidate
    return None


def remove_checkpoint(path: Path) -> None:
    """Delete a run's checkpoint with its ``.old`` and ``.tmp`` companions."""
    for candidate in (path, path.with_name(path.name + ".old"), path.with_name(path.name + ".tmp")):
        shutil.rmtree(candidate, ignore_errors=True)


def write_json(path: Path, record: dict) -> None:
    """``record`` as JSON at ``path``, atomically (written beside it, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """The model's state dict as safetensors (on the CPU, tied tensors stored twice)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(_untie(state), str(path))


def _untie(state: dict) -> dict:
    """safetensors refuses shared storage: clone tensors that alias an earlier one."""
    seen, out = set(), {}
    for k, v in state.items():
        key = (v.data_ptr(), v.shape)
        out[k] = v.clone() if key in seen else v
        seen.add(key)
    return out


def load_checkpoint(path: Path, model, optimizer, scheduler, config: dict) -> dict:
    """Restore a run; refuses a checkpoint whose ``progress["config"]`` is not ``config``
    (written under other hyper-parameters). The optimizer file is read with
    ``weights_only=True`` (no pickled code runs)."""
    progress = json.loads((path / "progress.json").read_text())
    if progress.get("config") != config:
        raise StaleCheckpointError(
            f"{path} was written by a run with other settings; delete it to start afresh"
        )
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    opt = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    return progress
