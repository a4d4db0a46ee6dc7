"""What the benchmarks share: synthetic bf16 LLaMA checkpoints written tensor by tensor
(outside the repository), child processes that report their wall time and peak RSS, and
the machine's load next to every timing.

Nothing here is imported by lemonkit; the benchmarks import it by path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

CACHE = Path(os.path.expanduser("~/.cache/lemonkit-bench"))  # never inside the repo

# Runs in a child process: executes the given code, then reports its own peak RSS: the
# high-water mark of its own memory image (VmHWM). Not ru_maxrss: Linux carries that over
# exec from the parent at fork time, so a child of a 1.4 GB parent reported 1.4 GB.
CHILD = """
import json, resource, sys, time
start = time.perf_counter()
exec(sys.argv[1])
wall = time.perf_counter() - start
try:
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    peak_kb = int(status.split()[0])
except (OSError, IndexError):
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"wall_s": wall, "peak_rss_mb": peak_kb / 1024}))
"""

LEMONKIT = """
from lemonkit.cli.main import main
rc = main(sys.argv[2:])
assert rc == 0, rc
"""


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages (other users share the machine)."""
    return [round(x, 2) for x in os.getloadavg()]


def run_child(code: str, *args: str, python: str = sys.executable) -> dict:
    """Run ``code`` in a fresh process; its wall time, peak RSS and the load before.

    Dirty pages are flushed first (``os.sync``, not timed): a run that writes gigabytes
    leaves the kernel writing them back for seconds after it exits, and without the
    flush the next run pays for it (measured: plain I/O 22.6-31.0 s in one series)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    os.sync()
    before = load()
    proc = subprocess.run(
        [python, "-c", CHILD, code, *args], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**result, "load_before": before}


def make_llama(folder: Path, config_kwargs: dict, shard: str) -> None:
    """A random bf16 LLaMA checkpoint, written tensor by tensor (bounded memory)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lemonkit.io.writer import parse_size, plan_shards, write_shards

    if (folder / "config.json").is_file():
        return
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = LlamaConfig(**config_kwargs, dtype="bfloat16", architectures=["LlamaForCausalLM"])
    with torch.device("meta"):
        shapes = {n: tuple(p.shape) for n, p in LlamaForCausalLM(config).state_dict().items()}
    entries = [(n, torch.bfloat16, s) for n, s in shapes.items()]
    gen = torch.Generator().manual_seed(0)

    def tensors():
        for name, _, shape in entries:
            scale, shift = (0.1, 1.0) if "norm" in name else (0.02, 0.0)
            t = torch.empty(shape, dtype=torch.bfloat16)
            for row in range(0, shape[0], 1024):  # bounded memory: 1024 rows at a time
                part = t[row : row + 1024]
                part.copy_(shift + scale * torch.randn(part.shape, generator=gen))
            yield t

    write_shards(tmp, plan_shards(entries, parse_size(shard)), tensors())
    config.save_pretrained(tmp)
    tmp.rename(folder)


def shard_layout(folder: Path) -> dict:
    """Shard file -> {tensor: shape} of a folder (what plain I/O writes)."""
    from lemonkit.io.checkpoint import Checkpoint

    ckpt = Checkpoint.open(folder)
    layout: dict = {}
    for name in ckpt:
        layout.setdefault(ckpt._files[name].name, {})[name] = list(ckpt.shape(name))
    return layout


def folder_gb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1e9
