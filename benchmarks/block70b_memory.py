"""The default command's memory on LLaMA-70B-sized blocks: within --max-memory?

A synthetic bf16 checkpoint with two blocks of LLaMA-70B's size (hidden 8192, MLP 28672,
64 heads, 8 KV heads, a 4096 vocabulary; 3.4 GB), generated once under
``~/.cache/lemonkit-bench`` (outside the repository), grown to hidden 12288, 96 heads,
12 KV heads and 3 layers (8.6 GB out). Each run is a fresh process; it reports wall time
and peak RSS (``ru_maxrss``) of

- ``lemonkit expand`` with its defaults (verification included, ``--max-memory 1GB``),
- ``lemonkit expand --no-verify``,
- ``lemonkit verify OUT`` (the certificate re-checked).

    python benchmarks/block70b_memory.py [--json benchmarks/results/block70b_memory.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import CACHE, LEMONKIT, folder_gb, load, make_llama, run_child  # noqa: E402

SOURCE = dict(
    hidden_size=8192,
    num_hidden_layers=2,
    num_attention_heads=64,
    num_key_value_heads=8,
    intermediate_size=28672,
    vocab_size=4096,
    tie_word_embeddings=False,
)
GROW = ["--hidden-size", "12288", "--num-heads", "96", "--num-kv-heads", "12", "--num-layers", "3"]
BUDGET = "1GB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--work", default=str(CACHE / "work"), help="where the output goes")
    ap.add_argument("--workers", default=None, help="--workers for lemonkit expand")
    args = ap.parse_args()
    src = CACHE / "llama-70b-blocks-bf16"
    t0 = time.perf_counter()
    make_llama(src, SOURCE, "5GB")
    print(f"source {src}: {folder_gb(src):.2f} GB, ready in {time.perf_counter() - t0:.0f} s")
    out = Path(args.work) / "block70b-out"
    out.parent.mkdir(parents=True, exist_ok=True)
    workers = ["--workers", args.workers] if args.workers else []
    rows = {}
    for label, flags in [
        ("expand (default: verify cheap)", ["--max-memory", BUDGET]),
        ("expand --no-verify", ["--no-verify"]),
    ]:
        shutil.rmtree(out, ignore_errors=True)
        cmd = ["-q", "expand", str(src), str(out), *GROW, *flags, *workers]
        rows[label] = {"command": "lemonkit " + " ".join(cmd), **run_child(LEMONKIT, *cmd)}
        rows[label]["output_gb"] = folder_gb(out)
        if label.startswith("expand (default"):
            cert = json.loads((out / "lemonkit.json").read_text())["verification"]
            rows[label]["certificate"] = {k: cert[k] for k in ("ok", "level", "parts", "peak_rss")}
            rows[label]["certificate"]["end_to_end_kind"] = cert["end_to_end_kind"]
            cmd = ["-q", "verify", str(out), "--max-memory", BUDGET]
            rows["verify OUT (re-check)"] = {"command": "lemonkit " + " ".join(cmd)}
            rows["verify OUT (re-check)"].update(run_child(LEMONKIT, *cmd))
    shutil.rmtree(out, ignore_errors=True)
    for label, row in rows.items():
        print(
            f"{label:32s} {row['wall_s']:7.1f} s  peak RSS {row['peak_rss_mb']:6.0f} MB  "
            f"(load {row['load_before']})"
        )
    result = {"source": SOURCE, "grow": GROW, "budget": BUDGET, "load_after": load(), "runs": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
