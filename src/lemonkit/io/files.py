"""The files of an output folder beside the weights: config, tokenizer and other files
copied from the source, sentence-transformers configs, and the provenance record.

Example::

    copy_other_files(Path("small/"), Path("big/"))  # tokenizer, generation config...
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path

import torch

from lemonkit.errors import CheckpointError, LemonkitError
from lemonkit.io.checkpoint import INDEX_FILE, PICKLE_SUFFIXES, SINGLE_FILE
from lemonkit.plan import ExpansionPlan

log = logging.getLogger(__name__)

PROVENANCE_FILE = "lemonkit.json"
PROVENANCE_FORMAT = 2  # 2: sizes named by the Targets fields (hidden_size, ...), options


def read_provenance(folder: Path) -> dict | None:
    """``folder/lemonkit.json`` as a dict, or None if there is none."""
    record = folder / PROVENANCE_FILE
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{record} is not valid JSON ({e}); was it edited?") from e
    if not isinstance(data, dict) or not isinstance(data.get("plan"), dict):
        raise CheckpointError(f"{record} is not a lemonkit record (no plan); was it edited?")
    return data


def write_config(plan: ExpansionPlan, folder: Path, dtype: torch.dtype | None) -> None:
    """The target config.json (with ``dtype`` when the weights were cast)."""
    cfg = copy.deepcopy(plan.target_config)  # the plan's own config stays as planned
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


def copy_other_files(src: Path, dst: Path) -> None:
    """Tokenizer, generation config...: everything but weights, config and the source's
    model card (README.md: the output gets its own, :mod:`lemonkit.io.model_card`).

    Weights in any format (and folders of exported models) are left out, with a warning:
    they would still have the source's shapes.
    """
    skip = {"config.json", INDEX_FILE, PROVENANCE_FILE, "README.md"}  # the card is our own
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


def check_sentence_transformers(src: Path) -> None:
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


def update_pooling_configs(folder: Path, hidden: int) -> None:
    """sentence-transformers Pooling configs name the embedding width: set the new one."""
    for config in folder.glob("*/config.json"):
        data = json.loads(config.read_text())
        if "word_embedding_dimension" in data:
            data["word_embedding_dimension"] = hidden
            config.write_text(json.dumps(data, indent=2) + "\n")


def write_provenance(
    folder: Path,
    src: Path,
    plan: ExpansionPlan,
    report,
    files: list[str],
    extra: dict | None = None,
) -> None:
    """``lemonkit.json``: source, plan (every choice), version, files and verification;
    ``chunk_elements``: the engine's chunk size, which enters the random seeds (a chunk's
    first row), so the record says all that the bytes depend on. ``extra``: more keys
    (the source's Hub reference, the run's config)."""
    from lemonkit import __version__
    from lemonkit.engine import tensor as engine

    record = {
        "format": PROVENANCE_FORMAT,
        "lemonkit_version": __version__,
        "source": str(src),
        "files": files,
        "chunk_elements": engine.CHUNK_ELEMENTS,
        "plan": plan.to_json(),
        "verification": report.to_json() if report else None,
        **(extra or {}),
    }
    (folder / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
