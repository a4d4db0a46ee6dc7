"""Bad input: one clear line on stderr, non-zero exit, no traceback, nothing left behind,
and the source untouched. The catalogue of bad inputs (``lemonkit.testing.bad_inputs``,
run by ``tests/test_bad_inputs.py``) holds the single-command cases; here: a real
process, ``--force``, failures midway, leftovers and what is copied."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lemonkit.io.folder
from lemonkit.cli.main import main
from lemonkit.testing.zoo import build


@pytest.fixture
def src(tmp_path) -> Path:
    path = tmp_path / "small"
    build("gpt2", dtype=torch.float32).save_pretrained(path)
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lemonkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def _assert_clean_failure(run, tmp_path: Path, message: str, out: Path | None = None):
    assert run.returncode != 0
    lines = [x for x in run.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("lemonkit: error:"), run.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in run.stderr
    assert not [p for p in tmp_path.iterdir() if ".lemonkit-" in p.name]
    if out is not None:
        assert not out.exists()


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_existing_output_is_refused_unless_force(src, tmp_path):
    out = tmp_path / "big"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    run = _cli("expand", str(src), str(out), "--hidden-size", "96")
    _assert_clean_failure(run, tmp_path, "already exists; pass --force")
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["-q", "expand", str(src), str(out), "--hidden-size", "96", "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").exists()


def test_failure_midway_leaves_nothing(src, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = lemonkit.io.folder.iter_expand_tensor

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # as Ctrl-C would
        return real(*args, **kwargs)

    monkeypatch.setattr(lemonkit.io.folder, "iter_expand_tensor", flaky)
    out = tmp_path / "out"
    assert main(["-q", "expand", str(src), str(out), "--hidden-size", "96"]) == 130
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".lemonkit-" in p.name]


def test_failed_force_keeps_the_old_output(src, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")

    def boom(*args, **kwargs):
        raise lemonkit.LemonkitError("simulated failure")

    monkeypatch.setattr(lemonkit.io.folder, "certify", boom)
    assert main(["-q", "expand", str(src), str(out), "--hidden-size", "96", "--force"]) == 2
    assert (out / "old.txt").read_text() == "old"


def test_leftovers_of_a_killed_run_are_removed(src, tmp_path):
    from lemonkit.io.lock import host_id

    dead = tmp_path / f".out.lemonkit-999999999-12345-{host_id()}-abcd"  # no such process
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"half")
    assert main(["-q", "expand", str(src), str(tmp_path / "out"), "--hidden-size", "96"]) == 0
    assert not dead.exists()


def test_an_output_that_fails_verification_is_not_published(src, tmp_path, monkeypatch):
    import lemonkit.engine.rules

    real = lemonkit.engine.rules.expand_out

    def corrupt(t, axis, space):  # a bug in the engine: producers off by 1%
        return real(t, axis, space) * 1.01

    monkeypatch.setattr(lemonkit.engine.tensor, "expand_out", corrupt)
    out = tmp_path / "out"
    assert main(["-q", "expand", str(src), str(out), "--hidden-size", "96"]) == 2
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".lemonkit-" in p.name]


def test_weights_in_other_formats_are_not_copied(src, tmp_path):
    (src / "tf_model.h5").write_bytes(b"old shapes")
    (src / "onnx").mkdir()
    (src / "onnx" / "model.onnx").write_bytes(b"old shapes")
    (src / "tokenizer.json").write_text("{}")
    out = tmp_path / "out"
    assert main(["-q", "expand", str(src), str(out), "--hidden-size", "96"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",  # lemonkit's model card
        "config.json",
        "generation_config.json",
        "lemonkit.json",
        "model.safetensors",
        "tokenizer.json",
    ]
