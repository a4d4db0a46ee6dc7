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


def test_sampled_std_is_close_thread_free_and_meets_every_column():
    """The extras' scale: a bounded strided sample, the same for any thread count, close
    to the full std, and every column sampled (a stride coprime to the last dimension)."""
    from lemonkit.engine.reductions import SAMPLE, sampled_std

    gen = torch.Generator().manual_seed(1)
    t = torch.randn(700, 512, generator=gen) * torch.linspace(0.01, 0.05, 512)
    before = torch.get_num_threads()
    try:
        stds = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            stds.append(sampled_std(t))
    finally:
        torch.set_num_threads(before)
    assert stds[0] == stds[1]
    assert abs(stds[0] - fixed_std(t)) < 0.02 * fixed_std(t)
    small = t[:100]  # at most SAMPLE elements: the full std
    assert sampled_std(small) == fixed_std(small) and small.numel() <= SAMPLE
    marked = torch.zeros(700, 512)
    marked[:, 7] = 1.0  # one column: sampled only if the stride meets it
    assert sampled_std(marked) > 0.0
    assert sampled_std(t.T) == sampled_std(t.T.contiguous())  # any layout: logical order


def test_output_dtype_path_is_thread_count_independent():
    """A bf16 LLaMA grown in width and depth (extras-only tensors and untied new blocks on
    the output-dtype path, sampled stds): the same bytes with 1 and 2 torch threads."""
    small = build("llama", dtype=torch.bfloat16, layers=2)
    grown = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            big = lemonkit.expand(small, hidden_size=96, intermediate_size=200, num_layers=3)
            grown.append(big.state_dict())
    finally:
        torch.set_num_threads(before)
    assert grown[0].keys() == grown[1].keys()
    for name in grown[0]:
        assert torch.equal(grown[0][name].view(-1), grown[1][name].view(-1)), name
