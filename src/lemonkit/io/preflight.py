"""Checks made before the first byte of an output is written.

Everything a run could fail on late is looked at first, so that a failure costs seconds
and leaves nothing behind: the target config as its family's own config class sees it,
the dtypes of the tensors (float8 and integer tensors grow only where they are copied),
non-finite source weights (named, :mod:`lemonkit.io.finite`), and the free space the output needs.

Example::

    check_target_config(plan)           # the config class's own validation
    check_free_space(Path("out/").parent, planned_bytes(entries, src))
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from lemonkit.errors import ImpossibleExpansionError, LemonkitError
from lemonkit.plan.decisions import Decision

log = logging.getLogger(__name__)

WIDE_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
MARGIN_BYTES = 1 << 20  # config, provenance, headers


def check_target_config(plan) -> None:
    """Build the target config with the family's own class, as saving and loading will:
    its validation (``hidden_size`` a multiple of the heads...) fails here, not after
    every tensor has been written."""
    cfg = plan.target_config
    cls = type(cfg)
    if not (hasattr(cfg, "to_dict") and hasattr(cls, "from_dict")):
        return  # a user's config class without the transformers round trip
    try:
        cls.from_dict(cfg.to_dict())
    except Exception as e:  # transformers' strict dataclass validation, ValueError...
        cause = e.__cause__ or e
        raise ImpossibleExpansionError(
            f"the target config is not valid for {cls.__name__}: {cause}"
        ) from e


def check_dtypes(decisions: Iterable[Decision], infos: Mapping[str, tuple]) -> None:
    """Float8 and integer tensors are written only where they are copied unchanged
    (depth growth, zero fills, identity norms); one that must grow in such a dtype is
    refused in one line (``--dtype`` expands float8 ones in a wider dtype)."""
    for d in decisions:
        if d.dtype in WIDE_FLOATS or _copied(d):
            continue
        source = infos[d.source][0] if d.source in infos else d.dtype
        how = (
            "pass --dtype bfloat16 (or float32) to expand it in a wider dtype"
            if d.dtype.is_floating_point
            else "lemonkit grows integer tensors only by copying them"
        )
        change = (
            f"would grow {_shape(d.source_shape)} -> {_shape(d.shape)}"
            if d.shape != d.source_shape
            else f"would not be copied unchanged into {d.name!r} (op {d.op})"
        )
        raise ImpossibleExpansionError(
            f"tensor {d.source!r} is {_name(source)} and {change}; float8 and integer "
            f"tensors are expanded only where they are copied unchanged (depth): {how}"
        )


def _copied(d: Decision) -> bool:
    """Exact in any dtype: zeros, identity norms, and tensors that do not change."""
    if d.op in ("zero", "identity"):
        return True
    factors = (d.stream_scale, d.embedding_ratio, d.norm_scale)
    unchanged = d.op in ("expand", "keep") and d.shape == d.source_shape and not d.donor
    # ``untie`` noise goes only where the function does not read it (free parameters of
    # a new block): rounding it is harmless; paired (cancel) units must cancel exactly
    return unchanged and not getattr(d, "paired", False) and all(f == 1.0 for f in factors)


def planned_bytes(entries: Iterable[tuple], src: Path) -> int:
    """The output's size: the planned tensors plus the files copied from ``src``."""
    from lemonkit.io.files import PROVENANCE_FILE, _is_weights
    from lemonkit.io.writer import nbytes

    total = sum(nbytes(e) for e in entries) + MARGIN_BYTES
    for item in src.rglob("*"):
        inside = [src / p for p in item.relative_to(src).parents][:-1]  # its folders
        copied = not _is_weights(item) and not any(_is_weights(f) for f in inside)
        if item.is_file() and copied and item.name != PROVENANCE_FILE:
            total += item.stat().st_size
    return total


def check_free_space(folder: Path, needed: int) -> None:
    """Refuse when ``folder``'s file system has less free space than ``needed``."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise LemonkitError(
            f"not enough free space in {folder}: the output needs about {_size(needed)} "
            f"({needed} bytes), {_size(free)} ({free} bytes) are free"
        )


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # pragma: no cover


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(map(str, shape)) or "scalar"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
