"""FSDP2 proven on CPU: ``fully_shard`` over 2 gloo processes trains an expanded model
with the LEMON schedule exactly as one unsharded process does (examples/fsdp2_cpu.py)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import EXAMPLES, load_example

TORCHRUN = Path(sys.executable).parent / "torchrun"


@pytest.mark.skipif(not shutil.which(str(TORCHRUN)), reason="torchrun not next to this python")
def test_fsdp2_two_processes_match_one(tmp_path):
    example = load_example("fsdp2_cpu")
    one = example.train(rank=0, world=1)  # the reference, in this process
    out = tmp_path / "fsdp.json"
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(EXAMPLES / "fsdp2_cpu.py")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*cmd, str(out)], env=env, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    sharded = json.loads(out.read_text())
    assert sharded["world"] == 2 and one["world"] == 1
    assert sharded["local_fraction"] == pytest.approx(0.5, abs=0.01)  # really sharded
    assert one["local_fraction"] == 1.0
    assert sharded["lrs"] == pytest.approx(one["lrs"], abs=1e-12)  # the LEMON schedule
    assert len(set(one["lrs"])) > 2  # warm-up, decay and floor all happened
    assert sharded["losses"] == pytest.approx(one["losses"], rel=1e-5)
    assert one["losses"][0] != one["losses"][-1]  # the model did train
