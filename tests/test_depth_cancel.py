"""Type-2 depth (``depth="cancel"``, LEMON figure 5c): new blocks whose paired units
cancel. Exact like every other expansion, exactly zero in bfloat16, and no tied unit
after one SGD step (float64: in float32 a few query/key updates fall below the
weights' last bit in one step)."""

import os

import pytest
import torch

import lemonkit
from lemonkit.cli import main
from lemonkit.testing.untie import train, unexplained_ties
from lemonkit.testing.zoo import BUILDERS, build, exact_width

# one family per structure: Conv1D, GQA, fused per-head qkv, norms over all heads, sinks
# and [gate, up] pairs, MLA, shared expert, Post-LN, images, alternating attention, ReLU
COVER = ["gpt2", "llama", "gpt_neox", "olmo2", "gpt_oss", "deepseek_v3", "qwen2_moe", "bert"]
COVER += ["vit", "modernbert", "opt"]
ARCHS = list(BUILDERS) if os.environ.get("LEMONKIT_LONG") else COVER


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("width", [False, True], ids=["depth-only", "width-and-depth"])
def test_cancel_is_exact_and_unties_in_one_step(arch, width):
    small = build(arch)
    sizes = dict(hidden_size=exact_width(arch), num_layers=3) if width else dict(num_layers=4)
    big = lemonkit.expand(small, depth="cancel", **sizes)
    report = lemonkit.verify(small, big)
    assert report.ok, report
    seen = train(big, steps=1, optimizer="sgd", lr=1e-2)
    assert unexplained_ties(big, seen) == {}


def test_type1_new_blocks_start_with_zeros_and_type2_do_not():
    small = build("llama")
    name = "model.layers.2.mlp.down_proj.weight"
    zero = lemonkit.expand(small, num_layers=3).state_dict()[name]
    cancel = lemonkit.expand(small, num_layers=3, depth="cancel").state_dict()[name]
    assert not zero.any()
    assert cancel.ne(0).float().mean() > 0.4  # depth-only: half the units pair up


def test_bf16_cancellation_is_exact():
    """alpha and -alpha are exact negatives in bfloat16; the block's output is zero up to
    the float32 accumulation of the matmul (pairs j and j + F are summed apart), far below
    the stream's last bit: the logits are bit for bit the source's."""
    small = build("llama", dtype=torch.bfloat16)
    big, plan = lemonkit.expand(
        small,
        hidden_size=128,
        intermediate_size=192,
        num_layers=3,
        depth="cancel",
        return_plan=True,
    )
    assert plan.new_layers == [False, False, True]
    block = big.model.layers[2]
    down = block.mlp.down_proj.weight
    f = down.shape[1] // 2
    assert down.dtype == torch.bfloat16 and down.any()
    assert torch.equal(down[:, :f], -down[:, f:])  # each copy pair: alpha, -alpha
    x = torch.randn(2, 5, 128, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    with torch.no_grad():  # the pairs' products cancel; only float32 accumulation remains
        out, scale = block.mlp(x).float(), down.float().abs().max()
        assert out.abs().max() < 1e-6 * scale
    ids = torch.randint(0, 97, (2, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(small(ids).logits, big(ids).logits)


def test_cancel_saves_reloads_and_generates(tmp_path):
    small = build("gpt2")
    big = lemonkit.expand(small, hidden_size=128, num_layers=4, depth="cancel")
    big.save_pretrained(tmp_path)
    reloaded = type(big).from_pretrained(tmp_path, torch_dtype=torch.float64).eval()
    assert lemonkit.verify(small, reloaded).ok
    prompt = torch.randint(1, 97, (2, 5), generator=torch.Generator().manual_seed(3))
    kwargs = dict(max_new_tokens=10, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        assert torch.equal(small.generate(prompt, **kwargs), reloaded.generate(prompt, **kwargs))


def test_cancel_through_the_cli(tmp_path, capsys):
    build("llama", dtype=torch.float32).save_pretrained(tmp_path / "src")
    args = [str(tmp_path / "src"), "--num-layers", "3", "--depth", "cancel", "--sigma", "0.01"]
    assert main(["plan", *args]) == 0
    text = capsys.readouterr().out
    assert "cancelling" in text and "N(0, 0.01^2)" in text
    assert main(["-q", "expand", *args[:1], str(tmp_path / "out"), *args[1:]]) == 0
    record = lemonkit.io.files.read_provenance(tmp_path / "out")
    assert record["plan"]["depth"] == "cancel" and record["plan"]["sigma"] == 0.01


def test_cancel_is_refused_for_staged_models():
    from lemonkit.testing.zoo import resnet

    with pytest.raises(lemonkit.ImpossibleExpansionError, match="cancel"):
        lemonkit.expand(resnet(), depths=[2, 2, 2, 2], depth="cancel")


@pytest.mark.parametrize("depth", ["zero", "cancel"])
def test_divisible_width_with_a_tied_head_unties_at_the_second_step(depth):
    """What README says (found by review): at 64 -> 128 the top source block's stream
    copies get the same gradient at the first step (final norm and tied head are the same
    for every copy; a new block passes none back), with either depth rule; not after two."""
    big = lemonkit.expand(build("gpt2"), hidden_size=128, num_layers=3, depth=depth)
    first = unexplained_ties(big, train(big, steps=1, optimizer="sgd", lr=1e-2))
    assert set(first) >= {"transformer.h.1.mlp.c_proj.weight"}
    assert unexplained_ties(big, train(big, steps=1, optimizer="sgd", lr=1e-2)) == {}


def test_aki_donor_with_cancel_is_refused():
    """Pairing overwrites the donor's units in a new block, so AKI + cancel would silently
    be cancel alone: refused with its reason."""
    with pytest.raises(lemonkit.ImpossibleExpansionError, match="donor"):
        lemonkit.expand(
            build("llama"),
            hidden_size=96,
            num_layers=4,
            method="aki",
            depth="cancel",
            allow_lossy=True,
        )
