"""Real data from Debian packages, tokenised locally, batches derived from (seed, step).

Text: the reST sources of the Python 3.11 docs (``apt-get install python3.11-doc``), as
bytes (vocabulary 256, plus a mask and a pad id for MLM). Files are split 1 in 20 to
validation. Images: Fashion-MNIST (``apt-get install dataset-fashion-mnist``).

A batch is a pure function of ``(seed, step, rank)``, so a resumed run, or a run under
``torchrun``, sees exactly the batches it would have seen.

Example:
    >>> import torch
    >>> data = TextData(torch.arange(1000, dtype=torch.uint8), torch.arange(300, dtype=torch.uint8))
    >>> x, y = data.batch("train", step=3, batch_size=2, seq_len=8, seed=0)
    >>> x.shape, bool((y[:, :-1] == x[:, 1:]).all())
    (torch.Size([2, 8]), True)
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import torch

# where the Debian packages put them; LEMONKIT_DOCS / LEMONKIT_FASHION_MNIST point elsewhere
# (a copy carried to a machine without the packages, e.g. a GPU box)
DOCS = Path(os.environ.get("LEMONKIT_DOCS", "/usr/share/doc/python3.11/html/_sources"))
FASHION_MNIST = Path(os.environ.get("LEMONKIT_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
BYTE_VOCAB = 256
MASK_ID = 256
PAD_ID = 257
TEXT_VOCAB = 258
IGNORE = -100


class DataMissingError(RuntimeError):
    """The Debian package holding the data is not installed."""


def _need(path: Path, package: str) -> None:
    if not path.exists():
        raise DataMissingError(
            f"{path} not found: install the Debian package {package} "
            f"(`make data`, or `sudo apt-get install {package}`)"
        )


def _generator(seed: int, step: int, rank: int, split: str) -> torch.Generator:
    key = (seed * 1_000_003 + step) * 97 + rank * 7 + (0 if split == "train" else 1)
    return torch.Generator().manual_seed(key % (2**63))


@dataclass
class TextData:
    """Byte-level text corpus; ``batch`` draws random windows (next-byte targets)."""

    train: torch.Tensor  # (N_train,) uint8
    val: torch.Tensor  # (N_val,) uint8

    def batch(
        self, split: str, step: int, batch_size: int, seq_len: int, seed: int, rank: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y), both (B, T) int64, y = x shifted by one byte."""
        data = self.train if split == "train" else self.val
        g = _generator(seed, step, rank, split)
        starts = torch.randint(0, len(data) - seq_len - 1, (batch_size,), generator=g)
        idx = starts[:, None] + torch.arange(seq_len + 1)[None, :]
        window = data[idx].long()  # (B, T+1)
        return window[:, :-1], window[:, 1:]

    def mlm_batch(
        self,
        split: str,
        step: int,
        batch_size: int,
        seq_len: int,
        seed: int,
        rank: int = 0,
        mask_prob: float = 0.15,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """BERT masking: 15% of positions predicted; of them 80% [MASK], 10% random, 10% kept."""
        x, _ = self.batch(split, step, batch_size, seq_len, seed, rank)
        g = _generator(seed + 12345, step, rank, split)
        chosen = torch.rand(x.shape, generator=g) < mask_prob
        labels = torch.where(chosen, x, torch.full_like(x, IGNORE))
        roll = torch.rand(x.shape, generator=g)
        random_bytes = torch.randint(0, BYTE_VOCAB - 1, x.shape, generator=g)
        random_bytes += random_bytes >= 1  # never byte 1: the models' padding id
        x = torch.where(chosen & (roll < 0.8), torch.full_like(x, MASK_ID), x)
        x = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_bytes, x)
        return x, labels


def load_text(root: Path = DOCS, val_every: int = 20) -> TextData:
    """Every ``*.rst.txt`` under ``root`` in sorted order; file k goes to validation when
    ``k % val_every == 0``."""
    _need(root, "python3.11-doc")
    files = sorted(root.rglob("*.txt"))
    train, val = [], []
    for k, f in enumerate(files):
        (val if k % val_every == 0 else train).append(f.read_bytes() + b"\n\n")
    as_tensor = lambda parts: torch.frombuffer(bytearray(b"".join(parts)), dtype=torch.uint8)  # noqa: E731
    return TextData(as_tensor(train), as_tensor(val))


def _idx(path: Path) -> torch.Tensor:
    with gzip.open(path) as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8).reshape(dims)


@dataclass
class ImageData:
    """Fashion-MNIST as float tensors (N, 1, 28, 28) normalised, labels (N,)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor

    def batch(
        self, split: str, step: int, batch_size: int, seed: int, rank: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = (self.train_x, self.train_y) if split == "train" else (self.val_x, self.val_y)
        if split == "train":
            g = _generator(seed, step, rank, split)
            idx = torch.randint(0, len(x), (batch_size,), generator=g)
        else:  # validation: consecutive slices, every image once
            idx = torch.arange(step * batch_size, (step + 1) * batch_size) % len(x)
        return x[idx], y[idx]


def load_fashion_mnist(root: Path = FASHION_MNIST, val_size: int | None = None) -> ImageData:
    """The 60k training and (the first ``val_size`` of) the 10k test images."""
    _need(root, "dataset-fashion-mnist")

    def images(name: str) -> torch.Tensor:
        x = _idx(root / f"{name}-images-idx3-ubyte.gz").float().div_(255.0)
        return ((x - 0.286) / 0.353).unsqueeze(1)  # (N, 1, 28, 28)

    val_x, val_y = images("t10k"), _idx(root / "t10k-labels-idx1-ubyte.gz").long()
    if val_size is not None:
        val_x, val_y = val_x[:val_size], val_y[:val_size]
    return ImageData(
        images("train"), _idx(root / "train-labels-idx1-ubyte.gz").long(), val_x, val_y
    )
