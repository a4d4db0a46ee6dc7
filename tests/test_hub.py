"""A Hub repo id as SRC, resolved by the real ``huggingface_hub`` from a cache laid out by
hand (``models--org--name/{refs,blobs,snapshots}``) under a temporary ``HF_HOME``, with
``HF_HUB_OFFLINE=1``: nothing is downloaded."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch

from lemonkit.cli.main import main
from lemonkit.errors import CheckpointError
from lemonkit.io.hub import ALLOW_PATTERNS, IGNORE_PATTERNS, resolve_source
from lemonkit.testing.zoo import build

REPO = "tiny-org/tiny-llama"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CARD = "---\nlicense: apache-2.0\nlanguage: en\n---\n# The source's own card\n"


def lay_out_cache(hf_home: Path, model_dir: Path, repo: str = REPO, commit: str = COMMIT):
    """The standard cache layout: blobs named by their hash, snapshot files linking to
    them, ``refs/main`` holding the commit."""
    repo_dir = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in sorted(model_dir.iterdir()):
        data = file.read_bytes()
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A cached ``tiny-org/tiny-llama`` (a pickle beside it is never used), offline."""
    model = tmp_path / "model"
    build("llama", dtype=torch.float32).save_pretrained(model)
    (model / "README.md").write_text(CARD)
    (model / "tokenizer.json").write_text('{"fake": "tokenizer"}')
    hf_home = tmp_path / "hf"
    snapshot = lay_out_cache(hf_home, model)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads its environment at import: point the imported one there too
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # a relative "tiny-org/tiny-llama" folder does not exist
    return snapshot


def test_repo_id_resolves_to_the_cached_snapshot(hub_cache):
    source = resolve_source(REPO)
    assert source.path == hub_cache and source.commit == COMMIT and source.repo_id == REPO
    assert resolve_source(REPO, revision=COMMIT).path == hub_cache


def test_expand_a_repo_id_offline_writes_a_card(hub_cache, tmp_path, capsys):
    out = tmp_path / "big"
    assert main(["expand", REPO, str(out), "--hidden-size", "128", "--num-layers", "3"]) == 0
    assert "LOSSLESS" in capsys.readouterr().out
    record = json.loads((out / "lemonkit.json").read_text())
    assert record["source_ref"]["repo_id"] == REPO
    assert record["source_ref"]["commit"] == COMMIT
    assert record["config"]["src"] == REPO and record["config"]["revision"] == COMMIT
    card = (out / "README.md").read_text()
    assert card.startswith(f"---\nbase_model: {REPO}\n") and "license: apache-2.0" in card
    assert "The source's own card" not in card
    assert (out / "tokenizer.json").read_text() == '{"fake": "tokenizer"}'
    assert main(["-q", "verify", REPO, str(out)]) == 0
    assert main(["-q", "plan", REPO, "--hidden-size", "128"]) == 0
    moe = tmp_path / "moe"
    argv = ["-q", "upcycle", REPO, str(moe), "--to", "mixtral", "--num-experts", "4"]
    assert main([*argv, "--experts-per-token", "2", "--revision", "main"]) == 0
    assert json.loads((moe / "config.json").read_text())["num_local_experts"] == 4
    assert (moe / "README.md").read_text().startswith(f"---\nbase_model: {REPO}\n")


def test_offline_without_a_cached_copy_is_one_line(hub_cache, tmp_path, capsys):
    rc = main(["expand", "tiny-org/not-cached", str(tmp_path / "out"), "--hidden-size", "128"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "HF_HUB_OFFLINE" in err and "tiny-org/not-cached" in err
    assert not (tmp_path / "out").exists()


def test_unknown_revision_offline_is_refused(hub_cache):
    with pytest.raises(CheckpointError, match="no complete copy"):
        resolve_source(REPO, revision="v9")


def test_an_existing_folder_wins_over_a_repo_id(hub_cache, tmp_path):
    local = tmp_path / "tiny-org" / "tiny-llama"
    build("llama", dtype=torch.float32).save_pretrained(local)
    source = resolve_source(REPO)
    assert source.path == Path(REPO) and source.repo_id is None
    with pytest.raises(CheckpointError, match="--revision"):
        resolve_source(REPO, revision="main")


def test_only_safe_files_are_asked_for():
    from huggingface_hub.utils import filter_repo_objects

    repo_files = [
        "config.json",
        "model.safetensors",
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "pytorch_model.bin",
        "model.pt",
        "consolidated.safetensors",
        "onnx/model.onnx",
        "flax_model.msgpack",
        "model.gguf",
    ]
    kept = set(filter_repo_objects(repo_files, allow_patterns=ALLOW_PATTERNS))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= kept
    assert "model-00001-of-00002.safetensors" in kept and "generation_config.json" in kept
    for unsafe in ("pytorch_model.bin", "model.pt", "onnx/model.onnx", "model.gguf"):
        assert unsafe not in kept
    assert "consolidated.safetensors" not in kept  # a duplicate of the weights (Mistral)


def test_no_pickle_slips_through_a_broad_allow_pattern():
    """ "tokenizer*" and "vocab.*" also match pickles: the ignore patterns drop them."""
    from huggingface_hub.utils import filter_repo_objects

    pickles = ["tokenizer.pkl", "tokenizer.bin", "vocab.bin", "vocab.pickle", "tokenizer.pt"]
    wanted = ["tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt"]
    kw = dict(allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS)
    assert sorted(filter_repo_objects(pickles + wanted, **kw)) == sorted(wanted)


def test_the_download_asks_with_the_ignore_patterns(monkeypatch, tmp_path):
    from lemonkit.io import hub

    seen = {}

    def fake_download(repo_id, **kw):
        seen.update(kw)
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.chdir(tmp_path)
    assert hub.resolve_source("some-org/some-model").path == tmp_path
    assert seen["ignore_patterns"] == IGNORE_PATTERNS and seen["allow_patterns"] == ALLOW_PATTERNS


def test_the_command_honours_hf_home_and_offline_from_the_environment(hub_cache, tmp_path):
    """A fresh process: huggingface_hub reads HF_HOME and HF_HUB_OFFLINE itself."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    out = tmp_path / "big-cli"
    cmd = [sys.executable, "-m", "lemonkit", "-q", "plan", REPO, "--hidden-size", "128"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    cmd = [sys.executable, "-m", "lemonkit", "plan", "tiny-org/other", "--num-layers", "3"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and "HF_HUB_OFFLINE" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not out.exists()
