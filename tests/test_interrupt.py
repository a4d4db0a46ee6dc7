"""Concurrency and interruption: two runs into one OUT, Ctrl-C and SIGTERM while shards
stream, a real full disk (a small tmpfs), stale temporary folders judged by host, PID
and start time, and the umask left alone."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lemonkit.io.folder
from contract import assert_contract, leftovers, snapshot
from lemonkit.cli.main import main
from lemonkit.io import lock
from lemonkit.testing.zoo import build

SLOW_CLI = """
import os, sys, time
import lemonkit.io.folder
real = lemonkit.io.folder.iter_expand_tensor
gate = os.environ.get("LEMONKIT_TEST_GATE")  # wait for this file before each tensor
def slow(*a, **k):
    time.sleep(0.1)
    deadline = time.time() + 120
    while gate and not os.path.exists(gate) and time.time() < deadline:
        time.sleep(0.02)
    return real(*a, **k)
lemonkit.io.folder.iter_expand_tensor = slow
from lemonkit.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "gpt2"
    build("gpt2", dtype=torch.float32).save_pretrained(path)
    return path


def _slow(*args: str, gate: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "LEMONKIT_TEST_GATE": str(gate or "")}
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, *args], stderr=subprocess.PIPE, text=True, env=env
    )


def _streaming(folder: Path, proc: subprocess.Popen) -> None:
    """Wait until a temporary folder beside the output holds a shard being written."""
    deadline = time.time() + 60
    while not list(folder.glob(".out.lemonkit-*/model*.safetensors")):
        assert time.time() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_while_streaming_leaves_nothing(source, tmp_path, sig):
    before = snapshot(source)
    proc = _slow("-q", "expand", str(source), str(tmp_path / "out"), "--hidden-size", "96")
    _streaming(tmp_path, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "lemonkit: interrupted; no output was left behind"
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)
    assert snapshot(source) == before


def test_two_runs_into_one_output(source, tmp_path, capsys):
    """The first run (a process) is held mid-stream; the second (this process) refuses."""
    out = tmp_path / "out"
    args = ("-q", "expand", str(source), str(out), "--hidden-size", "96", "--no-verify")
    gate = tmp_path / "gate"  # the first run waits, mid-stream, until the second is done
    first = _slow(*args, gate=gate)
    try:
        _streaming(tmp_path, first)
        line = assert_contract(capsys, list(args), "another lemonkit run is writing", source, None)
        assert not out.exists()
    finally:
        gate.touch()
    assert first.wait(timeout=120) == 0, first.stderr.read()
    assert (out / "model.safetensors").is_file() and not leftovers(tmp_path)
    assert "choose another output folder" in line


def test_the_lock_file_is_removed_by_its_holder(tmp_path):
    out = tmp_path / "out"
    with lock.output_lock(out):
        assert lock.lock_path(out).exists()
    assert not leftovers(tmp_path)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 192 KB tmpfs (root only; skipped where mounting is refused)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk(source, tiny_disk, capsys, monkeypatch):
    out = tiny_disk / "out"
    argv = ["-q", "expand", str(source), str(out), "--hidden-size", "96"]
    line = assert_contract(capsys, argv, "not enough free space in " + str(tiny_disk), source, out)
    assert "the output needs about" in line and "are free" in line
    monkeypatch.setattr(lemonkit.io.folder, "check_free_space", lambda *a: None)  # it fills
    assert_contract(capsys, argv, "no space left on the device", source, out)
    assert list(tiny_disk.iterdir()) == []


def test_stale_folders_are_judged_by_host_pid_and_start_time(source, tmp_path):
    out = tmp_path / "out"
    me, here = os.getpid(), lock.host_id()
    mine = lock.start_time(me)
    folders = {
        "dead pid": (f"999999999-1-{here}-aa", False),
        "reused pid": (f"{me}-{int(mine) + 1}-{here}-bb", False),
        "alive": (f"{me}-{mine}-{here}-cc", True),
        "other host": (f"999999999-1-{'0' * 8 if here != '0' * 8 else '1' * 8}-dd", True),
        "unknown format": ("whatever", True),
        "old output of a dead run": (f"old-999999999-1-{here}", False),
    }
    for name, _ in folders.values():
        (tmp_path / f".out.lemonkit-{name}").mkdir()
    assert main(["-q", "expand", str(source), str(out), "--hidden-size", "96"]) == 0
    for what, (name, kept) in folders.items():
        assert (tmp_path / f".out.lemonkit-{name}").exists() == kept, what


def test_the_umask_is_respected(source, tmp_path):
    old = os.umask(0o027)
    try:
        assert main(["-q", "expand", str(source), str(tmp_path / "out"), "--num-layers", "3"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750
    shutil.rmtree(tmp_path / "out")
