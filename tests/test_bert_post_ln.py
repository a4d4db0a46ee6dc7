"""Post-LN BERT: divisible widths by duplication, depth by moving the affine (NOTES.md 6),
and the real pretrained all-MiniLM-L6-v2 expanded from its own folder."""

import json

import pytest
import torch

import lemonkit
from helpers import load_example
from lemonkit.cli.main import main
from lemonkit.errors import ImpossibleExpansionError
from lemonkit.testing.zoo import build

minilm = load_example("minilm")
TARGET, compare, source_folder = minilm.TARGET, minilm.compare, minilm.source_folder


@pytest.mark.parametrize("eps", [1e-12, 1e-5])
def test_post_ln_depth_is_exact_up_to_eps(eps):
    small = build("bert", layer_norm_eps=eps)
    big, plan = lemonkit.expand(small, num_layers=5, hidden_size=128, return_plan=True)
    report = lemonkit.verify(small, big, tol_fp64=plan.expected_error)
    assert report.ok, report
    assert report.rel_error_fp64 <= 10 * eps
    if eps > 1e-8:  # the O(eps) term is real and measured, not hidden
        assert report.rel_error_fp64 > 1e-12


def test_post_ln_width_alone_is_exact():
    small = build("bert", layer_norm_eps=1e-5)
    assert lemonkit.verify(small, lemonkit.expand(small, hidden_size=192)).rel_error_fp64 < 1e-12


def test_post_ln_indivisible_width_is_refused():
    with pytest.raises(ImpossibleExpansionError, match="Post-LN"):
        lemonkit.expand(build("bert"), hidden_size=96)


def test_moving_the_affine_is_what_makes_depth_work(monkeypatch):
    """Without it (a plain zero-branch copy) Post-LN depth is wrong, as NOTES.md 6 says."""
    import lemonkit.plan.decisions

    small = build("bert", layer_norm_eps=1e-12)
    exact = lemonkit.verify(small, lemonkit.expand(small, num_layers=3)).rel_error_fp64
    monkeypatch.setattr(lemonkit.plan.decisions, "_post_ln", lambda plan, d, t: d)
    naive = lemonkit.verify(small, lemonkit.expand(small, num_layers=3)).rel_error_fp64
    assert exact < 1e-12
    assert naive > 1e-3


def test_real_minilm_expanded_from_its_folder(tmp_path):
    out = tmp_path / "minilm-768"
    assert main(["-q", "expand", str(source_folder()), str(out), *TARGET]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"]) == (768, 12)
    assert (config["num_attention_heads"], config["intermediate_size"]) == (24, 3072)
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == 768
    assert (out / "tokenizer.json").is_file() and (out / "modules.json").is_file()
    errors = compare(source_folder(), out)
    assert errors["float64"] < 1e-10, errors
    assert errors["float32"] < max(1e-5, 5 * errors["source_float32_vs_float64"]), errors
    record = json.loads((out / "lemonkit.json").read_text())
    assert record["verification"]["ok"]
    assert torch.tensor(record["plan"]["layer_map"]).tolist() == [i // 2 for i in range(12)]
