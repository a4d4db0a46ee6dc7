"""A fuzz test: random small models of random families, random targets (valid or not)
and random damage to the folder (config.json, the index, the safetensors header, the
data bytes, truncation). Every run must end in a verified output or in the one-line
contract, with nothing left behind and the source byte-identical.

About 120 examples of 7 families (10-20 s) in ``make test`` (derandomised: the same ones every
time); ``LEMONKIT_LONG=1`` draws 600 new ones from every family of the zoo
(``LEMONKIT_FUZZ_EXAMPLES`` sets the number)."""

import contextlib
import io
import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lemonkit.cli.main import main
from lemonkit.testing import zoo
from lemonkit.testing.bad_inputs import build_source, snapshot
from lemonkit.testing.damage import KINDS, damage_randomly

UNFORESEEN = re.compile(r"lemonkit: error: unexpected [A-Z]\w*: ")  # cli/errors.py
LONG = os.environ.get("LEMONKIT_LONG") == "1"
EXAMPLES = int(os.environ.get("LEMONKIT_FUZZ_EXAMPLES", 600 if LONG else 120))
FAST = ("gpt2", "llama", "bert", "gpt_neox", "opt", "qwen3", "resnet")
FAMILIES = (*zoo.BUILDERS, "resnet") if LONG else FAST  # every family when long
SIZES = (None, 16, 32, 48, 64, 72, 80, 96, 100, 128)

_sources: dict[str, Path] = {}
_root = Path(tempfile.mkdtemp(prefix="lemonkit-fuzz-sources-"))


def source(family: str) -> Path:
    """A saved model of ``family``, built once per session."""
    if family not in _sources:
        _sources[family] = build_source(family, _root / family)
    return _sources[family]


@st.composite
def targets(draw, family: str) -> list[str]:
    """CLI growth flags: often valid, often not."""
    if family == "resnet":
        flags = []
        if draw(st.booleans()):
            flags += ["--depths", ",".join(str(draw(st.integers(1, 4))) for _ in range(2))]
        if draw(st.booleans()):
            flags += ["--hidden-sizes", ",".join(str(draw(st.sampled_from(SIZES[1:])))
                                                 for _ in range(2))]  # fmt: skip
        return flags or ["--depths", "2,3"]
    flags = []
    valid = draw(st.integers(0, 2)) > 0  # two in three: sizes that usually work
    for flag, values in (
        ("--hidden-size", (None, 64, 96, 128) if valid else SIZES),
        ("--num-layers", (None, 2, 3, 5) if valid else (None, 1, 2, 3, 5)),
        ("--num-heads", (None,) if valid else (None, 2, 4, 6, 8)),
        ("--intermediate-size", (None, 256, 400) if valid else (None, 100, 256, 400)),
    ):
        value = draw(st.sampled_from(values))
        if value is not None:
            flags += [flag, str(value)]
    return flags or ["--num-layers", "3"]


UPCYCLE = ["--to", "mixtral", "--num-experts", "4", "--experts-per-token", "2"]


@st.composite
def runs(draw):
    """(family, command and flags, damage kind, damage seed)."""
    family = draw(st.sampled_from(FAMILIES))
    kind = draw(st.sampled_from(KINDS))
    command = draw(st.sampled_from(("expand", "expand", "expand", "plan", "upcycle")))
    flags = draw(targets(family))
    if command == "upcycle":  # into Mixtral: from LLaMA, else refused in one line
        flags = [*UPCYCLE, *flags]
    return family, [command, *flags], kind, draw(st.integers(0, 2**32 - 1))


def _check(family: str, argv: list[str], kind: str, seed: int) -> None:
    with tempfile.TemporaryDirectory(prefix="lemonkit-fuzz-") as work:
        root = Path(work)
        src = Path(shutil.copytree(source(family), root / "src"))
        what = damage_randomly(src, kind, random.Random(seed))
        before, out = snapshot(src), root / "out"
        err = io.StringIO()
        command, *flags = argv
        paths = [str(src)] if command == "plan" else [str(src), str(out)]
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["-q", command, *paths, *flags])
        err = err.getvalue()
        context = f"{family} {' '.join(argv)}, damage: {what}: {err}"
        lines = [x for x in err.splitlines() if x.strip()]
        assert snapshot(src) == before, context
        assert not [p for p in root.iterdir() if ".lemonkit-" in p.name], context
        event(f"{command}: " + ("ok" if code == 0 else "refused: " + _gist(lines)))
        if code == 0 and command == "plan":
            assert not out.exists(), context
        elif code == 0:
            record = json.loads((out / "lemonkit.json").read_text())
            assert record["verification"]["ok"], context
        else:
            assert code == 2, context
            assert len(lines) == 1 and lines[0].startswith("lemonkit: error: "), context
            assert not out.exists(), context
            assert not UNFORESEEN.match(lines[0]), context  # every failure foreseen


def _gist(lines: list[str]) -> str:
    """The refusal without names and numbers (for hypothesis' statistics)."""
    words = lines[0].removeprefix("lemonkit: error: ").split() if lines else ["?"]
    return " ".join(w for w in words[:6] if w.isalpha())


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not LONG,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(runs())
def test_fuzz_bad_folders_and_targets(run):
    torch.manual_seed(0)
    _check(*run)


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    shutil.rmtree(_root, ignore_errors=True)
