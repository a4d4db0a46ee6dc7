"""``new_blocks="next"`` (LEMON C.4 for language models, after AKI): a new block's free
parameters come from the next adjacent source layer; still lossless (its output is zero)."""

import pytest
import torch

import lemonkit
from lemonkit.cli import main
from lemonkit.testing.zoo import build, exact_width

Q = "model.layers.{}.self_attn.q_proj.weight"


def test_new_blocks_take_the_next_layer():
    small = build("llama")
    src = small.state_dict()
    copy = lemonkit.expand(small, num_layers=4).state_dict()  # layer map 0, 0, 1, 1
    nxt = lemonkit.expand(small, num_layers=4, new_blocks="next").state_dict()
    assert torch.equal(copy[Q.format(1)], src[Q.format(0)])
    assert torch.equal(nxt[Q.format(1)], src[Q.format(1)])  # the next layer's
    assert torch.equal(nxt[Q.format(3)], src[Q.format(1)])  # top layer: its own
    assert not nxt["model.layers.1.mlp.down_proj.weight"].any()  # the branch stays zero


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bert", "deepseek_v3", "modernbert", "gemma3"])
@pytest.mark.parametrize("depth", ["zero", "cancel"])
def test_next_is_lossless(arch, depth):
    small = build(arch)
    big = lemonkit.expand(
        small, hidden_size=exact_width(arch), num_layers=4, new_blocks="next", depth=depth
    )
    assert lemonkit.verify(small, big).ok


def test_next_is_recorded_and_a_flag(tmp_path, capsys):
    _, plan = lemonkit.expand(build("gpt2"), num_layers=3, new_blocks="next", return_plan=True)
    assert plan.to_json()["options"]["new_blocks"] == "next"
    assert "next adjacent" in plan.to_json()["new_blocks"]
    build("gpt2", dtype=torch.float32).save_pretrained(tmp_path)
    assert main(["plan", str(tmp_path), "--num-layers", "3", "--new-blocks", "next"]) == 0
    with pytest.raises(lemonkit.ImpossibleExpansionError, match="new_blocks must be one of"):
        lemonkit.make_plan(build("gpt2").config, new_blocks="previous")


def test_next_is_refused_with_stacked_blocks():
    """A stacked block has no zero output: "next" took its branch from the next layer
    and its last linears (o_proj, down_proj) from its own, a block of neither."""
    with pytest.raises(lemonkit.ImpossibleExpansionError, match="zero-output"):
        lemonkit.expand(
            build("llama"), num_layers=4, depth="stack", allow_lossy=True, new_blocks="next"
        )
