"""The failure contract, as tests check it: one line ``lemonkit: error: ...`` on stderr,
exit 2, no traceback, no ``OUT``, no temporary folder, the source byte-identical."""

from __future__ import annotations

from pathlib import Path

from lemonkit.cli.main import main


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Hidden files a run leaves beside its output (temporary folders, locks)."""
    return [p.name for p in folder.iterdir() if ".lemonkit-" in p.name]


def assert_contract(capsys, argv: list[str], message: str, src: Path | None, out: Path | None):
    """Run the CLI in-process and check every clause of the contract."""
    before = snapshot(src) if src else None
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("lemonkit: error: "), err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err
    if out is not None:
        assert not out.exists()
        assert not leftovers(out.parent)
    if src is not None:
        assert snapshot(src) == before
    return lines[0]
