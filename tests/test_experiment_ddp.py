"""The harness under torchrun: DDP (gloo, 2 CPU processes) equals one process, and a
non-finite loss on one rank stops every rank."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_experiment import TINY_MLM

TORCHRUN = str(Path(sys.executable).parent / "torchrun")
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on two cores
needs_torchrun = pytest.mark.skipif(
    shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
    reason="torchrun not installed next to this python",
)


@needs_torchrun
def test_torchrun_two_processes_matches_one(tmp_path):
    """The entry point runs unchanged under torchrun (DDP, gloo); each rank trains on its
    half of the same global batch, so the validation curve equals the 1-process run's.
    Masked LM: the ranks hold different numbers of masked positions (``step_facts``)."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_MLM)
    entry = [str(Path(__file__).parents[1] / "experiments" / "run.py"), str(config)]
    module = [*entry, "--preset", "tiny"]
    common = ["--only", "small", "scratch-s0", "lemon-s0", "--quiet", "--no-report", "--out"]
    launchers = {
        "ddp": [TORCHRUN, "--nproc_per_node=2", "--master_port=29517"],
        "one": [sys.executable],
    }
    for out, launcher in launchers.items():
        cmd = [*launcher, *module, *common, str(tmp_path / out)]
        subprocess.run(cmd, check=True, env=ONE_THREAD, timeout=300, capture_output=True)
    for run in ("small", "scratch-s0", "lemon-s0"):  # lemon-s0: expanded, then trained
        ddp = json.loads((tmp_path / "ddp" / "tiny" / "tiny" / f"{run}.json").read_text())
        one = json.loads((tmp_path / "one" / "tiny" / "tiny" / f"{run}.json").read_text())
        assert ddp["world_size"] == 2 and one["world_size"] == 1
        assert [h["val_loss"] for h in ddp["history"]] == pytest.approx(
            [h["val_loss"] for h in one["history"]], rel=1e-4
        ), run


POISON_RANK_1 = """
import sys, torch
from lemonkit.harness import cli, loop
real = loop.cross_entropy
def poisoned(logits, labels):  # NaN training loss on rank 1 only
    loss = real(logits, labels)
    return loss * float("nan") if torch.is_grad_enabled() and loop.world()[0] == 1 else loss
loop.cross_entropy = poisoned
try:
    sys.exit(cli.main(sys.argv[1:]))
except FloatingPointError:
    print(f"rank {loop.world()[0]} stopped on a non-finite loss", file=sys.stderr)
    raise
"""


@needs_torchrun
def test_torchrun_nan_on_one_rank_stops_every_rank(tmp_path):
    """A non-finite loss on one rank raises on all ranks (no rank left waiting in DDP)."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_MLM)
    script = tmp_path / "poison.py"
    script.write_text(POISON_RANK_1)
    cmd = [TORCHRUN, "--nproc_per_node=2", "--master_port=29518", str(script)]
    cmd += [str(config), "--preset", "tiny", "--only", "small", "--quiet", "--no-report"]
    cmd += ["--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, env=ONE_THREAD, timeout=120, capture_output=True, text=True)
    assert done.returncode != 0
    for rank in (0, 1):  # rank 0's own loss was finite: it stops because rank 1's was not
        assert f"rank {rank} stopped on a non-finite loss" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "out" / "tiny" / "tiny" / "small.json").exists()
