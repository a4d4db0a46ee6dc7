"""``split="paper"``: LEMON C.4's additive split W/c + Phi_j, Phi ~ N(0, sigma^2), the
copies summing to W exactly in the storage dtype; sigma per family (C.4)."""

import pytest
import torch

import lemonkit
from lemonkit.engine.rules import expand_in
from lemonkit.plan.spaces import circular_map
from lemonkit.testing.untie import train, unexplained_ties
from lemonkit.testing.zoo import build, exact_width


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("copies", [2, 3])
def test_additive_copies_sum_exactly(dtype, copies):
    gen = torch.Generator().manual_seed(0)
    w = (torch.randn(64, 32, generator=gen) * 0.02).to(dtype)
    w[0, :4] = torch.tensor([0.0, 1e-30, -3e-6, 5.0])  # zero, subnormal-ish, small, large
    compute = torch.float32 if dtype == torch.bfloat16 else torch.float64
    space = circular_map(32, 32 * copies)
    out = expand_in(w.to(compute), 1, space, "paper", gen, dtype, sigma=0.002).to(dtype)
    pieces = out.split(32, dim=1)
    rest = w.to(compute)  # W - p0 - p1 - ...: exact steps (a running sum may round in f64)
    for p in pieces:
        rest = rest - p.to(compute)
    assert not rest.any()
    assert not torch.equal(pieces[0], pieces[1])
    # additive: the deviation from W/c does not scale with W (most of it is sigma's)
    dev = (pieces[0].double() - w.double() / copies).std()
    assert 0.0005 < float(dev) < 0.004


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bert", "vit", "mixtral"])
def test_paper_split_is_lossless(arch):
    small = build(arch)
    big = lemonkit.expand(small, hidden_size=exact_width(arch), num_layers=3, split="paper")
    assert lemonkit.verify(small, big).ok


def test_paper_split_unties():
    big = lemonkit.expand(build("gpt2", dtype=torch.float32), hidden_size=128, split="paper")
    seen = train(big, steps=60)
    assert unexplained_ties(big, seen) == {}


def test_sigma_defaults_per_family_and_record():
    _, vit = lemonkit.expand(build("vit"), hidden_size=128, return_plan=True)
    _, llama = lemonkit.expand(build("llama"), hidden_size=128, split="paper", return_plan=True)
    assert vit.sigma == 0.02 and llama.sigma == 0.002
    record = llama.to_json()
    assert record["split"] == "paper" and "additive" in record["symmetry_breaking"]
    assert vit.to_json()["split"] == "lemon"
    with pytest.raises(lemonkit.ImpossibleExpansionError, match="split must be one of"):
        lemonkit.make_plan(build("llama").config, split="nope")


def test_spread_zero_is_equal_splits_and_below_one_stays_exact():
    small = build("gpt2")
    w = "transformer.h.0.mlp.c_fc.weight"  # [in, out]: rows j and j + 64 are the halves
    flat = lemonkit.expand(small, hidden_size=128, spread=0.0).state_dict()[w]
    assert torch.equal(flat[:64], flat[64:])
    wide = lemonkit.expand(small, hidden_size=96, num_layers=3, spread=0.95)
    assert lemonkit.verify(small, wide).ok
    with pytest.raises(lemonkit.ImpossibleExpansionError, match="spread must be in"):
        lemonkit.expand(small, hidden_size=128, spread=1.0)


@pytest.mark.parametrize("sigma", [float("nan"), float("inf"), -0.01])
def test_sigma_must_be_a_finite_standard_deviation(sigma):
    """NaN or infinite sigma used to write NaN weights (inf noise on a new block's fan-in
    times its zeroed branch, alpha - alpha, clipped NaN in the additive split)."""
    small = build("llama")
    with pytest.raises(lemonkit.ImpossibleExpansionError, match="sigma must be"):
        lemonkit.expand(small, hidden_size=128, num_layers=3, sigma=sigma, split="paper")
