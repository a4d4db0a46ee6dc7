"""Writing safetensors shards as tensors arrive, one tensor in memory at a time.

The shard layout is planned before any weight is computed (names, dtypes and shapes
come from the plan), so each shard's header is written first and each tensor's bytes are
appended as soon as it is expanded. Shard names and the index follow Hugging Face
(``model.safetensors`` or ``model-00001-of-00003.safetensors`` plus
``model.safetensors.index.json``), and the files are byte-for-byte deterministic.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> entries = [("a", torch.float32, (2, 2)), ("b", torch.float32, (3,))]
    >>> d = Path(tempfile.mkdtemp())
    >>> write_shards(d, plan_shards(entries, 10**9), iter([torch.ones(2, 2), torch.zeros(3)]))
    ['model.safetensors']
"""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch

from lemonkit.io.checkpoint import DTYPES, INDEX_FILE, SINGLE_FILE

Entry = tuple[str, torch.dtype, tuple[int, ...]]
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def nbytes(entry: Entry) -> int:
    _, dtype, shape = entry
    n = 1
    for d in shape:
        n *= d
    return n * torch.empty((), dtype=dtype).element_size()


def parse_size(text: str | int) -> int:
    """``"5GB"`` -> 5_000_000_000 (Hugging Face's decimal units; also K/M/G and KiB/MiB/GiB).

    >>> parse_size("500M"), parse_size("2GiB")
    (500000000, 2147483648)
    """
    if isinstance(text, int):
        return text
    units = {"": 1, "B": 1}
    for i, prefix in enumerate("KMGT", start=1):
        units.update(
            {prefix: 10 ** (3 * i), prefix + "B": 10 ** (3 * i), prefix + "IB": 2 ** (10 * i)}
        )
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Z]*)\s*", text.upper())
    if not m or m.group(2) not in units:
        raise ValueError(f"cannot read size {text!r}; use e.g. 500MB, 5GB or 2GiB")
    return int(float(m.group(1)) * units[m.group(2)])


def plan_shards(entries: list[Entry], max_shard_bytes: int) -> list[list[Entry]]:
    """Greedy split in order; a tensor larger than the limit gets a shard of its own."""
    shards: list[list[Entry]] = [[]]
    size = 0
    for e in entries:
        if shards[-1] and size + nbytes(e) > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(e)
        size += nbytes(e)
    return shards


def shard_names(n: int) -> list[str]:
    if n == 1:
        return [SINGLE_FILE]
    return [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


def write_shards(
    folder: Path,
    shards: list[list[Entry]],
    tensors: Iterator[torch.Tensor | Iterable[torch.Tensor]],
    on_tensor: Callable[[int], None] | None = None,
    on_shard: Callable[[Path, list[str]], None] | None = None,
) -> list[str]:
    """Write the planned shards, consuming ``tensors`` in the planned order;
    ``on_shard(path, names)`` once a shard's file is complete and closed.

    Each item is a tensor or an iterable of its chunks along axis 0 (written as they
    come, so a tensor never needs to be whole in memory).
    """
    names = shard_names(len(shards))
    for file, entries in zip(names, shards, strict=True):
        with open(folder / file, "wb") as f, BackgroundWriter(f) as out:
            out.write(_header(entries))
            for entry in entries:
                item = next(tensors)
                written = 0
                for chunk in [item] if isinstance(item, torch.Tensor) else item:
                    _check_chunk(entry, chunk)
                    out.write(chunk.contiguous().reshape(-1).view(torch.uint8).numpy())
                    written += chunk.numel() * chunk.element_size()
                if written != nbytes(entry):
                    raise AssertionError(f"{entry[0]}: wrote {written} bytes of {nbytes(entry)}")
                item = chunk = None  # queued for the file: not held while the next is computed
                if on_tensor:
                    on_tensor(nbytes(entry))
        if on_shard:
            on_shard(folder / file, [e[0] for e in entries])
    if len(shards) > 1:
        weight_map = {e[0]: file for file, es in zip(names, shards, strict=True) for e in es}
        total = sum(nbytes(e) for es in shards for e in es)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return names


class BackgroundWriter:
    """Writes buffers to a file from a thread, so computing the next chunk overlaps the
    write of the previous one; at most ``depth`` buffers wait (bounded memory)."""

    def __init__(self, f, depth: int = 4):
        self._f = f
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def write(self, buffer) -> None:
        if self._error:
            raise self._error
        self._queue.put(buffer)

    def _run(self) -> None:
        while (buffer := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._f.write(memoryview(buffer))
                except BaseException as e:  # reported to the producer
                    self._error = e

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error and exc[0] is None:
            raise self._error


def _header(entries: list[Entry]) -> bytes:
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for e in entries:
        name, dtype, shape = e
        header[name] = {
            "dtype": _DTYPE_NAMES[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes(e)],
        }
        offset += nbytes(e)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # align the data to 8 bytes, as safetensors does
    return len(raw).to_bytes(8, "little") + raw


def _check_chunk(entry: Entry, chunk: torch.Tensor) -> None:
    name, dtype, shape = entry
    if chunk.dtype != dtype or tuple(chunk.shape[1:]) != tuple(shape[1:]):
        raise AssertionError(
            f"{name}: planned {dtype} {tuple(shape)}, "
            f"got a chunk {chunk.dtype} {tuple(chunk.shape)}"
        )
