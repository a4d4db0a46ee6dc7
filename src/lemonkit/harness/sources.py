r"""A config's ``[data]`` table -> the data an experiment trains on (``load_source``).

A data-source *kind* is a function ``load(root, **options) -> TextData | ImageData``,
registered under its name with its options' defaults (``source_kind``). A table names
the ``kind``, its ``root`` (a folder or a file) and the kind's options; two more keys
apply to every kind:

- ``env``: an environment variable that, when set, replaces ``root`` (a copy of the data
  carried to a machine without the package, e.g. a GPU box);
- ``package``: the Debian package that installs ``root``, named when ``root`` is missing.

Kinds:

- ``text_files``: every file matching ``glob`` (default ``**/*.txt``) under ``root``, in
  sorted path order, as bytes, each followed by a blank line; file k goes to validation
  when ``k % val_every == 0`` (default 20).
- ``idx_images``: the gzipped IDX files of (Fashion-)MNIST, ``train-*`` and ``t10k-*``;
  pixels scaled to [0, 1], then ``(x - mean) / std`` (defaults: Fashion-MNIST's), the
  first ``val_size`` test images for validation (default: all).

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for k in range(4):
    ...         _ = (Path(tmp) / f"{k}.txt").write_bytes(b"doc%d" % k)
    ...     data = load_source({"kind": "text_files", "root": tmp, "val_every": 2})
    >>> bytes(data.val.tolist()), len(data.train)
    (b'doc0\n\ndoc2\n\n', 12)
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from lemonkit.harness.data import ImageData, TextData
from lemonkit.harness.errors import DataMissingError, HarnessError

COMMON_KEYS = ("kind", "root", "env", "package")


@dataclass(frozen=True)
class SourceKind:
    """How to load one kind of data source: ``load(root, **options)``, and the options
    it takes with their defaults."""

    load: Callable[..., TextData | ImageData]
    defaults: dict


KINDS: dict[str, SourceKind] = {}


def source_kind(name: str, **defaults) -> Callable:
    """Register ``load(root, **options)`` as the data-source kind ``name``; ``defaults``
    names every option it takes (a ``[data]`` key outside them is refused).

    Example:
        >>> @source_kind("bytes_file", val_bytes=1000)
        ... def load_bytes_file(root: Path, val_bytes: int) -> TextData:
        ...     raw = torch.frombuffer(bytearray(root.read_bytes()), dtype=torch.uint8)
        ...     return TextData(raw[val_bytes:], raw[:val_bytes])
        >>> KINDS["bytes_file"].defaults
        {'val_bytes': 1000}
        >>> del KINDS["bytes_file"]
    """

    def register(load: Callable[..., TextData | ImageData]) -> Callable:
        KINDS[name] = SourceKind(load, defaults)
        return load

    return register


def load_source(spec: dict) -> TextData | ImageData:
    """The data a ``[data]`` table names (see the module docstring for the keys)."""
    name = spec.get("kind")
    if name not in KINDS:
        raise HarnessError(f"[data]: unknown kind {name!r} (known: {', '.join(sorted(KINDS))})")
    kind = KINDS[name]
    unknown = sorted(set(spec) - set(COMMON_KEYS) - set(kind.defaults))
    if unknown:
        raise HarnessError(
            f"[data] of kind {name!r}: unknown keys {unknown} "
            f"(it takes {sorted(kind.defaults)} besides {list(COMMON_KEYS)})"
        )
    options = {key: spec.get(key, default) for key, default in kind.defaults.items()}
    return kind.load(source_root(spec), **options)


def source_root(spec: dict) -> Path:
    """The folder (or file) of a source: ``$env`` when that is set, else ``root``; raises
    ``DataMissingError`` naming the package and the variable that would provide it."""
    env = spec.get("env")
    if env and os.environ.get(env):
        path = Path(os.environ[env])
        if not path.exists():
            default = f" to read {spec['root']}" if "root" in spec else ""
            raise DataMissingError(
                f"{path} (from ${env}) not found: point {env} at a copy of the data, "
                f"or unset it{default}"
            )
        return path
    if "root" not in spec:
        raise HarnessError(f"[data] of kind {spec.get('kind')!r} names no root")
    path = Path(spec["root"])
    if not path.exists():
        raise DataMissingError(f"{path} not found" + _provided_by(spec))
    return path


def _provided_by(spec: dict) -> str:
    """``: install the Debian package ..., or set ENV to a copy of the data``, or ``""``."""
    hints = []
    if spec.get("package"):
        package = spec["package"]
        hints.append(
            f"install the Debian package {package} "
            f"(`make data`, or `sudo apt-get install {package}`)"
        )
    if spec.get("env"):
        hints.append(f"set {spec['env']} to a copy of the data")
    return ": " + ", or ".join(hints) if hints else ""


# ---------------------------------------------------------------- the kinds


@source_kind("text_files", glob="**/*.txt", val_every=20)
def load_text_files(root: Path, glob: str, val_every: int) -> TextData:
    """Every file matching ``glob`` under ``root``, sorted by path, as one byte stream per
    split; file k goes to validation when ``k % val_every == 0``."""
    files = sorted(root.glob(glob))
    if not files:
        raise HarnessError(f"no file under {root} matches {glob!r}")
    train, val = [], []
    for k, f in enumerate(files):
        (val if k % val_every == 0 else train).append(f.read_bytes() + b"\n\n")
    return TextData(_as_bytes(train), _as_bytes(val))


def _as_bytes(parts: list[bytes]) -> torch.Tensor:
    return torch.frombuffer(bytearray(b"".join(parts)), dtype=torch.uint8)


@source_kind("idx_images", val_size=None, mean=0.286, std=0.353)
def load_idx_images(root: Path, val_size: int | None, mean: float, std: float) -> ImageData:
    """The training images and (the first ``val_size`` of) the test images, normalised."""

    def images(name: str) -> torch.Tensor:
        x = read_idx(root / f"{name}-images-idx3-ubyte.gz").float().div_(255.0)
        return ((x - mean) / std).unsqueeze(1)  # (N, 1, H, W)

    val_x, val_y = images("t10k"), read_idx(root / "t10k-labels-idx1-ubyte.gz").long()
    if val_size is not None:
        val_x, val_y = val_x[:val_size], val_y[:val_size]
    train_y = read_idx(root / "train-labels-idx1-ubyte.gz").long()
    return ImageData(images("train"), train_y, val_x, val_y)


def read_idx(path: Path) -> torch.Tensor:
    """A gzipped IDX file (the MNIST format) as a uint8 tensor of its stored shape."""
    with gzip.open(path) as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8).reshape(dims)
