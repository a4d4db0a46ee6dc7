"""An expansion does not depend on the thread count: every reduction whose result seeds
or scales random numbers (a weight's std, the stream's mean row) runs in a fixed order
(:mod:`lemonkit.engine.reductions`)."""

import torch

import lemonkit
from lemonkit.engine.reductions import fixed_mean, fixed_std
from lemonkit.testing.zoo import build


def _expanded(threads: int) -> dict[str, torch.Tensor]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        small = build("gpt2", dtype=torch.float32, hidden=64, layers=1)
        return lemonkit.expand(small, hidden_size=160, num_layers=2).state_dict()
    finally:
        torch.set_num_threads(before)


def test_one_and_two_threads_give_the_same_bytes():
    one, two = _expanded(1), _expanded(2)
    assert one.keys() == two.keys()
    for name in one:
        assert torch.equal(one[name], two[name]), name


def test_fixed_reductions_match_torch():
    t = torch.randn(300, 70, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(fixed_mean(t, 0), t.mean(0, keepdim=True), rtol=1e-13, atol=0)
    assert abs(fixed_std(t) - float(t.std())) < 1e-13
    assert fixed_std(t[:1, :1]) == 0.0
