"""``run.py --jobs N``: runs of a preset in worker processes, phase by phase."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import torch

from lemonkit.harness import experiment
from lemonkit.harness.cli import main
from lemonkit.harness.jobs import phases
from lemonkit.harness.runs import RunSpec

ROOT = Path(__file__).parents[1]
TINY = {"arch": "llama", "hidden": 32, "layers": 1, "heads": 4, "kv_heads": 2, "intermediate": 64}


def _config() -> dict:
    data = tomllib.loads((ROOT / "experiments" / "configs" / "lm_llama.toml").read_text())
    preset = {
        "small": TINY,
        "large": {**TINY, "hidden": 48, "heads": 6, "kv_heads": 3, "layers": 2},
        "seq_len": 16,
        "batch_size": 4,
        "lr": 3e-3,
        "warmup": 1,
        "small_steps": 4,
        "steps": 8,
        "eval_every": 4,
        "eval_batches": 1,
        "seeds": [0, 1],
        "baselines": ["stack"],
        "grow_after": [0.5],
    }
    return {"name": "t", "task": "causal_lm", "data": data["data"], "preset": {"p": preset}}


def test_phases_put_sources_and_references_together_then_the_rest():
    """Sources and references need nothing (they train side by side); the rest needs both."""
    exp = experiment.experiment_from_config(_config(), "p", Path("unused"))
    names = [[s.name for s in p] for p in phases(exp.specs())]
    assert len(names) == 2
    assert names[0] == ["scratch-s0", "scratch-s1", "small", "small-x0.5"]  # longest first
    assert {"lemon-s0", "stack-s0", "lemon-x0.5-s0"} <= set(names[1])
    assert not {"small", "scratch-s0"} & set(names[1])
    ki = RunSpec("ki-soft-s0", "scratch", "baseline", ki="soft", stop_at_target=True)
    lemon = RunSpec("lemon-s0", "expand", "headline")
    assert [s.name for s in phases([lemon, ki])[0]] == ["ki-soft-s0", "lemon-s0"]


def test_two_jobs_give_the_records_of_one(tmp_path):
    """The same runs, one at a time in this process or two at a time in workers (one
    thread each): identical validation histories, and every record on disk."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = experiment.experiment_from_config(_config(), "p", tmp_path / "one")
        a = experiment.run_experiment(one, progress=False)
    finally:
        torch.set_num_threads(threads)
    two = experiment.experiment_from_config(_config(), "p", tmp_path / "two")
    b = experiment.run_experiment(two, progress=False, jobs=2, threads=1)
    assert (
        [r["run"]["name"] for r in a]
        == [r["run"]["name"] for r in b]
        == [s.name for s in one.specs()]
    )
    for ra, rb in zip(a, b, strict=True):
        assert [h["val_loss"] for h in ra["history"]] == [h["val_loss"] for h in rb["history"]]
        saved = json.loads((two.out / f"{rb['run']['name']}.json").read_text())
        assert saved["history"] == rb["history"]


def test_jobs_must_not_be_negative(capsys):
    assert main(["x.toml", "--jobs", "-1"], default_out=Path("unused")) == 2
    assert "--jobs" in capsys.readouterr().err


def test_prune_removes_only_the_runs_the_preset_no_longer_lists(tmp_path):
    exp = experiment.experiment_from_config(_config(), "p", tmp_path)
    exp.out.mkdir(parents=True)
    keep = ["small.json", "small.safetensors", "scratch-s0.json", "summary.json"]
    old = ["aki-default-s0.json", "small-x3.safetensors"]
    for name in keep + old:
        (exp.out / name).write_text("{}")
    (exp.out / "ckpt" / "aki-default-s0").mkdir(parents=True)
    assert [f.name for f in experiment.stale_results(exp)] == sorted(old)
    experiment.prune(exp)
    assert sorted(f.name for f in exp.out.iterdir()) == sorted([*keep, "ckpt"])
    assert not (exp.out / "ckpt" / "aki-default-s0").exists()


PARENT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from lemonkit.harness.jobs import die_with_parent

if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=die_with_parent,
                               initargs=(os.getpid(),))
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 120)
    time.sleep(120)
"""


def test_a_worker_ends_when_the_command_is_killed(tmp_path):
    """`kill -9` of the command that started the workers ends them too: none goes on
    training into the results folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            os.kill(worker, 0)  # still there?
        except ProcessLookupError:
            return
        if Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z":  # a zombie: it ended
            return
        time.sleep(0.2)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError("the worker outlived the command that started it")


def test_a_gpt2_preset_may_name_its_activation_the_same_function_in_one_kernel():
    from lemonkit.harness.models import build_model

    spec = {"arch": "gpt2", "hidden": 16, "layers": 1, "heads": 2}
    torch.manual_seed(0)
    slow = build_model(spec, "causal_lm", seq_len=8)
    fast = build_model({**spec, "activation": "gelu_pytorch_tanh"}, "causal_lm", seq_len=8)
    assert slow.config.activation_function == "gelu_new"
    assert fast.config.activation_function == "gelu_pytorch_tanh"
    fast.load_state_dict(slow.state_dict())
    x = torch.randint(0, 256, (2, 8))
    a, b = slow(input_ids=x).logits, fast(input_ids=x).logits
    assert torch.allclose(a, b, atol=1e-5)  # GPT-2's tanh GELU, computed in one kernel
