"""The per-axis algebra of rules.py, on plain tensors."""

import pytest
import torch

from lemonkit.engine.rules import expand_beta, expand_gamma, expand_in, expand_out
from lemonkit.plan.spaces import circular_map, stream_map


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("method", ["lemon", "equal"])
def test_consumer_copies_sum_to_the_original(method):
    w = torch.randn(5, 6, dtype=torch.float64)
    m = stream_map(6, 15, fill="zero")  # 2 copies + 3 extras
    out = expand_in(w, 1, m, method, _gen())
    x = torch.randn(6, dtype=torch.float64)
    x_zero = torch.cat([x, x, torch.zeros(3, dtype=torch.float64)])
    torch.testing.assert_close(out @ x_zero, w @ x, rtol=1e-13, atol=1e-13)


def test_lemon_splits_are_unequal_and_net2net_equal():
    w = torch.randn(4, 3, dtype=torch.float64)
    m = circular_map(3, 6)
    lemon = expand_in(w, 1, m, "lemon", _gen())
    net2net = expand_in(w, 1, m, "equal", _gen())
    assert (lemon[:, :3] - lemon[:, 3:]).abs().min() > 0
    torch.testing.assert_close(net2net[:, :3], net2net[:, 3:], rtol=0, atol=0)
    torch.testing.assert_close(net2net[:, :3], w / 2)


def test_producer_average_fill_is_the_mean_row():
    w = torch.randn(4, 3, dtype=torch.float64)
    out = expand_out(w, 0, stream_map(4, 6, fill="avg"))
    torch.testing.assert_close(out[4], w.mean(0))
    torch.testing.assert_close(out[5], w.mean(0))
    zero = expand_out(w, 0, stream_map(4, 6, fill="zero"))
    assert zero[4:].abs().max() == 0


@pytest.mark.parametrize("tgt", [96, 128, 200])
def test_layernorm_with_sqrt_eta_is_lossless(tgt):
    """NOTES.md 1: gamma* = eta [g.., zeta], beta* = [b.., 0], eps* = eta^2 eps."""
    ds, eps = 64, 1e-5
    g, b = torch.randn(ds, dtype=torch.float64), torch.randn(ds, dtype=torch.float64)
    m = stream_map(ds, tgt, fill="avg")
    g2 = expand_gamma(g, m, scale=1.0, extra_zero=False, gen=_gen())
    b2 = expand_beta(b, m, scale=1.0, extra_mean=False)
    x = torch.randn(7, ds, dtype=torch.float64)
    x_avg = expand_out(x, 1, m)
    y = torch.nn.functional.layer_norm(x, (ds,), g, b, eps)
    y2 = torch.nn.functional.layer_norm(x_avg, (tgt,), g2, b2, eps * m.eta**2)
    torch.testing.assert_close(y2[:, :ds], y, rtol=1e-12, atol=1e-12)
    extras = y2[:, m.copies * ds :]
    assert extras.numel() == 0 or extras.abs().max() < 1e-12  # extras are zero


def test_float16_subnormal_splits_sum_exactly():
    """Weights below fp16's smallest normal still split exactly once stored in fp16."""
    w = (torch.randn(64, 32) * 1e-5).to(torch.float16).to(torch.float32)
    out = expand_in(w, 1, circular_map(32, 64), "lemon", _gen(), torch.float16)
    stored = out.to(torch.float16).to(torch.float32)
    assert torch.equal(stored[:, :32] + stored[:, 32:], w)
