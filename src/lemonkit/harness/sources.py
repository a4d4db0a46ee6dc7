r"""A config's ``[data]`` table -> the data an experiment trains on (``load_source``).

A data-source *kind* is a function ``load(root, **options) -> TextData | ImageData``,
registered under its name with its options' defaults (``source_kind``). Text is read as
bytes, each document followed by a blank line (an experiment's ``[tokenizer]`` encodes it
afterwards, ``tokenize``). A table names
the ``kind``, its ``root`` (a folder or a file) and the kind's options; two more keys
apply to every kind:

- ``env``: an environment variable that, when set, replaces ``root`` (a copy of the data
  carried to a machine without the package, e.g. a GPU box);
- ``package``: the Debian package that installs ``root``, named when ``root`` is missing.

Kinds:

- ``text_files``: every file matching ``glob`` (default ``**/*.txt``) under ``root``, in
  sorted path order, one document each; file k goes to validation when
  ``k % val_every == 0`` (default 20).
- ``text_file``: one file, its blank-line separated paragraphs the documents; paragraph
  k goes to validation when ``k % val_every == 0`` (default 20).
- ``datasets_on_disk``: a ``datasets`` dataset saved with ``save_to_disk`` (needs the
  ``datasets`` package): the ``column`` (default ``text``) of each row a document; a
  ``DatasetDict``'s ``train`` and ``validation`` (or ``test``) splits, else row k to
  validation when ``k % val_every == 0``.
- ``image_folder``: ``root/<class>/<image>`` (png, jpg...: the classes are the sorted
  subfolder names), resized to ``image_size`` (default 28) with ``channels`` 1 or 3
  (default 1), normalised by the training images' mean and std; image k of a class goes
  to validation when ``k % val_every == 0`` (default 10). Needs Pillow.
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
    """Every file matching ``glob`` under ``root``, sorted by path, one document each;
    file k goes to validation when ``k % val_every == 0``."""
    if not root.is_dir():
        raise HarnessError(f"{root} is not a folder (kind text_file reads one file)")
    files = sorted(root.glob(glob))
    if not files:
        raise HarnessError(f"no file under {root} matches {glob!r}")
    return _split([f.read_bytes() for f in files], val_every)


@source_kind("text_file", val_every=20)
def load_text_file(root: Path, val_every: int) -> TextData:
    """One file's blank-line separated paragraphs; paragraph k to validation when
    ``k % val_every == 0``."""
    if not root.is_file():
        raise HarnessError(f"{root} is not a file (kind text_files reads a folder)")
    paragraphs = [p.strip() for p in root.read_bytes().replace(b"\r\n", b"\n").split(b"\n\n")]
    return _split([p for p in paragraphs if p], val_every)


@source_kind("datasets_on_disk", column="text", val_every=20)
def load_datasets_on_disk(root: Path, column: str, val_every: int) -> TextData:
    """A ``datasets`` dataset saved to disk: its ``column`` as documents."""
    try:
        import datasets
    except ImportError as e:
        raise HarnessError(
            "kind datasets_on_disk needs the datasets package (pip install datasets)"
        ) from e
    loaded = datasets.load_from_disk(str(root))
    if isinstance(loaded, datasets.DatasetDict):
        val_split = next((s for s in ("validation", "test") if s in loaded), None)
        if "train" in loaded and val_split:
            train, val = (_column(loaded[s], column, root) for s in ("train", val_split))
            return TextData(_as_bytes(train), _as_bytes(val))
        loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    return _split(_column(loaded, column, root), val_every)


def _column(dataset, column: str, root: Path) -> list[bytes]:
    if column not in dataset.column_names:
        raise HarnessError(f"{root}: no column {column!r} (has {dataset.column_names})")
    return [str(text).encode() for text in dataset[column]]


def _split(docs: list[bytes], val_every: int) -> TextData:
    """Document k to validation when ``k % val_every == 0``, else to training."""
    val = [d for k, d in enumerate(docs) if k % val_every == 0]
    train = [d for k, d in enumerate(docs) if k % val_every]
    if not train or not val:
        raise HarnessError(f"{len(docs)} documents: too few for a training and a validation split")
    return TextData(_as_bytes(train), _as_bytes(val))


def _as_bytes(docs: list[bytes]) -> torch.Tensor:
    """The documents as one byte stream, each followed by a blank line."""
    return torch.frombuffer(bytearray(b"".join(d + b"\n\n" for d in docs)), dtype=torch.uint8)


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


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@source_kind("image_folder", image_size=28, channels=1, val_every=10)
def load_image_folder(root: Path, image_size: int, channels: int, val_every: int) -> ImageData:
    """``root/<class>/<image>``: classes by sorted folder name; every image resized to
    ``image_size`` square with ``channels`` (1: grey, 3: RGB); image k of each class to
    validation when ``k % val_every == 0``; normalised by the training mean and std."""
    if channels not in (1, 3):
        raise HarnessError(f"[data] image_folder: channels must be 1 or 3, not {channels}")
    classes = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if len(classes) < 2:
        raise HarnessError(f"{root} needs a subfolder per class (at least two)")
    split: dict[str, tuple[list, list]] = {"train": ([], []), "val": ([], [])}
    for label, folder in enumerate(classes):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for k, file in enumerate(files):
            xs, ys = split["val" if k % val_every == 0 else "train"]
            xs.append(_read_image(file, image_size, channels))
            ys.append(label)
    if not split["train"][0] or not split["val"][0]:
        raise HarnessError(f"{root}: too few images for a training and a validation split")
    (train_x, train_y), (val_x, val_y) = (
        (torch.stack(xs), torch.tensor(ys)) for xs, ys in split.values()
    )
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    norm = (train_x - mean) / std, (val_x - mean) / std
    return ImageData(norm[0], train_y, norm[1], val_y, num_labels=len(classes))


def _read_image(path: Path, size: int, channels: int) -> torch.Tensor:
    """(channels, size, size) floats in [0, 1]."""
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - matplotlib installs Pillow
        raise HarnessError("kind image_folder needs Pillow (pip install pillow)") from e
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB").resize((size, size))
            raw = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    except OSError as e:
        raise HarnessError(f"{path}: not a readable image ({e})") from e
    return raw.reshape(size, size, channels).permute(2, 0, 1).float() / 255.0
