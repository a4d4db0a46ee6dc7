"""The command line on real folders: expand, verify, plan, list, and every bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import lemonkit
from lemonkit.cli.main import main
from lemonkit.testing.zoo import build


@pytest.fixture
def gpt2_dir(tmp_path) -> Path:
    path = tmp_path / "small"
    build("gpt2", dtype=torch.float32).save_pretrained(path)
    (path / "tokenizer.json").write_text('{"fake": "tokenizer"}')
    return path


@pytest.fixture
def llama_dir(tmp_path) -> Path:
    path = tmp_path / "llama"
    build("llama", dtype=torch.float32).save_pretrained(path)
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if "lemonkit" in p.name]


def test_expand_writes_a_loadable_folder_with_provenance(gpt2_dir, tmp_path, capsys):
    out = tmp_path / "big"
    rc = main(["expand", str(gpt2_dir), str(out), "--hidden-size", "96", "--num-layers", "3"])
    assert rc == 0
    assert "LOSSLESS" in capsys.readouterr().out
    big = AutoModelForCausalLM.from_pretrained(out)
    assert big.config.n_embd == 96 and big.config.n_layer == 3
    assert (out / "tokenizer.json").read_text() == '{"fake": "tokenizer"}'
    record = json.loads((out / "lemonkit.json").read_text())
    assert record["plan"]["target_sizes"]["hidden_size"] == 96
    assert record["verification"]["ok"] is True
    assert record["lemonkit_version"] == lemonkit.__version__
    assert main(["verify", str(gpt2_dir), str(out)]) == 0


def test_verify_fails_on_a_tampered_output(gpt2_dir, tmp_path):
    out = tmp_path / "big"
    assert main(["-q", "expand", str(gpt2_dir), str(out), "--hidden-size", "96"]) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight.mul_(1.01)
    model.save_pretrained(out)
    assert main(["-q", "verify", str(gpt2_dir), str(out)]) == 1


def test_quiet_prints_nothing(gpt2_dir, tmp_path, capsys):
    assert main(["expand", str(gpt2_dir), str(tmp_path / "b"), "--hidden-size", "96", "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""


def test_plan_is_a_dry_run(gpt2_dir, tmp_path, capsys):
    before = _snapshot(gpt2_dir)
    assert main(["plan", str(gpt2_dir), "--hidden-size", "96", "--num-layers", "3"]) == 0
    text = capsys.readouterr().out
    assert "transformer.h.2.mlp.c_proj.weight" in text and "zeros (new block" in text
    assert "eta = 0.816497" in text
    assert _snapshot(gpt2_dir) == before
    assert _leftovers(tmp_path) == []


def test_list_names_every_architecture(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for mt in lemonkit.supported_model_types():
        assert mt in text


def test_sharded_output_and_index(llama_dir, tmp_path):
    out = tmp_path / "big"
    args = ["-q", "expand", str(llama_dir), str(out), "--hidden-size", "128"]
    assert main([*args, "--max-shard-size", "100KB"]) == 0
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and shards[0].startswith("model-00001-of-")
    assert main(["-q", "verify", str(llama_dir), str(out)]) == 0
    # a sharded folder is also a valid source
    again = tmp_path / "bigger"
    assert main(["-q", "expand", str(out), str(again), "--num-layers", "3"]) == 0
    assert main(["-q", "verify", str(llama_dir), str(again)]) == 0


def test_same_seed_gives_byte_identical_files(llama_dir, tmp_path):
    outs = []
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        outs.append(tmp_path / name)
        args = ["-q", "expand", str(llama_dir), str(outs[-1]), "--hidden-size", "96"]
        assert main([*args, "--seed", seed, "--no-verify"]) == 0
    a, b, c = (o / "model.safetensors" for o in outs)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_dtype_option(llama_dir, tmp_path):
    out = tmp_path / "bf16"
    args = ["-q", "expand", str(llama_dir), str(out), "--hidden-size", "96", "--dtype", "bfloat16"]
    assert main(args) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.bfloat16


def test_python_dash_m_runs_the_cli(gpt2_dir):
    run = subprocess.run(
        [sys.executable, "-m", "lemonkit", "plan", str(gpt2_dir), "--hidden-size", "96"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert run.returncode == 0, run.stderr
    assert "transformer.wte.weight" in run.stdout


def test_dtype_applies_to_floating_point_tensors_only(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    src = tmp_path / "bert"
    build("bert", dtype=torch.float32).save_pretrained(src)
    tensors = load_file(src / "model.safetensors")
    tensors["bert.embeddings.position_ids"] = torch.arange(40).unsqueeze(0)  # old checkpoints
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "out"
    args = ["-q", "expand", str(src), str(out), "--hidden-size", "128", "--dtype", "bfloat16"]
    assert main(args) == 0
    with safe_open(out / "model.safetensors", "pt") as f:
        assert f.get_tensor("bert.embeddings.position_ids").dtype == torch.int64
        assert f.get_tensor("bert.embeddings.word_embeddings.weight").dtype == torch.bfloat16
