"""Reading a Hugging Face folder lazily and safely.

:class:`Checkpoint` is a read-only mapping from tensor name to tensor that opens the
safetensors file holding a tensor only when that tensor is asked for, and closes it
again, so memory stays at one tensor whatever the model size. Opening validates what can
be validated without reading weights: config.json, the shard index, that every shard
exists and has a complete, readable header. Pickle checkpoints (``*.bin``, ``*.pt``) are
refused: unpickling can run arbitrary code.

Example::

    ckpt = Checkpoint.open("path/to/model")
    ckpt.shape("model.embed_tokens.weight")  # (32000, 4096), no weight read
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from lemonkit.engine.lazy import LazyTensor
from lemonkit.errors import CheckpointError
from lemonkit.tables import table_for

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "U16": torch.uint16,
    "U32": torch.uint32,
    "U64": torch.uint64,
}


class Checkpoint(Mapping[str, torch.Tensor]):
    """A validated, lazily read Hugging Face checkpoint folder (config + safetensors)."""

    def __init__(self, folder: Path, config: Any, files: dict[str, Path], meta: dict):
        self.folder = folder
        self.config = config
        self._files = files  # tensor name -> shard path
        self._meta = meta  # tensor name -> (dtype, shape)

    @classmethod
    def open(cls, folder: str | Path) -> Checkpoint:
        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"{folder} is not a folder")
        config = load_config(folder)
        table_for(config.model_type)  # unsupported types fail here, before any reading
        files = weight_files(folder)
        meta: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {}
        where: dict[str, Path] = {}
        for path in files:
            for name, info in read_header(path).items():
                if name in where:
                    raise CheckpointError(f"tensor {name!r} appears in two shards")
                where[name], meta[name] = path, info
        _check_index(folder, where)
        return cls(folder, config, where, meta)

    def __getitem__(self, name: str) -> torch.Tensor:
        path = self._files[name]
        try:
            with safe_open(str(path), framework="pt") as f:
                return f.get_tensor(name)
        except SafetensorError as e:
            raise CheckpointError(f"{path.name}: cannot read tensor {name!r} ({e})") from e

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` (axis 0) of a tensor, reading only those bytes."""
        path = self._files[name]
        try:
            with safe_open(str(path), framework="pt") as f:
                return f.get_slice(name)[start:stop]
        except SafetensorError as e:
            raise CheckpointError(f"{path.name}: cannot read tensor {name!r} ({e})") from e

    def lazy(self, name: str) -> LazyTensor:
        """The tensor as the engine reads it: rows when asked, or whole."""
        dtype, shape = self._meta[name]
        return LazyTensor(
            tuple(shape), dtype, partial(self.rows, name), partial(self.__getitem__, name)
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._meta[name][1]

    def infos(self) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
        """Every tensor's (dtype, shape), from the headers: what decisions are made from."""
        return dict(self._meta)

    @property
    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in set(self._files.values()))

    def is_headless(self) -> bool:
        """A ``*Model`` checkpoint: its names lack the head model's base prefix."""
        prefix = table_for(self.config.model_type).base_prefix
        return bool(prefix) and not any(n.startswith(prefix) for n in self._files)

    def table(self):
        """The architecture table for this checkpoint (headless variant if needed)."""
        table = table_for(self.config.model_type)
        return table.base_model() if self.is_headless() else table


def load_config(folder: Path) -> Any:
    """``AutoConfig`` from ``folder/config.json``; never runs remote code."""
    from transformers import AutoConfig

    from lemonkit import tables

    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} has no config.json; is it a Hugging Face model folder?")
    try:
        raw = json.loads((folder / "config.json").read_text())
        for table in tables.TABLES:  # a registered user model
            if table.config_class and raw.get("model_type") in table.model_types:
                return table.config_class.from_dict(raw)
        return AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as e:  # transformers raises ValueError, OSError, KeyError...
        raise CheckpointError(f"{folder}/config.json cannot be read: {_one_line(e)}") from e


def weight_files(folder: Path) -> list[Path]:
    """The safetensors shards of a folder; pickle-only folders are refused."""
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = read_index(index)
        paths = sorted({folder / f for f in weight_map.values()})
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise CheckpointError(f"shard {missing[0]} named in {INDEX_FILE} is missing")
        return paths
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE]
    pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise CheckpointError(
            f"{folder} holds only a pickle checkpoint ({pickles[0]}); lemonkit does not unpickle "
            "checkpoints (it can run arbitrary code). Convert it to safetensors first, e.g. "
            "model.save_pretrained(folder, safe_serialization=True) on a trusted machine"
        )
    raise CheckpointError(f"{folder} has no {SINGLE_FILE} or {INDEX_FILE}")


def read_index(index: Path) -> dict[str, str]:
    """The ``weight_map`` of a shard index (tensor name -> shard file name), checked."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{index} is not a valid shard index ({_one_line(e)})") from e
    ok = isinstance(weight_map, dict) and all(
        isinstance(k, str) and isinstance(v, str) and "/" not in v and v not in ("", ".", "..")
        for k, v in weight_map.items()
    )
    if not ok:
        raise CheckpointError(f"{index} is not a valid shard index (its weight_map)")
    return weight_map


def read_header(path: Path) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """Names, dtypes and shapes of one safetensors file, checking it is complete."""
    try:
        with safe_open(str(path), framework="pt") as f:
            out = {}
            for name in f.keys():  # noqa: SIM118 - safe_open handles are not iterable
                sl = f.get_slice(name)
                if sl.get_dtype() not in DTYPES:
                    raise CheckpointError(
                        f"{path.name}: tensor {name!r} has dtype {sl.get_dtype()}, which "
                        f"lemonkit does not read (it reads {', '.join(DTYPES)})"
                    )
                out[name] = (DTYPES[sl.get_dtype()], tuple(sl.get_shape()))
            return out
    except SafetensorError as e:
        raise CheckpointError(f"{path.name} is corrupt or truncated ({e})") from e


def _check_index(folder: Path, where: dict[str, Path]) -> None:
    index = folder / INDEX_FILE
    if not index.is_file():
        return
    weight_map = read_index(index)
    for name, file in weight_map.items():
        if name not in where or where[name].name != file:
            raise CheckpointError(f"{INDEX_FILE} says {name!r} is in {file}, but it is not")


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:300]
