"""Ways to damage a saved model folder, for the bad-input catalogue and the fuzzer.

Each function takes the folder (a copy: never a user's model) and changes it in place.

Example::

    truncate(Path("copy/"))   # model.safetensors cut to half its length
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"


def edit_config(folder: Path, **changes) -> None:
    """Set (or, with value None, delete) keys of config.json."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


def edit_tensors(folder: Path, edit) -> None:
    """Rewrite model.safetensors after ``edit(tensors)`` changed the dict in place."""
    tensors = load_file(folder / WEIGHTS)
    edit(tensors)
    save_file(tensors, folder / WEIGHTS, metadata={"format": "pt"})


def first_matrix(folder: Path) -> str:
    """The name of the first 2-D tensor of model.safetensors (sorted names)."""
    tensors = load_file(folder / WEIGHTS)
    return next(n for n in sorted(tensors) if tensors[n].dim() == 2)


def poison(folder: Path, value: float) -> None:
    """Put one NaN or infinity into the first matrix."""
    name = first_matrix(folder)

    def edit(t: dict) -> None:
        t[name] = t[name].clone()
        t[name].view(-1)[3] = value

    edit_tensors(folder, edit)


def truncate(folder: Path, fraction: float = 0.5) -> None:
    path = folder / WEIGHTS
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * fraction)])


def header_bytes(folder: Path, offset: int, value: bytes) -> None:
    """Overwrite bytes of model.safetensors at ``offset`` (the length prefix is 0..7)."""
    path = folder / WEIGHTS
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(value)] = value
    path.write_bytes(bytes(raw))


def single_tensor_file(folder: Path, dtype: str, count: int, itemsize: int) -> None:
    """Replace model.safetensors by a file of one tensor of a dtype lemonkit cannot read."""
    name = sorted(load_file(folder / WEIGHTS))[0]
    n = count * itemsize
    header = {name: {"dtype": dtype, "shape": [count], "data_offsets": [0, n]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    (folder / WEIGHTS).write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(n))


def to_dtype(folder: Path, dtype: torch.dtype) -> None:
    """Every matrix in ``dtype`` (float8, int8...)."""

    def edit(t: dict) -> None:
        for name, tensor in t.items():
            if tensor.dim() == 2 and dtype.is_floating_point:
                t[name] = tensor.to(dtype)
            elif tensor.dim() == 2:  # quantised to the integer range, as int8 weights are
                t[name] = (tensor * 100 / tensor.abs().max()).round().to(dtype)

    edit_tensors(folder, edit)


def write_index(folder: Path, weight_map) -> None:
    """A shard index beside the single file (``weight_map`` as given, valid or not)."""
    (folder / INDEX).write_text(json.dumps({"weight_map": weight_map}))


def index_all(folder: Path) -> dict[str, str]:
    """Every tensor of model.safetensors mapped to it, as a valid index would."""
    return {name: WEIGHTS for name in sorted(load_file(folder / WEIGHTS))}


# random damage, as the fuzzer draws it: (kind, a random source of numbers) -> change
KINDS = ("none", "config", "config_json", "index", "header", "data", "truncate")
CONFIG_VALUES = (None, -1, 0, 1, 3, 7, 100, "x", [], 1.5, True)


def damage_randomly(folder: Path, kind: str, rnd) -> str:
    """Damage ``folder`` in one way of ``kind``, drawing from ``rnd`` (``random.Random``);
    returns a short description (for the fuzzer's failure messages)."""
    if kind == "none":
        return "none"
    if kind == "config":
        config = json.loads((folder / "config.json").read_text())
        key = rnd.choice(sorted(config))
        value = rnd.choice(CONFIG_VALUES)
        edit_config(folder, **{key: value})
        return f"config {key}={value!r}"
    if kind == "config_json":
        path = folder / "config.json"
        text = path.read_text()
        path.write_text(text[: rnd.randrange(len(text))])
        return "config.json cut"
    if kind == "index":
        weight_map = index_all(folder)
        name = rnd.choice(sorted(weight_map))
        choice = rnd.choice(["drop", "rename", "shard", "valid"])
        if choice == "drop":
            weight_map.pop(name)
        elif choice == "rename":
            weight_map[name + ".x"] = weight_map.pop(name)
        elif choice == "shard":
            weight_map[name] = "model-00009-of-00009.safetensors"
        write_index(folder, weight_map)
        return f"index {choice} {name}"
    raw = bytearray((folder / WEIGHTS).read_bytes())
    header = 8 + int.from_bytes(raw[:8], "little")
    if kind == "truncate":
        cut = rnd.randrange(len(raw))
        (folder / WEIGHTS).write_bytes(bytes(raw[:cut]))
        return f"truncated at {cut} of {len(raw)}"
    lo, hi = (0, header) if kind == "header" else (header, len(raw))
    where = rnd.randrange(lo, hi)
    raw[where] ^= 1 << rnd.randrange(8)
    (folder / WEIGHTS).write_bytes(bytes(raw))
    return f"{kind} bit flipped at {where}"
