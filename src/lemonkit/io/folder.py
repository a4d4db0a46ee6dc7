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
import shutil
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
from lemonkit.io.finite import FiniteScan
from lemonkit.io.hub import Source, resolve_source
from lemonkit.io.lock import make_temporary, old_name, output_lock, remove_stale_temporaries
from lemonkit.io.memory import release_freed
from lemonkit.io.model_card import write_model_card
from lemonkit.io.parallel import default_workers, in_order
from lemonkit.io.preflight import (
    check_dtypes,
    check_free_space,
    check_target_config,
    planned_bytes,
)
from lemonkit.io.writer import nbytes, plan_shards, write_shards
from lemonkit.plan import ExpansionPlan, make_plan
from lemonkit.plan.decisions import Decision, decide
from lemonkit.plan.upcycle import Upcycle, upcycle_growth
from lemonkit.verification.certificate import (
    DEFAULT_MAX_MEMORY,
    Certificate,
    certify,
    streamed_check,
)
from lemonkit.verification.checksums import checksum_kind, checksummed

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 5 * 10**9


@dataclass
class FolderResult:
    out: Path
    plan: ExpansionPlan
    files: list[str]
    report: Certificate | None


def plan_folder(
    src: str | Path | Source,
    *,
    dtype: torch.dtype | None = None,
    upcycle: Upcycle | None = None,
    revision: str | None = None,
    **growth,
) -> tuple[Checkpoint, ExpansionPlan, list[Decision]]:
    """Open ``src`` (a folder or a Hub repo id at ``revision``), make the plan and decide
    every target tensor (names and shapes checked, no weight read). ``dtype``: the output
    dtype of floating-point tensors. ``upcycle``: expand the mixture of experts the dense
    checkpoint upcycles to.

    Returns the checkpoint, the plan and every target tensor's decision (a tied head's
    has ``saved=False``: ``transformers`` does not save it).
    """
    ckpt = Checkpoint.open(resolve_source(src, revision).path)
    if upcycle is not None:
        ckpt, growth = _upcycled(ckpt, upcycle, growth)
    plan = make_plan(ckpt.config, base_model=ckpt.is_headless(), **growth)
    if upcycle is not None:
        plan = replace(plan, upcycle=ckpt.record)
    check_target_config(plan)
    decisions = decide(plan, ckpt.infos(), out_dtype=dtype, for_checkpoint=True)
    check_dtypes(decisions, ckpt.infos())
    return ckpt, plan, decisions


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
    revision: str | None = None,
    run_config: dict | None = None,
    verify: str = "cheap",
    max_memory: int = DEFAULT_MAX_MEMORY,
    workers: int | None = None,
    **growth,
) -> FolderResult:
    """Expand the model in folder ``src`` (or Hub repo id, at ``revision``) into a new
    folder ``out`` (atomically); ``upcycle``: a dense model becomes the mixture of experts
    it asks for first. ``run_config``: the command's options, recorded in lemonkit.json.
    ``verify``: the check's level (``cheap``, ``full``), within ``max_memory`` bytes
    (:func:`lemonkit.verification.certificate.certify`). ``workers``: tensors expanded
    at once (default: all cores; :mod:`lemonkit.io.parallel`), the same bytes for any."""
    source = resolve_source(src, revision)
    src, out = source.path.resolve(), Path(out).resolve()
    _check_paths(src, out, force)
    check_sentence_transformers(src)
    scan = FiniteScan.of_folder(src)  # reads while the plan is made
    try:
        ckpt, plan, decisions = plan_folder(source, dtype=dtype, upcycle=upcycle, **growth)
    except BaseException:
        scan.stop()  # nothing more to read for
        raise
    n_params = (_count(ckpt.infos().values()), _count((d.dtype, d.shape) for d in decisions))
    decisions = [d for d in decisions if d.saved]
    _check_finite(scan, ckpt, decisions)
    check_free_space(out.parent, planned_bytes([d.entry for d in decisions], src))
    record = {"source_ref": source.to_json(), "config": _replayable(run_config, source)}
    workers = workers or default_workers()
    with output_lock(out):
        _check_paths(src, out, force)  # again: a run that held the lock may have written it
        remove_stale_temporaries(out)
        tmp = make_temporary(out)
        checksums: dict[str, int] | None = {} if check else None  # filled as made
        streamed = None  # the parts check, shard by shard as written
        try:
            streamed = streamed_check(ckpt, plan, decisions, verify, max_memory, checksums)
            files = _write(tmp, src, ckpt, plan, decisions, dtype, compute_dtype,
                           max_shard_size, progress, workers, checksums, streamed)  # fmt: skip
            write_provenance(tmp, src, plan, None, files, record)
            report = None
            if check:
                report = certify(
                    src, tmp, plan=plan, decisions=decisions, source=ckpt, level=verify,
                    max_memory=max_memory, out_dtype=dtype, progress=progress,
                    workers=workers, checksums=checksums, parts=streamed.result(),
                )  # fmt: skip
                if not report.ok and not plan.lossy_reason:
                    raise LemonkitError(
                        "verification failed, nothing was written: " + " ".join(str(report).split())
                    )
            write_provenance(tmp, src, plan, report, files, record)
            write_model_card(tmp, source, plan, report, n_params)
            _publish(tmp, out)
        except BaseException:
            if streamed is not None:
                streamed.cancel()  # it reads tmp's shards
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return FolderResult(out, plan, files, report)


def _check_finite(scan: FiniteScan, ckpt, decisions: list[Decision]) -> None:
    """Non-finite source weights, named (from ``scan``, the background reading of the
    source's files); an upcycled source is checked on its dense tensors (each read
    once, not once per expert copy)."""
    dense = getattr(ckpt, "dense", None)
    if dense is not None:
        scan.check(list(dense), fallback=dense)
    else:
        scan.check([n for d in decisions for n in (d.source, d.donor) if n], fallback=ckpt)


def _write(
    tmp, src, ckpt, plan, decisions, dtype, compute_dtype, shard, progress, workers, checksums,
    streamed=None,
) -> list[str]:  # fmt: skip
    """The shards (streamed, ``workers`` tensors at once, written in order), the config
    and the copied files, into ``tmp``; ``checksums`` (None: no check follows) gets the
    CRC-32 of the new blocks' untied tensors (:mod:`lemonkit.verification.checksums`);
    ``streamed`` (a :class:`StreamedCheck`) is given each shard once it is written."""
    entries = [d.entry for d in decisions]
    jobs = [partial(_expand_one, plan, ckpt, d, compute_dtype) for d in decisions]
    for i, d in enumerate(decisions):
        if checksums is not None and checksum_kind(plan, d):
            jobs[i] = partial(checksummed, jobs[i], checksums, d.name)
    tensors = in_order(jobs, [nbytes(e) for e in entries], workers)
    total = sum(nbytes(e) for e in entries)
    with tqdm(total=total, unit="B", unit_scale=True, desc="expand", disable=not progress) as bar:
        done = iter(range(1, len(entries) + 1))

        def advance(n_bytes: int) -> None:  # bytes on the bar, tensors beside it
            bar.update(n_bytes)
            bar.set_postfix_str(f"{next(done)}/{len(entries)} tensors", refresh=False)

        on_shard = streamed.shard_done if streamed is not None else None
        files = write_shards(tmp, plan_shards(entries, shard), tensors, advance, on_shard)
    write_config(plan, tmp, dtype)
    copy_other_files(src, tmp)
    if plan.target.hidden_size is not None:
        update_pooling_configs(tmp, plan.target.hidden_size)
    return files


def _count(infos) -> int:
    """Parameters (elements) of (dtype, shape) pairs."""
    total = 0
    for _, shape in infos:
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


def _replayable(run_config: dict | None, source: Source) -> dict | None:
    """The run's config with a Hub source pinned to the commit it resolved to."""
    if run_config is None or not source.commit:
        return run_config
    return {**run_config, "revision": source.commit}


def _expand_one(plan: ExpansionPlan, ckpt, d: Decision, compute_dtype) -> Iterator[torch.Tensor]:
    """One target tensor's chunks (its source read as they need it)."""
    read = ckpt.lazy if isinstance(ckpt, Checkpoint) else ckpt.__getitem__
    donor = read(d.donor) if d.donor else None
    yield from iter_expand_tensor(plan, d, read(d.source), donor, compute_dtype)
    release_freed()  # RSS stays bounded; below KEEP_BELOW, freed pages are reused


def _check_paths(src: Path, out: Path, force: bool) -> None:
    if out == src or src in out.parents or out in src.parents:
        raise LemonkitError(f"output {out} must not be the source folder, inside it, or above it")
    if out.exists() and not force:
        raise LemonkitError(f"output {out} already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise LemonkitError(f"output {out} exists and is not a folder")
    if not out.parent.is_dir():
        raise LemonkitError(f"the parent folder of {out} does not exist")


def _publish(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` (``--force``) is removed only after."""
    old = None
    if out.exists():
        old = old_name(out)
        out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)  # put the previous output back
        raise
    if old is not None:
        shutil.rmtree(old)
