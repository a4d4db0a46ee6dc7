"""ResNet (bottleneck): per-stage channels replicated circularly through BatchNorm,
new bottleneck blocks with their last BatchNorm at zero (measured: NOTES.md had only the
reasoning)."""

import pytest
import torch
from transformers import ResNetForImageClassification

import lemonkit
from lemonkit.cli.main import main
from lemonkit.errors import ImpossibleExpansionError
from lemonkit.testing.zoo import resnet

CASES = {
    "double width": dict(hidden_sizes=[32, 64]),
    "x1.5 width and stem": dict(hidden_sizes=[24, 48], embedding_size=12),
    "uneven widths": dict(hidden_sizes=[24, 56]),
    "depth": dict(depths=[3, 5]),
    "everything": dict(hidden_sizes=[24, 56], depths=[4, 3], embedding_size=16),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resnet_expansions_are_lossless(case):
    small = resnet()
    big = lemonkit.expand(small, **CASES[case])
    assert type(big) is ResNetForImageClassification
    report = lemonkit.verify(small, big)
    assert report.ok and report.rel_error_fp64 <= 1e-12, report


def test_resnet_float32_and_through_the_cli(tmp_path):
    small = resnet(dtype=torch.float32)
    small.save_pretrained(tmp_path / "small")
    out = tmp_path / "big"
    args = [
        "-q",
        "expand",
        str(tmp_path / "small"),
        str(out),
        "--hidden-sizes",
        "24,48",
        "--depths",
        "3,3",
        "--embedding-size",
        "12",
    ]
    assert main(args) == 0
    assert main(["-q", "verify", str(tmp_path / "small"), str(out)]) == 0
    big = ResNetForImageClassification.from_pretrained(out)
    assert big.config.hidden_sizes == [24, 48] and big.config.depths == [3, 3]


def test_replicated_channels_diverge_with_lemon_only():
    small = resnet(depths=[2, 2])
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3])
    gaps = {}
    for method in ("lemon", "net2net"):
        big = lemonkit.expand(small, hidden_sizes=[32, 64], method=method).train()
        torch.optim.SGD(big.parameters(), lr=0.1).zero_grad()
        loss = torch.nn.functional.cross_entropy(big(x).logits, labels)
        loss.backward()
        conv = big.resnet.encoder.stages[1].layers[1].layer[0].convolution.weight  # [mid, 64]
        grad = conv.grad
        gaps[method] = float((grad[:8] - grad[8:]).norm() / grad[:8].norm())  # mid copies
    assert gaps["net2net"] < 1e-10 < 1e-4 < gaps["lemon"], gaps


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(depths=[2, 3], hidden_size=64), "grows per stage"),
        (dict(hidden_sizes=[18, 32]), "multiple of the bottleneck reduction"),
        (dict(hidden_sizes=[32]), "one per stage"),
    ],
)
def test_resnet_refusals(kwargs, message):
    with pytest.raises(ImpossibleExpansionError, match=message):
        lemonkit.expand(resnet(), **kwargs)


def test_single_block_stage_cannot_grow_deeper():
    with pytest.raises(ImpossibleExpansionError, match="single block"):
        lemonkit.expand(resnet(depths=[1, 2]), depths=[2, 2])
