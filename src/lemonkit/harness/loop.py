"""One training run: AdamW, the LEMON schedule, optional knowledge inheritance,
periodic validation, resume from checkpoints (``checkpoints``), and DDP under ``torchrun``.

The global batch of a step is drawn whole from ``(seed, step)`` and each rank trains on
its slice, with its loss weighted by its share of the labelled positions
(``step_facts``), so a 2-process DDP run follows the 1-process run up to float
rounding, and a resumed run repeats the batches it would have seen.

Example (a few steps of a tiny model on made-up bytes):
    >>> import torch
    >>> from lemonkit.harness.data import TextData
    >>> from lemonkit.harness.models import build_model
    >>> data = TextData(torch.randint(0, 256, (5000,), dtype=torch.uint8),
    ...                 torch.randint(0, 256, (2000,), dtype=torch.uint8))
    >>> model = build_model({"arch": "gpt2", "hidden": 16, "layers": 1, "heads": 2},
    ...                     "causal_lm", seq_len=8)
    >>> cfg = RunConfig(steps=4, lr=1e-3, warmup=1, batch_size=4, seq_len=8, eval_every=2,
    ...                 eval_batches=1)
    >>> hist = train(model, "causal_lm", data, cfg).history
    >>> [h["step"] for h in hist]
    [0, 2, 4]
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

import lemonkit
from lemonkit.harness.checkpoints import find_checkpoint, load_checkpoint, save_checkpoint
from lemonkit.harness.data import IGNORE
from lemonkit.harness.models import forward_flops_per_step, train_flops_per_step

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """Hyper-parameters of one run. ``decay_steps`` (default ``steps``) is where the
    LEMON schedule reaches ``min_lr_ratio``; ``target`` stops the run early once the
    validation loss reaches it (``stop_at_target``)."""

    steps: int
    lr: float
    warmup: int
    batch_size: int
    seq_len: int = 0
    decay_steps: int | None = None
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    clip: float = 1.0
    seed: int = 0
    eval_every: int = 50
    eval_batches: int = 10
    mask_prob: float = 0.15  # masked LM: share of positions predicted
    ki: str | None = None  # "soft" | "hard" with a teacher
    ki_steps: int | None = None  # alpha decays 0.5 -> 0 over these steps (default: steps)
    target: float | None = None
    stop_at_target: bool = False  # stop once two evaluations in a row reach the target,
    min_steps: int = 0  # but not before this step

    ckpt_every: int = 0
    progress: bool = True
    label: str = "train"


@dataclass
class RunResult:
    history: list[dict] = field(default_factory=list)
    flops_per_step: float = 0.0
    stopped_early: bool = False
    world_size: int = 1
    wall_s: float = 0.0


# ---------------------------------------------------------------- distributed


def world() -> tuple[int, int]:
    """(rank, world size); initialises the gloo/nccl group under ``torchrun``."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank() if size > 1 else 0), size


def device() -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


# ---------------------------------------------------------------- batches and loss


def get_batch(task: str, data, split: str, step: int, cfg: RunConfig, seed: int):
    """The whole global batch of a step (inputs, labels)."""
    if task == "causal_lm":
        return data.batch(split, step, cfg.batch_size, cfg.seq_len, seed)
    if task == "mlm":
        return data.mlm_batch(
            split, step, cfg.batch_size, cfg.seq_len, seed, mask_prob=cfg.mask_prob
        )
    return data.batch(split, step, cfg.batch_size, seed)


def logits_of(model: torch.nn.Module, task: str, x: torch.Tensor) -> torch.Tensor:
    if task == "image":
        return model(pixel_values=x).logits  # (B, 10)
    return model(input_ids=x).logits  # (B, T, V)


class LabelledHead(torch.nn.Module):
    """A masked LM whose output head runs only at the positions that carry a label (15%).

    The loss is the full model's (the head acts on each position alone); the head's
    matmuls, about 40% of a 128-wide BERT's FLOPs at a 4k vocabulary, shrink to 15%. The
    model itself is untouched: this only calls its body (``base_model``) and ``lm_head``.

    Example (4 of 8 positions labelled):
        >>> from lemonkit.harness.models import build_model
        >>> bert = build_model({"arch": "bert", "hidden": 16, "layers": 1, "heads": 2,
        ...                     "vocab": 64}, task="mlm", seq_len=8)
        >>> x, labels = torch.randint(2, 64, (1, 8)), torch.full((1, 8), IGNORE)
        >>> labels[0, :4] = x[0, :4]
        >>> logits, kept = LabelledHead(bert)(x, labels)
        >>> tuple(logits.shape), tuple(kept.shape)
        ((4, 64), (4,))
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor):
        hidden = self.model.base_model(input_ids=input_ids).last_hidden_state  # (B, T, d)
        keep = labels != IGNORE  # (B, T)
        return self.model.lm_head(hidden[keep]), labels[keep]  # (N, V), (N,)


def network(model: torch.nn.Module, task: str) -> torch.nn.Module:
    """What a step calls: a masked LM through ``LabelledHead``, anything else as it is."""
    return LabelledHead(model) if task == "mlm" else model


def predict(net: torch.nn.Module, task: str, x: torch.Tensor, y: torch.Tensor):
    """(logits, labels) of a batch through ``network``'s output: for a masked LM, only
    the labelled positions, (N, V) and (N,); otherwise the model's logits and ``y``."""
    if task == "mlm":
        return net(x, y)
    return logits_of(net, task, x), y


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE
    )


@torch.no_grad()
def evaluate(model, task: str, data, cfg: RunConfig, dev) -> dict:
    """Mean validation loss (and accuracy for images) over a fixed set of batches."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for k in range(cfg.eval_batches):
        x, y = get_batch(task, data, "val", k, cfg, seed=0)
        x, y = x.to(dev), y.to(dev)
        logits, y = predict(network(model, task), task, x, y)
        loss_sum += cross_entropy(logits, y).item()
        if task == "image":
            correct += (logits.argmax(-1) == y).sum().item()
            count += len(y)
    model.train()
    out = {"val_loss": loss_sum / cfg.eval_batches}
    if task == "image":
        out["val_acc"] = correct / count
    return out


# ---------------------------------------------------------------- optimiser


def make_optimizer(model: torch.nn.Module, cfg: RunConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not norms, biases, embeddings' norms)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def comparable(cfg: RunConfig) -> dict:
    """The settings that must match for a resume, as JSON values (not the display ones:
    ``progress``, ``label``, ``ckpt_every``). Part of every run's cache key."""
    out = json.loads(json.dumps(asdict(cfg)))
    for key in ("progress", "label", "ckpt_every"):
        out.pop(key)
    return out


# ---------------------------------------------------------------- the run


def train(
    model: torch.nn.Module,
    task: str,
    data,
    cfg: RunConfig,
    teacher: torch.nn.Module | None = None,
    ckpt_dir: Path | None = None,
    probe: Callable[[torch.nn.Module], dict] | None = None,
) -> RunResult:
    """Train ``model`` in place for ``cfg.steps`` steps; returns the validation history
    (step, val_loss, lr, cumulative training FLOPs incl. a KI teacher's forward passes).
    ``probe(model)``: more facts for the first evaluation after the start (tied units)."""
    rank, size = world()
    dev = device()
    model.to(dev)
    if teacher is not None:
        teacher.to(dev).eval()
    if cfg.batch_size % size:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {size} processes")
    optimizer = make_optimizer(model, cfg)
    scheduler = lemonkit.get_lemon_schedule(
        optimizer, cfg.warmup, cfg.decay_steps or cfg.steps, min_lr_ratio=cfg.min_lr_ratio
    )
    step, history, elapsed = 0, [], 0.0
    resume = find_checkpoint(ckpt_dir)
    if resume is not None:
        progress = load_checkpoint(resume, model, optimizer, scheduler, comparable(cfg))
        step, history, elapsed = progress["step"], progress["history"], progress["wall_s"]
        log.info("%s: resumed at step %d", cfg.label, step)
    if size > 1:
        _agree_on_resume(step, dev)
    net = network(model, task)
    ddp = torch.nn.parallel.DistributedDataParallel(net) if size > 1 else net
    teacher_net = network(teacher, task) if teacher is not None else None
    seq = _image_tokens(model) if task == "image" else max(1, cfg.seq_len)
    tokens = cfg.batch_size * seq
    head = cfg.mask_prob if task == "mlm" else 1.0  # the share of positions the head sees
    flops = train_flops_per_step(model, tokens, seq, head_share=head)
    if teacher is not None:
        flops += forward_flops_per_step(teacher, tokens, seq, head_share=head)
    result = RunResult(history=history, flops_per_step=flops, world_size=size)
    if step == 0:
        history.append(_record(model, task, data, cfg, dev, 0, flops, scheduler))
    share = cfg.batch_size // size
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        desc=cfg.label,
        disable=not cfg.progress or rank,
        leave=False,
        dynamic_ncols=True,
    )
    start = time.perf_counter() - elapsed
    while step < cfg.steps:
        x, y = get_batch(task, data, "train", step, cfg, cfg.seed)
        mine = slice(rank * share, (rank + 1) * share)  # this rank's slice of the batch
        x, y = x[mine].to(dev), y[mine].to(dev)
        logits, labels = predict(ddp, task, x, y)  # a masked LM's: labelled positions only
        if teacher_net is not None and cfg.ki:
            with torch.no_grad():
                t_logits, _ = predict(teacher_net, task, x, y)  # the batch's y, not labels
            alpha = lemonkit.ki_alpha(step, cfg.ki_steps or cfg.steps)
            loss = lemonkit.ki_loss(logits.float(), t_logits.float(), labels, alpha, mode=cfg.ki)
        else:
            loss = cross_entropy(logits, labels)
        weight, finite = step_facts(loss, labels, size)
        if not finite:  # every rank sees the same answer, so all of them stop here
            raise FloatingPointError(
                f"{cfg.label}: loss is {loss.item()} at step {step} (on some rank)"
            )
        (loss * weight).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            rec = _record(model, task, data, cfg, dev, step, flops, scheduler)
            if probe is not None and len(history) == 1:  # the first evaluation interval
                rec.update(probe(model))
            history.append(rec)
            bar.set_postfix(val=f"{rec['val_loss']:.4f}")
            if cfg.stop_at_target and step >= cfg.min_steps and _confirmed(history, cfg.target):
                result.stopped_early = step < cfg.steps
                break
        if ckpt_dir is not None and cfg.ckpt_every and step % cfg.ckpt_every == 0 and rank == 0:
            progress = {
                "step": step,
                "history": history,
                "config": comparable(cfg),
                "wall_s": time.perf_counter() - start,
            }
            save_checkpoint(ckpt_dir, model, optimizer, scheduler, progress)
    bar.close()
    result.wall_s = time.perf_counter() - start
    return result


def _confirmed(history: list[dict], target: float | None) -> bool:
    """The last two evaluations are at or below the target (one noisy dip is not a hit)."""
    return (
        target is not None
        and len(history) >= 2
        and all(h["val_loss"] <= target for h in history[-2:])
    )


def _agree_on_resume(step: int, dev: torch.device) -> None:
    """Every rank must resume from the same step (rank 0 writes the checkpoints; a rank on
    another machine without a shared filesystem would not see them and start over)."""
    steps = torch.tensor([step, -step], dtype=torch.float64, device=dev)
    dist.all_reduce(steps, op=dist.ReduceOp.MAX)
    highest, lowest = int(steps[0]), int(-steps[1])
    if highest != lowest:
        raise RuntimeError(
            f"ranks would resume from different steps ({lowest} to {highest}): every rank "
            "must see rank 0's checkpoints; put --out on a filesystem all machines share"
        )


def step_facts(loss: torch.Tensor, labels: torch.Tensor, size: int) -> tuple[float, bool]:
    """(this rank's loss weight, whether the loss is finite on every rank): one all-reduce.

    The weight scales this rank's mean loss so that DDP's gradient average equals the
    gradient of the mean over the whole global batch, also when ranks hold different
    numbers of labelled positions (masked LM): local count x world size / global count.
    A NaN on one rank must stop every rank: a rank that raised alone would leave the
    others waiting forever in the next collective.

    Example:
        >>> step_facts(torch.tensor(float("nan")), torch.tensor([[1, 2]]), 1)
        (1.0, False)
    """
    bad = 0.0 if math.isfinite(loss.item()) else 1.0
    if size == 1:
        return 1.0, bad == 0.0
    count = float((labels != IGNORE).sum())
    # on the labels' device: NCCL reduces GPU tensors only
    facts = torch.tensor([count, bad], dtype=torch.float64, device=labels.device)
    dist.all_reduce(facts)
    return count * size / max(facts[0].item(), 1.0), facts[1].item() == 0.0


def _image_tokens(model) -> int:
    c = model.config
    return (c.image_size // c.patch_size) ** 2 + 1


def _record(model, task, data, cfg, dev, step, flops, scheduler) -> dict:
    rec = {"step": step, "flops": step * flops, "lr": scheduler.get_last_lr()[0]}
    rec.update(evaluate(model, task, data, cfg, dev))
    return rec


def config_dict(cfg: RunConfig) -> dict:
    return asdict(cfg)
