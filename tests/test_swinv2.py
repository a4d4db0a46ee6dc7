"""Swin-v2 (Res-Post-Norm, paper appendix D.1): grown through its own config names, per
stage, exact at multiples of embed_dim, refused (or measured) otherwise."""

import pytest
import torch
from safetensors import safe_open
from transformers import Swinv2ForImageClassification, Swinv2Model

import lemonkit
from lemonkit.cli.main import main
from lemonkit.errors import ImpossibleExpansionError
from lemonkit.testing.zoo import swinv2

# source: embed_dim 16 (stages 16, 32), heads [2, 4] (head_dim 8), depths [2, 2], mlp 2x
CASES = {
    "double width": dict(embed_dim=32),
    "triple width": dict(embed_dim=48),
    "depth": dict(depths=[3, 5]),
    "mlp ratio": dict(mlp_ratio=3.5),
    "everything": dict(embed_dim=32, num_heads=[4, 8], depths=[4, 3], mlp_ratio=3.0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_swinv2_expansions_are_lossless(case):
    small = swinv2()
    big = lemonkit.expand(small, **CASES[case])
    assert type(big) is Swinv2ForImageClassification
    report = lemonkit.verify(small, big)
    assert report.ok and report.rel_error_fp64 <= 1e-12, report


def test_the_issues_example_grows_through_swins_own_names():
    small = swinv2(embed_dim=8, num_heads=[1, 2])
    big = lemonkit.expand(small, embed_dim=24, num_heads=[3, 6], depths=[2, 3])
    cfg = big.config
    assert (cfg.embed_dim, cfg.num_heads, cfg.depths, cfg.hidden_size) == (24, [3, 6], [2, 3], 48)
    assert lemonkit.verify(small, big).rel_error_fp64 <= 1e-12


def test_float32_source_within_float32_tolerance():
    small = swinv2(dtype=torch.float32)
    big = lemonkit.expand(small, embed_dim=32, depths=[3, 3])
    report = lemonkit.verify(small, big)
    assert next(big.parameters()).dtype == torch.float32
    assert report.ok and report.rel_error_fp32 <= report.tol_fp32, report


def test_through_the_cli_folder_path(tmp_path):
    """save_pretrained -> lemonkit expand -> lemonkit verify -> from_pretrained; the
    folder holds the names the class saves (those of its state dict)."""
    small = swinv2(dtype=torch.float32)
    small.save_pretrained(tmp_path / "small")
    with safe_open(tmp_path / "small" / "model.safetensors", "pt") as f:
        assert set(f.keys()) == set(small.state_dict())
    out = tmp_path / "big"
    args = ["-q", "expand", str(tmp_path / "small"), str(out), "--embed-dim", "32"]
    assert main([*args, "--num-heads", "4,8", "--depths", "2,3", "--mlp-ratio", "3"]) == 0
    assert main(["-q", "verify", str(tmp_path / "small"), str(out)]) == 0
    big = Swinv2ForImageClassification.from_pretrained(out)
    assert (big.config.embed_dim, big.config.depths, big.config.mlp_ratio) == (32, [2, 3], 3.0)
    assert lemonkit.verify(small, big).ok


def test_headless_swinv2_model():
    torch.manual_seed(0)
    small = Swinv2Model(swinv2().config).double().eval()
    big = lemonkit.expand(small, embed_dim=32, depths=[3, 3])
    assert type(big) is Swinv2Model
    assert lemonkit.verify(small, big).rel_error_fp64 <= 1e-12


def test_indivisible_width_is_refused_then_measured():
    """NOTES.md 7: the final LayerNorm reads the zero-filled stream."""
    small = swinv2()
    with pytest.raises(ImpossibleExpansionError, match="final LayerNorm"):
        lemonkit.expand(small, embed_dim=24)
    big, plan = lemonkit.expand(small, embed_dim=24, allow_lossy=True, return_plan=True)
    report = lemonkit.verify(small, big)
    assert plan.lossy_reason and not report.ok
    assert 1e-6 < report.rel_error_fp64 < 0.5  # an approximation, not garbage


def test_new_blocks_keep_the_shifted_window_alternation(monkeypatch):
    """Odd blocks attend in shifted windows: growing a stage by one block after each
    source block would move a shifted block to an even slot (not exact); new blocks come
    in pairs instead."""
    import lemonkit.plan.pyramid as pyramid
    from lemonkit.plan.layers import default_layer_map

    small = swinv2()
    big, plan = lemonkit.expand(small, depths=[3, 5], return_plan=True)
    assert plan.groups["stage1"].layer_map == (0, 1, 0, 1, 0)
    assert lemonkit.verify(small, big).rel_error_fp64 == 0.0
    monkeypatch.setattr(pyramid, "periodic_layer_map", lambda s, t, p: default_layer_map(s, t))
    naive = lemonkit.verify(small, lemonkit.expand(small, depths=[3, 5]))
    assert naive.rel_error_fp64 > 1e-6


def test_replicated_units_diverge_with_lemon_only():
    small = swinv2(randomize_norms=False)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3])
    gaps = {}
    for method in ("lemon", "net2net"):
        big = lemonkit.expand(small, embed_dim=32, method=method).train()
        loss = torch.nn.functional.cross_entropy(big(x).logits, labels)
        loss.backward()
        fc = big.swinv2.encoder.layers[1].blocks[1].intermediate.dense.weight  # [128, 64]
        grad = fc.grad
        gaps[method] = float((grad[:64] - grad[64:]).norm() / grad[:64].norm())  # MLP copies
    assert gaps["net2net"] < 1e-10 < 1e-4 < gaps["lemon"], gaps


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(hidden_size=32), "grows per stage"),
        (dict(num_heads=[3, 8], embed_dim=32), "head_dim"),
        (dict(num_heads=4, embed_dim=32), "one per stage"),
        (dict(depths=[3]), "one per stage"),
        (dict(embed_dim=20), "multiple of its head_dim"),
        (dict(embed_dim=8), "smaller"),
        (dict(method="aki", allow_lossy=True), "Transformer stacks"),
    ],
)
def test_swinv2_refusals(kwargs, message):
    with pytest.raises(ImpossibleExpansionError, match=message):
        lemonkit.expand(swinv2(), **kwargs)


def test_one_number_of_heads_is_refused_for_one_stream_models():
    from lemonkit.testing.zoo import build

    with pytest.raises(ImpossibleExpansionError, match="one number"):
        lemonkit.expand(build("llama"), num_heads=[8, 8])
