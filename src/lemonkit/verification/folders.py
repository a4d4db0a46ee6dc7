"""Verify two folders: whole models in memory, or block by block above a size.

Example::

    report = verify_folders("small/", "big/")   # the tolerance lemonkit.json records
    report.ok
"""

from __future__ import annotations

from pathlib import Path

import torch

from lemonkit.io.checkpoint import Checkpoint
from lemonkit.io.files import read_provenance
from lemonkit.io.load import load_model
from lemonkit.verification.compare import VerifyReport, verify

BLOCKWISE_ABOVE_BYTES = 2 * 10**9  # verify larger pairs block by block


def verify_folders(
    src: str | Path,
    out: str | Path,
    *,
    blockwise: bool | None = None,
    source_dtype: torch.dtype | None = None,
    **kwargs,
) -> VerifyReport:
    """Compare two folders: whole models with :func:`lemonkit.verify`, or block by block
    (:func:`lemonkit.verification.blockwise.verify_blockwise`) when ``blockwise`` or, if
    None, when the two checkpoints together exceed ``BLOCKWISE_ABOVE_BYTES``.
    ``source_dtype``: the source is cast to it first (``--dtype``: the expansion must add
    nothing to the cast)."""
    if "tol_fp64" not in kwargs:
        kwargs["tol_fp64"] = recorded_tolerance(Path(out))
    if blockwise is None:
        source = Checkpoint.open(src)
        total = source.nbytes + Checkpoint.open(out).nbytes
        blockwise = total > BLOCKWISE_ABOVE_BYTES and not source.table().stages  # one stack
    if blockwise:
        from lemonkit.verification.blockwise import verify_blockwise

        return verify_blockwise(src, out, source_dtype=source_dtype, **kwargs)
    kwargs.pop("progress", None)
    return verify(load_model(src, source_dtype), load_model(out), **kwargs)


def recorded_tolerance(out: Path) -> float:
    """The float64 tolerance recorded by ``lemonkit expand`` (1e-12 if none)."""
    record = read_provenance(out)
    return record["plan"].get("expected_error_fp64", 1e-12) if record else 1e-12
