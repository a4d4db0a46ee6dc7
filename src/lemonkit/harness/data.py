"""The two kinds of data an experiment trains on, and their batches.

``TextData``: bytes (vocabulary 256, plus a mask and a pad id for masked LM), random
windows with next-byte targets, or BERT masking. ``ImageData``: normalised images and
labels. Where the data comes from (files on disk, named in a config's ``[data]`` table) is
``sources``.

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

from dataclasses import dataclass

import torch

BYTE_VOCAB = 256
MASK_ID = 256
PAD_ID = 257
TEXT_VOCAB = 258
IGNORE = -100


def _generator(seed: int, step: int, rank: int, split: str) -> torch.Generator:
    key = (seed * 1_000_003 + step) * 97 + rank * 7 + (0 if split == "train" else 1)
    return torch.Generator().manual_seed(key % (2**63))


@dataclass
class TextData:
    """Byte-level text corpus; ``batch`` draws random windows (next-byte targets)."""

    train: torch.Tensor  # (N_train,) uint8 (bytes) or int16 (subword ids, ``tokenize``)
    val: torch.Tensor  # (N_val,) the same
    mask_id: int = MASK_ID  # masked LM's [MASK]; ids below it are tokens (1: padding, unused)

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
        random_bytes = torch.randint(0, self.mask_id - 1, x.shape, generator=g)
        random_bytes += random_bytes >= 1  # never id 1: the models' padding id
        x = torch.where(chosen & (roll < 0.8), torch.full_like(x, self.mask_id), x)
        x = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_bytes, x)
        return x, labels


@dataclass
class ImageData:
    """Images as float tensors (N, C, H, W), normalised; labels (N,) int64."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_labels: int = 10

    def geometry(self) -> dict:
        """What a ViT needs to take these images, as model-spec keys (``models``)."""
        _, channels, size, _ = self.train_x.shape
        return {"image_size": size, "channels": channels, "labels": self.num_labels}

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
