"""The repository stays small: no virtualenvs, checkpoints or large files are tracked.

A submission over the size limit is refused whole (one was, for a committed virtualenv),
so a commit that adds one must fail the suite before it is pushed.
"""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 1_000_000  # the largest committed plot is ~0.2 MB
FORBIDDEN_PARTS = {".venv", "site-packages", "__pycache__", ".hypothesis"}
FORBIDDEN_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".whl"}


def tracked_files() -> list[Path]:
    """Files git tracks below the repository root (empty outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return [ROOT / p for p in out.decode().split("\0") if p]


def test_no_large_or_generated_files_are_tracked():
    files = tracked_files()
    if not files:
        pytest.skip("not a git checkout")
    bad = []
    for path in files:
        rel = path.relative_to(ROOT)
        if FORBIDDEN_PARTS & set(rel.parts) or any(part.startswith(".venv") for part in rel.parts):
            bad.append(f"{rel} (generated folder)")
        elif path.suffix in FORBIDDEN_SUFFIXES:
            bad.append(f"{rel} (weights)")
        elif path.is_file() and path.stat().st_size > MAX_BYTES:
            bad.append(f"{rel} ({path.stat().st_size} bytes)")
    assert not bad, "tracked files that do not belong in git:\n" + "\n".join(bad)
