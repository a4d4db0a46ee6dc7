"""Hugging Face folder in, Hugging Face folder out: the shell around the engine.

:func:`expand_folder` streams: each source tensor is read lazily, expanded and appended
to the output shard it belongs to, so memory stays near one tensor. The output is built
in a hidden temporary folder beside ``out`` and renamed only once everything, including
the verification, has succeeded: a failure, Ctrl-C or a kill never leaves ``out`` behind.

Example::

    result = expand_folder("small/", "big/", hidden_size=768, num_layers=12)
    result.report.ok  # True when lossless
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lemonkit.engine import iter_expand_tensor
from lemonkit.errors import LemonkitError
from lemonkit.io.checkpoint import Checkpoint
from lemonkit.io.files import (
    check_sentence_transformers,
    copy_other_files,
    update_pooling_configs,
    write_config,
    write_provenance,
)
from lemonkit.io.memory import release_freed
from lemonkit.io.parallel import default_workers, in_order
from lemonkit.io.writer import nbytes, plan_shards, write_shards
from lemonkit.plan import ExpansionPlan, make_plan
from lemonkit.plan.decisions import Decision, decide
from lemonkit.plan.upcycle import Upcycle, upcycle_growth
from lemonkit.verification.certificate import DEFAULT_MAX_MEMORY, Certificate, certify

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 5 * 10**9


@dataclass
class FolderResult:
    out: Path
    plan: ExpansionPlan
    files: list[str]
    report: Certificate | None


def plan_folder(
    src: str | Path, *, dtype: torch.dtype | None = None, upcycle: Upcycle | None = None, **growth
) -> tuple[Checkpoint, ExpansionPlan, list[Decision]]:
    """Open ``src``, make the plan and decide every target tensor (names and shapes
    checked, no weight read). ``dtype``: the output dtype of floating-point tensors.
    ``upcycle``: expand the mixture of experts the dense checkpoint upcycles to.

    Returns the checkpoint, the plan and every target tensor's decision (a tied head's
    has ``saved=False``: ``transformers`` does not save it).
    """
    ckpt = Checkpoint.open(src)
    if upcycle is not None:
        ckpt, growth = _upcycled(ckpt, upcycle, growth)
    plan = make_plan(ckpt.config, base_model=ckpt.is_headless(), **growth)
    if upcycle is not None:
        plan = replace(plan, upcycle=ckpt.record)
    return ckpt, plan, decide(plan, ckpt.infos(), out_dtype=dtype, for_checkpoint=True)


def _upcycled(ckpt: Checkpoint, upcycle: Upcycle, growth: dict):
    """The dense checkpoint as the MoE it upcycles to (one tensor per expert, as the MoE
    class saves them), and the growth for it."""
    from lemonkit.engine.upcycle import upcycled_source

    headless = ckpt.is_headless()
    source = upcycled_source(
        ckpt, ckpt.config, upcycle, infos=ckpt.infos(), stacked=False, headless=headless
    )
    return source, upcycle_growth(upcycle, {**growth, "seed": upcycle.seed})


def expand_folder(
    src: str | Path,
    out: str | Path,
    *,
    force: bool = False,
    max_shard_size: int = DEFAULT_SHARD_SIZE,
    dtype: torch.dtype | None = None,
    compute_dtype: torch.dtype | None = None,
    check: bool = True,
    progress: bool = True,
    upcycle: Upcycle | None = None,
    verify: str = "cheap",
    max_memory: int = DEFAULT_MAX_MEMORY,
    workers: int | None = None,
    **growth,
) -> FolderResult:
    """Expand the model in folder ``src`` into a new folder ``out`` (atomically);
    ``upcycle``: a dense model becomes the mixture of experts it asks for first.
    ``verify``: the check's level (``cheap``, ``full``), within ``max_memory`` bytes
    (:func:`lemonkit.verification.certificate.certify`). ``workers``: tensors expanded
    at once (default: all cores; :mod:`lemonkit.io.parallel`), the same bytes for any."""
    src, out = Path(src).resolve(), Path(out).resolve()
    _check_paths(src, out, force)
    check_sentence_transformers(src)
    ckpt, plan, decisions = plan_folder(src, dtype=dtype, upcycle=upcycle, **growth)
    decisions = [d for d in decisions if d.saved]
    entries = [d.entry for d in decisions]
    _remove_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.lemonkit-{os.getpid()}-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        jobs = [partial(_expand_one, plan, ckpt, d, compute_dtype) for d in decisions]
        sizes = [nbytes(e) for e in entries]
        tensors = in_order(jobs, sizes, workers or default_workers())
        total = sum(nbytes(e) for e in entries)
        with tqdm(
            total=total, unit="B", unit_scale=True, desc="expand", disable=not progress
        ) as bar:
            done = iter(range(1, len(entries) + 1))

            def advance(n_bytes: int) -> None:  # bytes on the bar, tensors beside it
                bar.update(n_bytes)
                bar.set_postfix_str(f"{next(done)}/{len(entries)} tensors", refresh=False)

            files = write_shards(tmp, plan_shards(entries, max_shard_size), tensors, advance)
        write_config(plan, tmp, dtype)
        copy_other_files(src, tmp)
        if plan.target.hidden_size is not None:
            update_pooling_configs(tmp, plan.target.hidden_size)
        write_provenance(tmp, src, plan, None, files)
        report = None
        if check:
            report = certify(
                src, tmp, plan=plan, decisions=decisions, source=ckpt, level=verify,
                max_memory=max_memory, out_dtype=dtype, progress=progress,
                workers=workers or default_workers(),
            )  # fmt: skip
            if not report.ok and not plan.lossy_reason:
                raise LemonkitError(
                    "verification failed, nothing was written: " + " ".join(str(report).split())
                )
        write_provenance(tmp, src, plan, report, files)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FolderResult(out, plan, files, report)


def _expand_one(plan: ExpansionPlan, ckpt, d: Decision, compute_dtype) -> Iterator[torch.Tensor]:
    """One target tensor's chunks (its source read as they need it)."""
    read = ckpt.lazy if isinstance(ckpt, Checkpoint) else ckpt.__getitem__
    donor = read(d.donor) if d.donor else None
    yield from iter_expand_tensor(plan, d, read(d.source), donor, compute_dtype)
    release_freed()  # its chunks' heap pages back to the system: RSS stays bounded


def _check_paths(src: Path, out: Path, force: bool) -> None:
    if out == src or src in out.parents or out in src.parents:
        raise LemonkitError(f"output {out} must not be the source folder, inside it, or above it")
    if out.exists() and not force:
        raise LemonkitError(f"output {out} already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise LemonkitError(f"output {out} exists and is not a folder")
    if not out.parent.is_dir():
        raise LemonkitError(f"the parent folder of {out} does not exist")


def _remove_stale_temporaries(out: Path) -> None:
    """Remove temporary folders left by killed runs (their process no longer exists)."""
    for item in out.parent.glob(f".{out.name}.lemonkit-*"):
        m = re.match(rf"\.{re.escape(out.name)}\.lemonkit-(?:old-)?(\d+)", item.name)
        if m and not _alive(int(m.group(1))):
            log.info("removing %s, left by an interrupted run", item)
            shutil.rmtree(item, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` (``--force``) is removed only after."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.lemonkit-old-{os.getpid()}")
        out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)  # put the previous output back
        raise
    if old is not None:
        shutil.rmtree(old)
