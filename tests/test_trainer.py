"""LemonTrainer: the HF Trainer runs the LEMON schedule, step for step, on a tiny GPT-2."""

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, TrainerCallback, TrainingArguments

from lemonkit import LemonArguments, LemonTrainer, get_lemon_schedule

LR, WARMUP, MAX_STEPS = 1e-3, 3, 12


@pytest.fixture(autouse=True)
def _one_thread():
    """A tiny model: one thread is fastest, and two thrash when the 2 cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _RecordLR(TrainerCallback):
    """The learning rate of every parameter group just before each optimizer step."""

    def __init__(self):
        self.lrs = []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append([group["lr"] for group in optimizer.param_groups])


def _data(n=24, seq=8, vocab=64):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (n, seq), generator=g)
    return [{"input_ids": x, "labels": x.clone()} for x in ids]


def _train(tmp_path, lemon_args, resume=None, **overrides):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=64, n_positions=16)
    )
    names = [n for n, _ in model.named_parameters()]
    kwargs = dict(
        output_dir=str(tmp_path),
        max_steps=MAX_STEPS,
        warmup_steps=WARMUP,
        learning_rate=LR,
        per_device_train_batch_size=4,
        use_cpu=True,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    recorder = _RecordLR()
    trainer = LemonTrainer(
        model=model,
        args=TrainingArguments(**kwargs),
        train_dataset=_data(),
        callbacks=[recorder],
        lemon_args=lemon_args,
    )
    trainer.train(resume_from_checkpoint=resume)
    assert trainer.model is model  # no wrapper, no renamed module
    assert [n for n, _ in model.named_parameters()] == names
    return trainer, recorder.lrs


def _expected(decay_end, min_lr_ratio=0.1, shape="cosine"):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sched = get_lemon_schedule(opt, WARMUP, decay_end, min_lr_ratio=min_lr_ratio, shape=shape)
    out = []
    for _ in range(MAX_STEPS):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize(
    "lemon_args, decay_end",
    [
        (LemonArguments(lemon_decay_steps=8), 8),
        (LemonArguments(lemon_decay_ratio=0.5, lemon_shape="linear", lemon_min_lr_ratio=0.2), 6),
        (LemonArguments(lemon_decay_steps=9, lemon_decay_ratio=0.5), 9),  # steps win
    ],
)
def test_trainer_follows_lemon_schedule(tmp_path, lemon_args, decay_end):
    trainer, lrs = _train(tmp_path, lemon_args)
    expected = _expected(decay_end, lemon_args.lemon_min_lr_ratio, lemon_args.lemon_shape)
    assert len(lrs) == MAX_STEPS
    for step, groups in enumerate(lrs):  # every parameter group, every step
        assert groups == pytest.approx([expected[step]] * len(groups), abs=1e-12), step
    floor = lemon_args.lemon_min_lr_ratio * LR
    assert lrs[0][0] == 0.0 and max(g[0] for g in lrs) == pytest.approx(LR)  # same peak
    assert all(g[0] == pytest.approx(floor) for g in lrs[decay_end:])  # min LR, then flat
    assert lrs[decay_end - 1][0] > floor
    # the Trainer's own log agrees, and the loss is finite
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert [e["learning_rate"] for e in logged] == pytest.approx(expected, abs=1e-12)
    assert all(math.isfinite(e["loss"]) for e in logged)


def test_default_decays_over_the_whole_run(tmp_path):
    _, lrs = _train(tmp_path, None, warmup_steps=0.25)  # warm-up as a fraction: 3 of 12 steps
    assert [g[0] for g in lrs] == pytest.approx(_expected(MAX_STEPS), abs=1e-12)


def test_refusals(tmp_path):
    with pytest.raises(ValueError, match="before the warm-up ends"):
        _train(tmp_path, LemonArguments(lemon_decay_steps=2))
    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64))
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match="builds the LEMON scheduler"):
        LemonTrainer(model=model, args=args, optimizers=(opt, sched))
    for bad in (
        dict(lemon_decay_steps=0),
        dict(lemon_decay_ratio=0.0),
        dict(lemon_decay_ratio=1.5),
        dict(lemon_min_lr_ratio=2.0),
        dict(lemon_shape="step"),
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            LemonArguments(**bad)


def test_resume_from_checkpoint_continues_the_schedule(tmp_path):
    lemon_args = LemonArguments(lemon_decay_steps=8)
    _train(tmp_path, lemon_args, save_strategy="steps", save_steps=6)
    trainer, lrs = _train(
        tmp_path, lemon_args, resume=str(tmp_path / "checkpoint-6"), save_strategy="no"
    )
    assert [g[0] for g in lrs] == pytest.approx(_expected(8)[6:], abs=1e-12)
    assert trainer.state.global_step == MAX_STEPS


DDP_SCRIPT = """
import json, os, sys, torch
from transformers import GPT2Config, GPT2LMHeadModel, TrainerCallback, TrainingArguments
from lemonkit import LemonArguments, LemonTrainer

class Record(TrainerCallback):
    lrs = []
    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])

torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=64, n_positions=16))
ids = torch.randint(0, 64, (48, 8), generator=torch.Generator().manual_seed(0))
args = TrainingArguments(output_dir=sys.argv[1], max_steps=12, warmup_steps=3, learning_rate=1e-3,
    per_device_train_batch_size=2, use_cpu=True, ddp_backend="gloo", report_to="none",
    save_strategy="no", disable_tqdm=True)
trainer = LemonTrainer(model=model, args=args, callbacks=[Record()],
    train_dataset=[{"input_ids": x, "labels": x.clone()} for x in ids],
    lemon_args=LemonArguments(lemon_decay_steps=8))
trainer.train()
rank = int(os.environ["RANK"])
out = {"lrs": Record.lrs, "world": trainer.args.world_size,
       "ddp": type(trainer.model_wrapped).__name__, "same_class": trainer.model is model}
open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w").write(json.dumps(out))
torch.distributed.barrier()
torch.distributed.destroy_process_group()  # a clean exit: gloo threads can abort at teardown
"""


def test_lemon_trainer_under_torchrun_two_processes(tmp_path):
    """The HF Trainer path under DDP (gloo, CPU): both ranks run the LEMON schedule."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "train.py"
    script.write_text(DDP_SCRIPT)
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc_per_node=2", "--master_port=29519", str(script), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    expected = _expected(8)
    for rank in ranks:
        assert rank["world"] == 2 and rank["ddp"] == "DistributedDataParallel"
        assert rank["same_class"]  # the Trainer wraps for DDP; the model itself is untouched
        assert rank["lrs"] == pytest.approx(expected, abs=1e-12)
