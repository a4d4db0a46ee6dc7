"""``LemonTrainer``: the Hugging Face ``Trainer`` with the LEMON learning-rate schedule.

The trainer builds the schedule itself, in ``create_scheduler``, the hook that every
``Trainer`` code path calls once the optimizer exists (plain, DDP, FSDP2, DeepSpeed without
a scheduler in its config). Passing ``optimizers=(opt, scheduler)`` is not an option under
FSDP (``Trainer`` refuses it), hence the subclass.

What comes from ``TrainingArguments``, exactly as from scratch: the peak learning rate
(``learning_rate``), the warm-up (``warmup_steps``, an int or a fraction of the total, read
with ``args.get_warmup_steps``), the total (``max_steps`` or epochs). What ``LemonArguments``
adds: where the decay ends (earlier than the total: the LEMON recipe), the floor, the shape.
``lr_scheduler_type`` and ``lr_scheduler_kwargs`` are ignored (a warning says so if set).

The model is not touched: no wrapper, no renamed module; checkpoints are the model's own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from transformers import Trainer

from lemonkit.recipe.schedule import SHAPES, get_lemon_schedule

log = logging.getLogger(__name__)


@dataclass
class LemonArguments:
    """The LEMON schedule's settings; an ``HfArgumentParser`` dataclass (``--lemon_*``).

    The decay ends at ``lemon_decay_steps`` if it is set (it wins over the ratio), else at
    ``round(lemon_decay_ratio x total steps)``; with neither, at the total (no shortening:
    a cosine/linear decay to the floor). Steps count from 0 and include the warm-up, as
    ``get_lemon_schedule``'s ``num_training_steps``. After the decay end the LR stays at
    ``lemon_min_lr_ratio x learning_rate``. The paper ends the decay at 0.43x (ViT, 130 of
    300 epochs) to 0.6-0.75x (BERT, 132k-165k of 220k steps) of the from-scratch total.
    """

    lemon_decay_steps: int | None = field(
        default=None,
        metadata={"help": "Step at which the decay ends (includes warm-up); wins over the ratio."},
    )
    lemon_decay_ratio: float | None = field(
        default=None,
        metadata={"help": "Decay end as a fraction (0, 1] of the total steps (default 1)."},
    )
    lemon_min_lr_ratio: float = field(
        default=0.1, metadata={"help": "Floor of the LR, as a fraction of learning_rate."}
    )
    lemon_shape: str = field(default="cosine", metadata={"help": f"Decay shape: {SHAPES}."})

    def __post_init__(self) -> None:
        if self.lemon_decay_steps is not None and self.lemon_decay_steps < 1:
            raise ValueError(f"lemon_decay_steps must be >= 1, got {self.lemon_decay_steps}")
        if self.lemon_decay_ratio is not None and not 0 < self.lemon_decay_ratio <= 1:
            raise ValueError(f"lemon_decay_ratio must be in (0, 1], got {self.lemon_decay_ratio}")
        if not 0 <= self.lemon_min_lr_ratio <= 1:
            raise ValueError(f"lemon_min_lr_ratio must be in [0, 1], got {self.lemon_min_lr_ratio}")
        if self.lemon_shape not in SHAPES:
            raise ValueError(f"lemon_shape must be one of {SHAPES}, got {self.lemon_shape!r}")

    def decay_end(self, num_training_steps: int) -> int:
        """The step at which the decay ends, for a run of ``num_training_steps``."""
        if self.lemon_decay_steps is not None:
            return self.lemon_decay_steps
        ratio = 1.0 if self.lemon_decay_ratio is None else self.lemon_decay_ratio
        return max(1, round(ratio * num_training_steps))


class LemonTrainer(Trainer):
    """``transformers.Trainer`` whose scheduler is ``get_lemon_schedule``.

    ``LemonTrainer(model=..., args=TrainingArguments(...), train_dataset=...,
    lemon_args=LemonArguments(lemon_decay_ratio=0.6))``; every other argument is the
    ``Trainer``'s. Passing a scheduler in ``optimizers=`` is refused (it would replace the
    LEMON schedule); an optimizer alone is accepted where ``Trainer`` accepts it.
    """

    def __init__(self, *args, lemon_args: LemonArguments | None = None, **kwargs) -> None:
        optimizers = kwargs.get("optimizers")
        if optimizers is not None and len(optimizers) > 1 and optimizers[1] is not None:
            raise ValueError(
                "LemonTrainer builds the LEMON scheduler itself; pass optimizers=(optimizer, None)"
            )
        self.lemon_args = LemonArguments() if lemon_args is None else lemon_args
        super().__init__(*args, **kwargs)
        if self.args.lr_scheduler_type != "linear" or self.args.lr_scheduler_kwargs:
            log.warning(
                "LemonTrainer ignores lr_scheduler_type=%s and lr_scheduler_kwargs=%s; "
                "the schedule is set by lemon_args",
                self.args.lr_scheduler_type,
                self.args.lr_scheduler_kwargs,
            )

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """Build the LEMON schedule (once per ``train()``, like the base class)."""
        if self.lr_scheduler is None:
            optimizer = self.optimizer if optimizer is None else optimizer
            warmup = self.args.get_warmup_steps(num_training_steps)
            decay_end = self.lemon_args.decay_end(num_training_steps)
            if decay_end < warmup:
                raise ValueError(
                    f"the LEMON decay ends at step {decay_end}, before the warm-up ends "
                    f"({warmup} steps); raise lemon_decay_steps/lemon_decay_ratio or lower "
                    "warmup_steps"
                )
            self.lr_scheduler = get_lemon_schedule(
                optimizer,
                num_warmup_steps=warmup,
                num_training_steps=decay_end,
                min_lr_ratio=self.lemon_args.lemon_min_lr_ratio,
                shape=self.lemon_args.lemon_shape,
            )
            # as the base class: lets a second train() call rebuild it for its own step count
            self._created_lr_scheduler = True
        return self.lr_scheduler
