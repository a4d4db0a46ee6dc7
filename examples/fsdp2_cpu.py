"""FSDP2 (``torch.distributed.fsdp.fully_shard``) on an expanded model, on CPU with gloo.

A random LLaMA is grown by ``lemonkit.expand`` (64 -> 128 wide, 2 -> 4 blocks), each
block and then the whole model is wrapped with ``fully_shard`` on a 1-D CPU device mesh,
and AdamW with the LEMON schedule (``get_lemon_schedule``) trains it for a few steps.
Each rank takes its half of the same global batch, so the losses must equal those of the
unsharded model trained in one process on the whole batch (``tests/test_fsdp.py``)::

    torchrun --standalone --nproc_per_node 2 examples/fsdp2_cpu.py fsdp.json  # sharded
    python examples/fsdp2_cpu.py one.json                                     # reference

Each writes ``{"world", "losses", "lrs", "local_fraction"}`` (rank 0 only under
torchrun); ``local_fraction`` is the share of the parameters a rank holds (1/world when
sharded).
"""

from __future__ import annotations

import json
import os
import sys

import torch

import lemonkit
from lemonkit.testing.zoo import build

STEPS = 6
GLOBAL_BATCH = 4
SEQ = 16
LR = 1e-3


def expanded_model() -> torch.nn.Module:
    """The same expanded model in every process (seeded)."""
    small = build("llama", seed=0, dtype=torch.float32)
    big = lemonkit.expand(small, hidden_size=128, num_layers=4, seed=0)
    return big.train()


def batches(vocab: int) -> torch.Tensor:
    """Every step's global batch: (STEPS, GLOBAL_BATCH, SEQ) token ids, fixed by a seed."""
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, vocab, (STEPS, GLOBAL_BATCH, SEQ), generator=g)


def shard(model: torch.nn.Module, world: int) -> None:
    """FSDP2: each decoder block a unit, then the root (embeddings, norm, head)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))
    for block in model.model.layers:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def local_fraction(model: torch.nn.Module) -> float:
    """The share of the parameters this rank holds (a DTensor's local shard)."""
    local = sum(getattr(p, "_local_tensor", p).numel() for p in model.parameters())
    return local / sum(p.numel() for p in model.parameters())


def train(rank: int = 0, world: int = 1) -> dict:
    """STEPS steps of AdamW + the LEMON schedule; the global mean loss at each step."""
    model = expanded_model()
    if world > 1:
        shard(model, world)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    sched = lemonkit.get_lemon_schedule(
        opt, num_warmup_steps=2, num_training_steps=STEPS - 2, min_lr_ratio=0.1
    )
    data = batches(model.config.vocab_size)
    per_rank = GLOBAL_BATCH // world
    losses, lrs = [], []
    for step in range(STEPS):
        ids = data[step, rank * per_rank : (rank + 1) * per_rank]
        loss = model(input_ids=ids, labels=ids).loss  # equal tokens per rank: mean of means
        loss.backward()  # FSDP2 reduce-scatters the gradients, averaged over the ranks
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
        opt.zero_grad()
        seen = loss.detach().clone()
        if world > 1:
            torch.distributed.all_reduce(seen)
            seen /= world
        losses.append(seen.item())
    return {"world": world, "losses": losses, "lrs": lrs, "local_fraction": local_fraction(model)}


def main(path: str) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.distributed.init_process_group("gloo")
    try:
        result = train(rank, world)
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()
    if rank == 0:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1])
