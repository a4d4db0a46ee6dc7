"""Golden outputs: the expanded tensors of a few fixed cases, hashed. A refactor must leave
every byte as it was; a change of the numbers (a new default) is deliberate, and then
``LEMONKIT_REGOLD=1 pytest tests/test_golden.py`` rewrites the file, in its own commit."""

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

import lemonkit
from lemonkit.cli import main
from lemonkit.testing.zoo import build, resnet

GOLDEN = Path(__file__).parent / "golden" / "expansions.json"
CASES = {
    "gpt2-f64-width-depth": ("gpt2", torch.float64, dict(hidden_size=96, num_layers=3)),
    "gpt2-bf16-net2net": ("gpt2", torch.bfloat16, dict(hidden_size=128, method="net2net")),
    "llama-f64-everything": (
        "llama",
        torch.float64,
        dict(hidden_size=96, num_layers=3, intermediate_size=150),
    ),
    "llama-bf16-heads-aki": (
        "llama",
        torch.bfloat16,
        dict(hidden_size=128, num_heads=8, num_kv_heads=4, method="aki", allow_lossy=True),
    ),
    "gemma-f32-width": ("gemma", torch.float32, dict(hidden_size=96, num_layers=3)),
    "opt-f64-width": ("opt", torch.float64, dict(hidden_size=96)),
    "bert-f64-post-ln-depth": ("bert", torch.float64, dict(hidden_size=128, num_layers=3)),
    "mixtral-f64-width": ("mixtral", torch.float64, dict(hidden_size=96)),
    "llama-f32-stack": (
        "llama",
        torch.float32,
        dict(num_layers=5, depth="stack", allow_lossy=True),
    ),
    "qwen3-bf16-fixed-eps": ("qwen3", torch.bfloat16, dict(hidden_size=96, num_layers=3)),
    "olmo2-f64-dead-heads": ("olmo2", torch.float64, dict(hidden_size=96)),
}


def _digest(t: torch.Tensor) -> str:
    raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return hashlib.sha256(raw).hexdigest()[:16]


def _folder(tmp: Path) -> dict[str, str]:
    """The streaming path: a bf16 GPT-2 folder expanded by the CLI, hashed file by file."""
    build("gpt2", dtype=torch.bfloat16).save_pretrained(tmp / "src")
    args = ["-q", "expand", str(tmp / "src"), str(tmp / "out"), "--hidden-size", "96"]
    assert main([*args, "--num-layers", "3", "--seed", "5", "--max-shard-size", "200KB"]) == 0
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        for p in sorted((tmp / "out").glob("*.safetensors"))
    }


def _expanded(case: str, tmp: Path) -> dict[str, str]:
    if case == "folder-gpt2-bf16":
        return _folder(tmp)
    if case == "resnet-everything":
        big = lemonkit.expand(resnet(), hidden_sizes=[24, 56], depths=[4, 3], embedding_size=16)
    else:
        arch, dtype, growth = CASES[case]
        big = lemonkit.expand(build(arch, dtype=dtype), seed=3, **growth)
    return {name: _digest(t) for name, t in big.state_dict().items()}


ALL = [*CASES, "resnet-everything", "folder-gpt2-bf16"]


@pytest.mark.parametrize("case", ALL)
def test_expansion_is_byte_identical_to_the_golden_record(case, tmp_path):
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    now = _expanded(case, tmp_path)
    if os.environ.get("LEMONKIT_REGOLD"):
        golden[case] = now
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    changed = sorted(n for n in now if golden.get(case, {}).get(n) != now[n])
    assert set(now) == set(golden.get(case, {})) and not changed, changed[:5]
