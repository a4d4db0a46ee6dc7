"""A model lemonkit does not know: the nanoGPT-style GPT of examples/nanogpt.py, declared
with a table, gets the same expansion, verification and CLI."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import lemonkit
from helpers import save_nanogpt_source
from lemonkit.cli.main import main
from lemonkit.io.load import load_model

EXAMPLE = Path(__file__).parent.parent / "examples" / "nanogpt.py"


@pytest.fixture(scope="module")
def nanogpt():
    spec = importlib.util.spec_from_file_location("nanogpt_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registers its table
    return module


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(hidden_size=128),
        dict(hidden_size=96, intermediate_size=300),
        dict(num_layers=5),
        dict(hidden_size=160, num_layers=3, intermediate_size=400),
    ],
)
def test_user_model_expands_losslessly(nanogpt, kwargs):
    torch.manual_seed(0)
    small = nanogpt.NanoGPT(nanogpt.NanoGPTConfig()).double().eval()
    big = lemonkit.expand(small, **kwargs)
    assert type(big).__name__ == "NanoGPT"
    assert big.lm_head.weight is big.wte.weight  # still tied
    report = lemonkit.verify(small, big)
    assert report.ok and report.rel_error_fp64 <= 1e-12, report


def test_user_model_through_the_cli(nanogpt, tmp_path):
    torch.manual_seed(0)
    src = tmp_path / "small"
    save_nanogpt_source(nanogpt, src)
    out = tmp_path / "big"
    plugin = ["--plugin", str(EXAMPLE)]
    assert (
        main(
            [
                *plugin,
                "-q",
                "expand",
                str(src),
                str(out),
                "--hidden-size",
                "96",
                "--num-layers",
                "3",
            ]
        )
        == 0
    )
    assert json.loads((out / "config.json").read_text())["n_embd"] == 96
    assert main([*plugin, "-q", "verify", str(src), str(out)]) == 0
    assert type(load_model(out)).__name__ == "NanoGPT"
    assert "nanogpt" in lemonkit.supported_model_types()
