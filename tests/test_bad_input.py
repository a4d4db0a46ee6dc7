"""Bad input: one clear line on stderr, non-zero exit, no traceback, nothing left behind,
and the source untouched."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

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


def test_output_equal_to_source_is_refused_even_with_force(src, tmp_path):
    before = _snapshot(src)
    run = _cli("expand", str(src), str(src), "--hidden-size", "96", "--force")
    _assert_clean_failure(run, tmp_path, "must not be the source")
    assert _snapshot(src) == before


def test_unsupported_model_type_lists_supported(tmp_path):
    path = tmp_path / "t5"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    save_file({"x": torch.zeros(1)}, path / "model.safetensors")
    out = tmp_path / "out"
    run = _cli("expand", str(path), str(out), "--hidden-size", "96")
    _assert_clean_failure(run, tmp_path, "'t5' is not supported; supported: bert, ", out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hidden-size", "32"], "smaller than source"),
        (["--hidden-size", "72"], "not a multiple of head_dim"),
        (["--hidden-size", "96", "--num-heads", "8"], "changing head_dim"),
        (["--layer-map", "1,0"], "in order"),
    ],
)
def test_impossible_targets(src, tmp_path, args, message):
    out = tmp_path / "out"
    _assert_clean_failure(_cli("expand", str(src), str(out), *args), tmp_path, message, out)


def _rewrite(src: Path, edit) -> None:
    tensors = load_file(src / "model.safetensors")
    edit(tensors)
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor(src, tmp_path):
    _rewrite(src, lambda t: t.pop("transformer.h.1.mlp.c_fc.weight"))
    out = tmp_path / "out"
    run = _cli("expand", str(src), str(out), "--hidden-size", "96")
    _assert_clean_failure(run, tmp_path, "missing tensor 'transformer.h.1.mlp.c_fc.weight'", out)


def test_unexpected_tensor(src, tmp_path):
    _rewrite(src, lambda t: t.update({"transformer.h.0.adapter.weight": torch.zeros(2)}))
    out = tmp_path / "out"
    run = _cli("expand", str(src), str(out), "--hidden-size", "96")
    _assert_clean_failure(run, tmp_path, "unexpected tensor 'transformer.h.0.adapter.weight'", out)


def test_shape_that_contradicts_config(src, tmp_path):
    _rewrite(src, lambda t: t.update({"transformer.wpe.weight": torch.zeros(64, 48)}))
    out = tmp_path / "out"
    run = _cli("expand", str(src), str(out), "--hidden-size", "96")
    _assert_clean_failure(run, tmp_path, "does not match the config", out)


def test_truncated_file(src, tmp_path):
    f = src / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    out = tmp_path / "out"
    run = _cli("expand", str(src), str(out), "--hidden-size", "96")
    _assert_clean_failure(run, tmp_path, "corrupt or truncated", out)


def test_missing_shard_named_in_index(src, tmp_path):
    (src / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"transformer.wte.weight": "model-00002-of-00002.safetensors"}})
    )
    out = tmp_path / "out"
    run = _cli("expand", str(src), str(out), "--hidden-size", "96")
    _assert_clean_failure(run, tmp_path, "missing", out)


def test_pickle_checkpoint_is_refused(src, tmp_path):
    (src / "model.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, src / "pytorch_model.bin")
    out = tmp_path / "out"
    run = _cli("expand", str(src), str(out), "--hidden-size", "96")
    _assert_clean_failure(run, tmp_path, "does not unpickle", out)


def test_missing_source_and_config(tmp_path):
    out = tmp_path / "out"
    run = _cli("expand", str(tmp_path / "nope"), str(out), "--hidden-size", "96")
    _assert_clean_failure(run, tmp_path, "is not a folder", out)
    (tmp_path / "empty").mkdir()
    run = _cli("expand", str(tmp_path / "empty"), str(out), "--hidden-size", "96")
    _assert_clean_failure(run, tmp_path, "no config.json", out)


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


SLOW_CLI = """
import sys, time
import lemonkit.io.folder
real = lemonkit.io.folder.iter_expand_tensor
def slow(*a, **k):
    time.sleep(0.2)
    return real(*a, **k)
lemonkit.io.folder.iter_expand_tensor = slow
from lemonkit.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_sigterm_leaves_nothing(src, tmp_path):
    import signal
    import time

    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, "expand", str(src), str(out), "--hidden-size", "96"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not [p for p in tmp_path.iterdir() if ".lemonkit-" in p.name]:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".lemonkit-" in p.name]


def test_leftovers_of_a_killed_run_are_removed(src, tmp_path):
    dead = tmp_path / ".out.lemonkit-999999999-abcd"  # no such process
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
        "config.json",
        "generation_config.json",
        "lemonkit.json",
        "model.safetensors",
        "tokenizer.json",
    ]


def test_conflicting_layer_counts_and_bad_sizes_are_refused(src, tmp_path):
    out = tmp_path / "out"
    run = _cli("expand", str(src), str(out), "--num-layers", "6", "--layer-map", "0,1,1")
    _assert_clean_failure(run, tmp_path, "the layer map has 3 entries", out)
    run = _cli("expand", str(src), str(out), "--hidden-size", "96", "--max-shard-size", "5X")
    _assert_clean_failure(run, tmp_path, "cannot read size", out)
