"""The LEMON training recipe's learning-rate schedule (paper section 5).

An expanded model is trained with the *same peak learning rate* as from scratch, the same
warm-up, but a schedule that decays faster: the decay ends after ``num_training_steps``,
a fraction of the from-scratch total (the paper: ViT 130 of 300 epochs, BERT 132k-165k of
220k steps). After that the rate stays at ``min_lr_ratio`` x peak.

Shaped like ``transformers``' schedulers (``get_cosine_schedule_with_warmup``): a
``LambdaLR`` over the optimizer's learning rates, picklable (no closures), usable in a
plain loop or from a ``Trainer.create_scheduler`` override.

Example:
    >>> import torch
    >>> opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    >>> sched = get_lemon_schedule(opt, num_warmup_steps=10, num_training_steps=100)
    >>> [round(lemon_lr_factor(s, 10, 100, 0.1, "cosine"), 3) for s in (0, 5, 10, 55, 100, 200)]
    [0.0, 0.5, 1.0, 0.55, 0.1, 0.1]
"""

from __future__ import annotations

import functools
import math

import torch

SHAPES = ("cosine", "linear")


def lemon_lr_factor(
    step: int, num_warmup_steps: int, num_training_steps: int, min_lr_ratio: float, shape: str
) -> float:
    """Multiplier of the peak learning rate at ``step``."""
    if step < num_warmup_steps:
        return step / max(1, num_warmup_steps)
    decay_steps = max(1, num_training_steps - num_warmup_steps)
    progress = min(1.0, (step - num_warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    decay = cosine if shape == "cosine" else 1.0 - progress
    return min_lr_ratio + (1.0 - min_lr_ratio) * decay


def get_lemon_schedule(
    optimizer: torch.optim.Optimizer,
    num_warmup_steps: int,
    num_training_steps: int,
    *,
    min_lr_ratio: float = 0.1,
    shape: str = "cosine",
    last_epoch: int = -1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm up to the optimizer's (from-scratch) peak LR, then decay to ``min_lr_ratio``
    of it by ``num_training_steps`` (the shortened total), and stay there."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    if not 0 <= num_warmup_steps <= num_training_steps:
        raise ValueError("need 0 <= num_warmup_steps <= num_training_steps")
    if not 0 <= min_lr_ratio <= 1:
        raise ValueError("min_lr_ratio must be in [0, 1]")
    factor = functools.partial(
        lemon_lr_factor,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        min_lr_ratio=min_lr_ratio,
        shape=shape,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch)
