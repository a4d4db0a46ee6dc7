"""Verify two folders: whole models in memory, or block by block above a size.

Example::

    report = verify_folders("small/", "big/")   # the tolerance lemonkit.json records
    report.ok
"""

from __future__ import annotations

from pathlib import Path

import torch

from lemonkit.errors import CheckpointError
from lemonkit.io.checkpoint import Checkpoint
from lemonkit.io.files import read_provenance
from lemonkit.io.load import load_model
from lemonkit.tables import model_class
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
    source = Checkpoint.open(src)
    sliceable = _sliceable(source)
    if blockwise is None:
        total = source.nbytes + Checkpoint.open(out).nbytes
        blockwise = total > BLOCKWISE_ABOVE_BYTES and sliceable is None
    if blockwise and sliceable is not None:
        raise CheckpointError(f"block-wise verification {sliceable}: verify the whole models")
    try:
        if blockwise:
            from lemonkit.verification.blockwise import verify_blockwise

            return verify_blockwise(src, out, source_dtype=source_dtype, **kwargs)
        kwargs.pop("progress", None)
        return verify(load_model(src, source_dtype), load_model(out), **kwargs)
    except (ValueError, TypeError, RuntimeError, IndexError, AttributeError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(  # the model class refuses what config.json says, most often
            f"the models could not be run to verify them ({type(e).__name__}: {e}); is the "
            f"source's config.json right? (re-run with --debug for the traceback)"
        ) from e


def _sliceable(source: Checkpoint) -> str | None:
    """None where block-wise verification can slice the model, else why it cannot."""
    table = source.table()
    if table.stages:
        return f"slices one stack of blocks, and {table.model_types[0]} grows per stage"
    if not hasattr(model_class(source.config), "from_pretrained"):
        return "loads slices with from_pretrained, which this user-declared model lacks"
    return None


def recorded_tolerance(out: Path) -> float:
    """The float64 tolerance recorded by ``lemonkit expand`` (1e-12 if none)."""
    record = read_provenance(out)
    tol = record["plan"].get("expected_error_fp64", 1e-12) if record else 1e-12
    if not isinstance(tol, int | float) or not tol >= 0:
        raise CheckpointError(f"{out}/lemonkit.json: expected_error_fp64 is {tol!r}, not a number")
    return float(tol)
