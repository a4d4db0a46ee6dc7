"""Expansion throughput and peak memory against plain safetensors I/O, in one run.

Generates (once, cached outside the repo) a synthetic LLaMA checkpoint in bf16 with the
shapes of TinyLlama-1.1B (hidden 2048, 22 layers, 32 heads, 4 KV heads, MLP 5632, vocab
32000, untied head: 1.1B parameters), sharded at 1 GB. Then, each in a fresh process:

- baseline: read every source tensor with ``safe_open`` and write the same number of
  output bytes, in the same shard layout, with ``safetensors.torch.save_file``;
- ``lemonkit expand`` for each target (--no-verify: the expansion alone);
- ``lemonkit verify --blockwise`` on the first target (its memory is documented).

Baseline and expansion alternate ``--repeat`` times (default 2) and the fastest of each
is kept, so neither profits from a warmer page cache. It prints wall time and peak RSS
of each and the ratio, and writes them as JSON.

    python benchmarks/expand_throughput.py [--cache DIR] [--json results.json] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SOURCE = dict(
    hidden_size=2048,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    intermediate_size=5632,
    vocab_size=32000,
    tie_word_embeddings=False,
)
TARGETS = {
    "indivisible width + depth (2048->3072, 22->33 layers)": [
        "--hidden-size",
        "3072",
        "--num-layers",
        "33",
    ],
    "2x width (2048->4096)": ["--hidden-size", "4096"],
}
SHARD = "1GB"

# Runs in a child process: executes the given code, then reports its own peak RSS.
CHILD = """
import json, resource, sys, time
start = time.perf_counter()
exec(sys.argv[1])
print(json.dumps({"wall_s": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

EXPAND = """
from lemonkit.cli.main import main
rc = main(sys.argv[2:])
assert rc == 0, rc
"""

BASELINE = """
import json
from pathlib import Path
import torch
from safetensors import safe_open
from safetensors.torch import save_file
src, out = Path(sys.argv[2]), Path(sys.argv[3])
index = json.loads((src / "model.safetensors.index.json").read_text())["weight_map"]
for name, file in index.items():  # read every source tensor, one at a time
    with safe_open(str(src / file), "pt") as f:
        f.get_tensor(name)
layout = json.loads(Path(sys.argv[4]).read_text())  # the expanded output's shard layout
for file, tensors in layout.items():
    zeros = {n: torch.zeros(s, dtype=torch.bfloat16) for n, s in tensors.items()}
    save_file(zeros, str(out / file))
"""


def run_child(code: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, code, *args], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_source(folder: Path) -> None:
    """A random bf16 LLaMA checkpoint, written tensor by tensor (bounded memory)."""
    from transformers import LlamaConfig

    from lemonkit.io.writer import parse_size, plan_shards, write_shards

    if (folder / "config.json").is_file():
        return
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = LlamaConfig(**SOURCE, dtype="bfloat16", architectures=["LlamaForCausalLM"])
    with torch.device("meta"):
        from transformers import LlamaForCausalLM

        shapes = {n: tuple(p.shape) for n, p in LlamaForCausalLM(config).state_dict().items()}
    entries = [(n, torch.bfloat16, s) for n, s in shapes.items()]
    gen = torch.Generator().manual_seed(0)

    def tensors():
        for name, _, shape in entries:
            if "norm" in name:
                yield (1 + 0.1 * torch.randn(shape, generator=gen)).to(torch.bfloat16)
            else:
                yield (0.02 * torch.randn(shape, generator=gen)).to(torch.bfloat16)

    write_shards(tmp, plan_shards(entries, parse_size(SHARD)), tensors())
    config.save_pretrained(tmp)
    tmp.rename(folder)


def shard_layout(folder: Path) -> dict:
    from lemonkit.io.checkpoint import Checkpoint

    ckpt = Checkpoint.open(folder)
    layout: dict = {}
    for name in ckpt:
        layout.setdefault(ckpt._files[name].name, {})[name] = list(ckpt.shape(name))
    return layout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/lemonkit/bench"))
    ap.add_argument("--work", default=None, help="where outputs go (default: a temp dir)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each; the fastest counts")
    args = ap.parse_args()
    src = Path(args.cache) / "llama-1.1b-bf16"
    t0 = time.perf_counter()
    make_source(src)
    n_params = sum(torch.Size(s).numel() for f in shard_layout(src).values() for s in f.values())
    print(
        f"source: {src} ({n_params / 1e9:.2f}B params, bf16), ready in "
        f"{time.perf_counter() - t0:.0f} s"
    )
    results = {"source_params": n_params, "runs": []}
    work = Path(args.work or tempfile.mkdtemp(prefix="lemonkit-bench-"))
    for label, target_args in TARGETS.items():
        out, base_out = work / "expanded", work / "baseline"
        layout_file = work / "layout.json"
        expands, baselines, row = [], [], {"target": label}
        for _ in range(args.repeat):
            shutil.rmtree(out, ignore_errors=True)
            expands.append(
                run_child(
                    EXPAND,
                    "-q",
                    "expand",
                    str(src),
                    str(out),
                    *target_args,
                    "--no-verify",
                    "--max-shard-size",
                    SHARD,
                )
            )
            layout_file.write_text(json.dumps(shard_layout(out)))
            row["output_gb"] = sum(p.stat().st_size for p in out.glob("*.safetensors")) / 1e9
            if not results["runs"] and "verify_blockwise" not in row:
                row["verify_blockwise"] = run_child(
                    EXPAND, "-q", "verify", "--blockwise", str(src), str(out)
                )
            shutil.rmtree(out)
            base_out.mkdir(exist_ok=True)
            baselines.append(run_child(BASELINE, str(src), str(base_out), str(layout_file)))
            shutil.rmtree(base_out)
        expand = min(expands, key=lambda r: r["wall_s"])
        row["expand"], row["baseline"] = expand, min(baselines, key=lambda r: r["wall_s"])
        row["all_expand_s"] = [r["wall_s"] for r in expands]
        row["all_baseline_s"] = [r["wall_s"] for r in baselines]
        out_bytes = row["output_gb"] * 1e9
        row["time_ratio"] = expand["wall_s"] / row["baseline"]["wall_s"]
        results["runs"].append(row)
        print(f"\n{label}: {out_bytes / 1e9:.2f} GB written")
        print(
            f"  baseline (read + write with safetensors): {row['baseline']['wall_s']:6.1f} s, "
            f"peak RSS {row['baseline']['peak_rss_mb']:6.0f} MB"
        )
        print(
            f"  lemonkit expand:                          {expand['wall_s']:6.1f} s, "
            f"peak RSS {expand['peak_rss_mb']:6.0f} MB"
        )
        print(f"  time ratio expand / baseline: {row['time_ratio']:.2f}x")
        if "verify_blockwise" in row:
            v = row["verify_blockwise"]
            print(
                f"  lemonkit verify --blockwise:              {v['wall_s']:6.1f} s, "
                f"peak RSS {v['peak_rss_mb']:6.0f} MB"
            )
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
