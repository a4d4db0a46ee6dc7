"""Every case of the bad-input catalogue (``lemonkit.testing.bad_inputs``) keeps the
contract, and the README's table is the catalogue's current output."""

from pathlib import Path

import pytest

from lemonkit.testing.bad_inputs import CASES, END, START, run_all, table

README = Path(__file__).parent.parent / "README.md"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_all(tmp_path_factory.mktemp("bad-inputs"))


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c.what for c in CASES])
def test_each_bad_input_keeps_the_contract(results, i):
    case, outcome, _ = results[i]
    lines = [x for x in outcome.err.splitlines() if x.strip()]
    assert outcome.code == 2, outcome.err
    assert len(lines) == 1 and lines[0].startswith("lemonkit: error: "), outcome.err
    assert case.expect in lines[0], lines[0]
    assert "Traceback" not in outcome.err and "--debug" not in lines[0]  # all foreseen
    assert outcome.source_kept and outcome.out_kept and not outcome.leftovers


def test_the_readme_shows_the_catalogue(results):
    text = README.read_text()
    assert START in text and END in text
    shown = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert shown == table(results), "regenerate: python -m lemonkit.testing.bad_inputs README.md"
