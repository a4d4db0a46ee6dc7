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

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lemonkit.architectures import model_class
from lemonkit.checkpoint import INDEX_FILE, PICKLE_SUFFIXES, SINGLE_FILE, Checkpoint
from lemonkit.checks import check_names, check_shape, target_shape
from lemonkit.engine import iter_expand_tensor
from lemonkit.entries import target_entries
from lemonkit.errors import CheckpointError, ImpossibleExpansionError, LemonkitError
from lemonkit.plan import ExpansionPlan, baseline_lossy_reason, make_plan
from lemonkit.verify import VerifyReport, verify
from lemonkit.writer import Entry, nbytes, plan_shards, write_shards

log = logging.getLogger(__name__)

PROVENANCE_FILE = "lemonkit.json"
DEFAULT_SHARD_SIZE = 5 * 10**9
BLOCKWISE_ABOVE_BYTES = 2 * 10**9  # verify larger pairs block by block


@dataclass
class FolderResult:
    out: Path
    plan: ExpansionPlan
    files: list[str]
    report: VerifyReport | None


def plan_folder(src: str | Path, **targets) -> tuple[Checkpoint, ExpansionPlan, list]:
    """Open ``src``, make the plan and check every tensor's name and shape (no weights read).

    Returns the checkpoint, the plan and the layout: (target entry, target shape) per
    output tensor. A growth baseline (``method="aki"``, ``depth="stack"``) is refused
    unless ``allow_lossy``: a folder that does not compute the source's function is
    written only on request.
    """
    _check_baseline_allowed(targets)
    ckpt = Checkpoint.open(src)
    names = list(ckpt)
    plan = make_plan(ckpt.config, base_model=ckpt.is_headless(), **targets)
    check_names(plan, names)
    layout = []
    for e in target_entries(plan, names):
        if plan.tied and e.name == plan.table.tie_embeddings[0]:
            continue  # a tied head is not saved, as transformers does
        check_shape(plan, e.spec, e.source, ckpt.shape(e.source))
        layout.append((e, tuple(target_shape(plan, e.spec, ckpt.shape(e.source)))))
    return ckpt, plan, layout


def _check_baseline_allowed(targets: dict) -> None:
    reason = baseline_lossy_reason(targets.get("method") or "lemon", targets.get("depth") or "zero")
    if reason and not targets.get("allow_lossy"):
        raise ImpossibleExpansionError(
            f"not lossless: {reason}. These are growth baselines; pass --allow-lossy "
            "(allow_lossy=True) to write them anyway"
        )


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
    **targets,
) -> FolderResult:
    """Expand the model in folder ``src`` into a new folder ``out`` (atomically)."""
    src, out = Path(src).resolve(), Path(out).resolve()
    _check_paths(src, out, force)
    _check_sentence_transformers(src)
    ckpt, plan, layout = plan_folder(src, **targets)
    entries: list[Entry] = [
        (e.name, _out_dtype(ckpt.dtype(e.source), dtype), shp) for e, shp in layout
    ]
    _remove_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.lemonkit-{os.getpid()}-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        tensors = (
            iter_expand_tensor(
                plan,
                e.name,
                e.spec,
                ckpt[e.source],
                e.is_new,
                identity=e.identity,
                donor=ckpt[e.donor] if e.donor else None,  # aki: the next layer's tensor
                donor_name=e.donor_name,
                compute_dtype=compute_dtype,
                out_dtype=dtype,
            )
            for e, _ in layout
        )
        total = sum(nbytes(e) for e in entries)
        with tqdm(
            total=total, unit="B", unit_scale=True, desc="expand", disable=not progress
        ) as bar:
            done = iter(range(1, len(entries) + 1))

            def advance(n_bytes: int) -> None:  # bytes on the bar, tensors beside it
                bar.update(n_bytes)
                bar.set_postfix_str(f"{next(done)}/{len(entries)} tensors", refresh=False)

            files = write_shards(tmp, plan_shards(entries, max_shard_size), tensors, advance)
        _write_config(plan, tmp, dtype)
        _copy_other_files(src, tmp)
        if "hidden" in plan.sizes:
            _update_pooling_configs(tmp, plan.sizes["hidden"])
        _write_provenance(tmp, src, plan, None, files)
        report = None
        if check:
            report = verify_folders(
                src, tmp, progress=progress, tol_fp64=plan.expected_error, source_dtype=dtype
            )
            if not report.ok and not plan.lossy_reason:
                raise LemonkitError(
                    "verification failed, nothing was written: " + " ".join(str(report).split())
                )
        _write_provenance(tmp, src, plan, report, files)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FolderResult(out, plan, files, report)


def load_model(folder: str | Path, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """``from_pretrained`` with the class named in config.json (safetensors only), in
    ``dtype`` if given (else the checkpoint's)."""
    ckpt = Checkpoint.open(folder)  # validates, refuses pickles
    cls = model_class(ckpt.config)
    if not hasattr(cls, "from_pretrained"):  # a user-declared plain nn.Module
        from lemonkit.model import build_model

        state = {n: _cast(ckpt[n], dtype) for n in ckpt}
        return build_model(cls, ckpt.config, state).eval()
    try:
        kwargs = {"dtype": dtype} if dtype else {}
        return cls.from_pretrained(str(folder), use_safetensors=True, **kwargs).eval()
    except Exception as e:
        raise CheckpointError(
            f"{folder}: from_pretrained failed: {' '.join(str(e).split())[:300]}"
        ) from e


def verify_folders(
    src: str | Path,
    out: str | Path,
    *,
    blockwise: bool | None = None,
    source_dtype: torch.dtype | None = None,
    **kwargs,
) -> VerifyReport:
    """Compare two folders: whole models with :func:`lemonkit.verify`, or block by block
    (:func:`lemonkit.blockwise.verify_blockwise`) when ``blockwise`` or, if None, when
    the two checkpoints together exceed ``BLOCKWISE_ABOVE_BYTES``. ``source_dtype``: the
    source is cast to it first (``--dtype``: the expansion must add nothing to the cast)."""
    if "tol_fp64" not in kwargs:
        kwargs["tol_fp64"] = recorded_tolerance(Path(out))
    if blockwise is None:
        total = Checkpoint.open(src).nbytes + Checkpoint.open(out).nbytes
        blockwise = total > BLOCKWISE_ABOVE_BYTES
    if blockwise:
        from lemonkit.blockwise import verify_blockwise

        return verify_blockwise(src, out, source_dtype=source_dtype, **kwargs)
    kwargs.pop("progress", None)
    return verify(load_model(src, source_dtype), load_model(out), **kwargs)


def recorded_tolerance(out: Path) -> float:
    """The float64 tolerance recorded by ``lemonkit expand`` (1e-12 if none)."""
    record = out / PROVENANCE_FILE
    if record.is_file():
        return json.loads(record.read_text())["plan"].get("expected_error_fp64", 1e-12)
    return 1e-12


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor.to(dtype) if dtype and tensor.is_floating_point() else tensor


def _out_dtype(source: torch.dtype, requested: torch.dtype | None) -> torch.dtype:
    """``--dtype`` applies to floating-point tensors only (position ids stay integers)."""
    return requested if (requested and source.is_floating_point) else source


def _check_paths(src: Path, out: Path, force: bool) -> None:
    if out == src or src in out.parents or out in src.parents:
        raise LemonkitError(f"output {out} must not be the source folder, inside it, or above it")
    if out.exists() and not force:
        raise LemonkitError(f"output {out} already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise LemonkitError(f"output {out} exists and is not a folder")
    if not out.parent.is_dir():
        raise LemonkitError(f"the parent folder of {out} does not exist")


def _write_config(plan: ExpansionPlan, folder: Path, dtype: torch.dtype | None) -> None:
    cfg = plan.target_config
    if dtype is not None:
        cfg.dtype = dtype
    cfg.save_pretrained(str(folder))


# weights in other formats keep the source's shapes: never copied into the output
WEIGHT_SUFFIXES = (
    *PICKLE_SUFFIXES,
    ".safetensors",
    ".h5",
    ".msgpack",
    ".gguf",
    ".onnx",
    ".onnx_data",
    ".tflite",
    ".ot",
    ".mlmodel",
    ".npz",
)
WEIGHT_FOLDERS = ("onnx", "openvino", "coreml", "tflite", "tf_model", "flax_model")


def _copy_other_files(src: Path, dst: Path) -> None:
    """Tokenizer, generation config, README...: everything but weights and config.

    Weights in any format (and folders of exported models) are left out, with a warning:
    they would still have the source's shapes.
    """
    skip = {"config.json", INDEX_FILE, PROVENANCE_FILE}
    for item in sorted(src.iterdir()):
        if item.name in skip or item.name.startswith("."):
            continue
        if _is_weights(item):
            if item.name != SINGLE_FILE and not item.name.startswith("model-"):
                log.warning("not copied (weights of the source's size): %s", item.name)
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name, ignore=_ignore_weights)
        else:
            shutil.copy2(item, dst / item.name)


def _is_weights(item: Path) -> bool:
    if item.is_dir():
        return item.name in WEIGHT_FOLDERS
    return item.suffix in WEIGHT_SUFFIXES


def _ignore_weights(folder: str, names: list[str]) -> list[str]:
    left_out = [n for n in names if _is_weights(Path(folder) / n)]
    for name in left_out:
        log.warning("not copied (weights of the source's size): %s/%s", folder, name)
    return left_out


def _check_sentence_transformers(src: Path) -> None:
    """A sentence-transformers folder may only hold modules that need no weights grown."""
    modules = src / "modules.json"
    if not modules.is_file():
        return
    for module in json.loads(modules.read_text()):
        kind = module.get("type", "").rsplit(".", 1)[-1]
        if kind not in ("Transformer", "Pooling", "Normalize"):
            raise LemonkitError(
                f"sentence-transformers module {kind!r} ({module.get('path')}) has weights "
                "lemonkit does not expand; only Transformer, Pooling and Normalize are supported"
            )


def _update_pooling_configs(folder: Path, hidden: int) -> None:
    """sentence-transformers Pooling configs name the embedding width: set the new one."""
    for config in folder.glob("*/config.json"):
        data = json.loads(config.read_text())
        if "word_embedding_dimension" in data:
            data["word_embedding_dimension"] = hidden
            config.write_text(json.dumps(data, indent=2) + "\n")


def _write_provenance(folder, src, plan, report, files) -> None:
    import lemonkit

    record = {
        "lemonkit_version": lemonkit.__version__,
        "source": str(src),
        "files": files,
        "plan": plan.to_json(),
        "verification": report.to_json() if report else None,
    }
    (folder / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")


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
