"""Growth baselines on the same engine: bert2BERT-AKI (``method="aki"``), StackBERT
(``depth="stack"``), both lossy (``allow_lossy=True``), and the lossless references they are
compared with (Net2Net / bert2BERT-FPI's exact symmetry, zero-output depth)."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import lemonkit
import lemonkit.engine.tensor
from lemonkit.cli.main import main
from lemonkit.engine.tensor import new_channels
from lemonkit.errors import ImpossibleExpansionError
from lemonkit.tables.format import Out
from lemonkit.testing.zoo import build, mlp_size, resnet

ARCHS = ["gpt2", "llama"]
# width grows in every space (stream, heads, MLP); divisible, so no random extra columns
WIDTH = dict(hidden_size=128, intermediate_size=256)


def _mlp_axes(arch: str) -> tuple[str, int, str, int]:
    """Layer-0 names of the MLP's up projection and down projection, and the axis along
    which each reads or writes the MLP space (GPT-2's Conv1D is stored [in, out])."""
    if arch == "gpt2":
        return "transformer.h.{i}.mlp.c_fc.weight", 1, "transformer.h.{i}.mlp.c_proj.weight", 0
    return "model.layers.{i}.mlp.up_proj.weight", 0, "model.layers.{i}.mlp.down_proj.weight", 1


def _width(arch: str) -> dict:
    return dict(hidden_size=128, intermediate_size=2 * mlp_size(build(arch)))


def _layer_tensors(table, sd: dict, layer: int) -> dict[str, torch.Tensor]:
    """The tensors of one layer, keyed by their table pattern."""
    out = {}
    for name, tensor in sd.items():
        found = table.match(name)
        if found and found[1] == layer:
            out[found[0].name] = tensor
    return out


def _producer_axes(spec) -> list[int]:
    return [a for a, rule in enumerate(spec.axes) if isinstance(rule, Out)]


@pytest.mark.parametrize("arch", ARCHS)
def test_aki_is_not_lossless(arch):
    small = build(arch)
    big, plan = lemonkit.expand(
        small, method="aki", allow_lossy=True, return_plan=True, **_width(arch)
    )
    report = lemonkit.verify(small, big)
    assert report.rel_error_fp64 > 1e-4, report
    assert not report.ok
    assert "aki" in plan.lossy_reason and plan.to_json()["method"] == "aki"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("num_layers", [None, 5])
def test_aki_new_units_take_the_next_layers_rows(arch, num_layers):
    """Old units' rows are the FPI expansion of their own layer; new units' rows (later
    copies along every producer axis) are the FPI expansion of the next source layer
    (seeded as that layer's first copy); the top layer is plain FPI."""
    small = build(arch, layers=3)
    targets = dict(_width(arch), num_layers=num_layers, seed=3)
    aki, plan = lemonkit.expand_state_dict(
        small.state_dict(), small.config, method="aki", allow_lossy=True, **targets
    )
    fpi, _ = lemonkit.expand_state_dict(
        small.state_dict(), small.config, method="net2net", **targets
    )
    table = plan.table
    checked = 0
    for t, s in enumerate(plan.layer_map):
        mine = _layer_tensors(table, aki, t)
        own = _layer_tensors(table, fpi, t)
        top = s + 1 == plan.source.num_layers
        nxt = own if top else _layer_tensors(table, fpi, plan.layer_map.index(s + 1))
        for pattern, tensor in mine.items():
            spec = table.spec(pattern)
            axes = _producer_axes(spec)
            if not axes or top:
                assert torch.equal(tensor, own[pattern]), (t, pattern)
                continue
            if plan.new_layers[t] and spec.branch_out:  # depth "zero": stays zero
                assert not tensor.any(), (t, pattern)
                continue
            expected = own[pattern].clone()
            for axis in axes:
                new = new_channels(plan, spec.axes[axis].space).nonzero().flatten()
                assert len(new), pattern  # every producer space grew here
                expected.index_copy_(axis, new, nxt[pattern].index_select(axis, new))
                old = torch.ones(tensor.shape[axis], dtype=torch.bool)
                old[new] = False
                assert torch.equal(
                    tensor.index_select(axis, old.nonzero().flatten()),
                    own[pattern].index_select(axis, old.nonzero().flatten()),
                ), (t, pattern)
            assert torch.equal(tensor, expected), (t, pattern)
            assert not torch.equal(tensor, own[pattern]), (t, pattern)
            checked += 1
    assert checked >= 8
    # norms, embeddings and the head stay as FPI
    for name, tensor in aki.items():
        spec, layer = table.match(name)
        if layer is None or not _producer_axes(spec):
            assert torch.equal(tensor, fpi[name]), name


@pytest.mark.parametrize("arch", ARCHS)
def test_aki_fan_out_stays_an_equal_split(arch):
    """In-axes keep FPI's equal halves, in old and new rows alike."""
    small = build(arch)
    f = mlp_size(small)
    big = lemonkit.expand(small, method="aki", allow_lossy=True, **_width(arch))
    _, _, down, axis = _mlp_axes(arch)
    w = big.state_dict()[down.format(i=0)]
    halves = w.narrow(axis, 0, f), w.narrow(axis, f, f)
    assert torch.equal(halves[0], halves[1])
    source = small.state_dict()[down.format(i=0)]
    hidden = 1 - axis  # the down projection's stream axis: old units first
    old = halves[0].narrow(hidden, 0, source.shape[hidden])
    torch.testing.assert_close(old * 2, source, rtol=0, atol=0)


def test_aki_chunked_streaming_gives_the_same_tensors(monkeypatch):
    """Donor chunks line up with the tensor's chunks whatever the chunk size."""
    small = build("llama")
    whole, _ = lemonkit.expand_state_dict(
        small.state_dict(), small.config, method="aki", allow_lossy=True, **WIDTH
    )
    monkeypatch.setattr(lemonkit.engine.tensor, "CHUNK_ELEMENTS", 300)
    chunked, _ = lemonkit.expand_state_dict(
        small.state_dict(), small.config, method="aki", allow_lossy=True, **WIDTH
    )
    assert whole.keys() == chunked.keys()
    for name in whole:
        assert torch.equal(whole[name], chunked[name]), name


def test_aki_leaves_the_source_untouched():
    small = build("llama")
    before = {n: t.clone() for n, t in small.state_dict().items()}
    lemonkit.expand(small, method="aki", allow_lossy=True, hidden_size=128, num_layers=3)
    for name, tensor in small.state_dict().items():
        assert torch.equal(tensor, before[name]), name


@pytest.mark.parametrize("arch", ARCHS)
def test_net2net_keeps_exact_symmetry(arch):
    """Replicated MLP units: identical fan-in rows, equal halves of the fan-out (their
    gradients are identical too: tests/test_symmetry.py)."""
    small = build(arch)
    f = mlp_size(small)
    big = lemonkit.expand(small, method="net2net", **_width(arch))
    sd = big.state_dict()
    up, up_axis, down, down_axis = _mlp_axes(arch)
    for layer in range(small.config.num_hidden_layers):
        w_in = sd[up.format(i=layer)]
        assert torch.equal(w_in.narrow(up_axis, 0, f), w_in.narrow(up_axis, f, f))
        w_out = sd[down.format(i=layer)]
        assert torch.equal(w_out.narrow(down_axis, 0, f), w_out.narrow(down_axis, f, f))
    assert lemonkit.verify(small, big).rel_error_fp64 <= 1e-12


@pytest.mark.parametrize("arch", ARCHS)
def test_stack_is_not_lossless_and_copies_every_layer_exactly(arch):
    small = build(arch)
    big, plan = lemonkit.expand(
        small, depth="stack", allow_lossy=True, num_layers=5, return_plan=True
    )
    assert plan.layer_map == [0, 1, 0, 1, 0]
    assert plan.to_json()["depth"] == "stack" and "stack" in plan.lossy_reason
    report = lemonkit.verify(small, big)
    assert report.rel_error_fp64 > 1e-4, report
    table = plan.table
    src, tgt = small.state_dict(), big.state_dict()
    branch_outs = 0
    for t, s in enumerate(plan.layer_map):
        mine, theirs = _layer_tensors(table, tgt, t), _layer_tensors(table, src, s)
        assert mine.keys() == theirs.keys()
        for pattern, tensor in mine.items():
            assert torch.equal(tensor, theirs[pattern]), (t, pattern)
            branch_outs += table.spec(pattern).branch_out and plan.new_layers[t]
    assert branch_outs >= 6  # the residual branches of the new blocks were copied, not zeroed


def test_stack_honours_an_explicit_layer_map_without_zeroing():
    small = build("gpt2")
    big = lemonkit.expand(small, depth="stack", allow_lossy=True, layer_map=[0, 0, 1, 1])
    name = "transformer.h.{i}.mlp.c_proj.weight"
    assert torch.equal(big.state_dict()[name.format(i=1)], small.state_dict()[name.format(i=0)])
    assert torch.equal(big.state_dict()[name.format(i=3)], small.state_dict()[name.format(i=1)])
    zero = lemonkit.expand(small, layer_map=[0, 0, 1, 1])
    assert not zero.state_dict()[name.format(i=1)].any()


def test_aki_and_stack_combine():
    """A stacked block is the AKI expansion of its source block (equal splits of a
    divisible width draw no random numbers, so the copies are identical)."""
    small = build("llama")
    sd = small.state_dict()
    both, plan = lemonkit.expand_state_dict(
        sd, small.config, method="aki", depth="stack", allow_lossy=True, num_layers=4, **WIDTH
    )
    aki, _ = lemonkit.expand_state_dict(sd, small.config, method="aki", allow_lossy=True, **WIDTH)
    assert plan.layer_map == [0, 1, 0, 1] and "aki" in plan.lossy_reason
    for t, s in enumerate(plan.layer_map):
        mine, theirs = _layer_tensors(plan.table, both, t), _layer_tensors(plan.table, aki, s)
        for pattern, tensor in mine.items():
            assert torch.equal(tensor, theirs[pattern]), (t, pattern)


@pytest.mark.parametrize("arch", ARCHS)
def test_zero_depth_stays_lossless(arch):
    small = build(arch, dtype=torch.float64)
    for targets in (dict(num_layers=5), dict(layer_map=[0, 1, 0, 1]), dict(WIDTH, num_layers=3)):
        if arch == "gpt2" and "intermediate_size" in targets:
            targets = dict(targets, intermediate_size=512)
        big, plan = lemonkit.expand(small, depth="zero", return_plan=True, **targets)
        assert plan.lossy_reason is None and plan.to_json()["depth"] == "zero"
        assert lemonkit.verify(small, big).rel_error_fp64 < 1e-12, targets


def test_bad_depth_and_baselines_on_staged_cnns_are_refused():
    with pytest.raises(ImpossibleExpansionError, match="depth must be one of"):
        lemonkit.expand(build("gpt2"), num_layers=3, depth="interleave")
    with pytest.raises(ImpossibleExpansionError, match="Transformer stacks"):
        lemonkit.expand(resnet(), hidden_sizes=[32, 64], method="aki", allow_lossy=True)


@pytest.fixture
def gpt2_dir(tmp_path) -> Path:
    path = tmp_path / "small"
    build("gpt2", dtype=torch.float32).save_pretrained(path)
    return path


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if "lemonkit" in p.name]


@pytest.mark.parametrize("flag", [["--method", "aki"], ["--depth", "stack", "--num-layers", "3"]])
def test_cli_refuses_a_lossy_baseline_without_allow_lossy(gpt2_dir, tmp_path, capsys, flag):
    out = tmp_path / "big"
    rc = main(["-q", "expand", str(gpt2_dir), str(out), "--hidden-size", "128", *flag])
    assert rc == 2
    err = capsys.readouterr().err
    assert "not lossless" in err and "--allow-lossy" in err and flag[1] in err
    assert not out.exists() and _leftovers(tmp_path) == []
    assert main(["-q", "plan", str(gpt2_dir), "--hidden-size", "128", *flag]) == 2


def test_cli_writes_aki_with_allow_lossy(gpt2_dir, tmp_path, capsys):
    out = tmp_path / "big"
    args = ["expand", str(gpt2_dir), str(out), "--hidden-size", "128", "--num-layers", "3"]
    assert main([*args, "--method", "aki", "--allow-lossy"]) == 0
    text = capsys.readouterr().out
    assert "lossy by request" in text and "method aki" in text
    big = AutoModelForCausalLM.from_pretrained(out)
    assert big.config.n_embd == 128 and big.config.n_layer == 3
    record = json.loads((out / "lemonkit.json").read_text())
    assert record["plan"]["method"] == "aki" and record["plan"]["depth"] == "zero"
    assert record["verification"]["ok"] is False  # measured, reported, not blocking
    assert _leftovers(tmp_path) == []
    # the streaming path gives what the in-memory one gives
    small = AutoModelForCausalLM.from_pretrained(gpt2_dir)
    memory = lemonkit.expand(small, hidden_size=128, num_layers=3, method="aki", allow_lossy=True)
    for name, tensor in memory.state_dict().items():
        assert torch.equal(big.state_dict()[name], tensor), name
    assert main(["-q", "verify", str(gpt2_dir), str(out)]) == 1


def test_cli_writes_stack_with_allow_lossy_and_plan_shows_the_rules(gpt2_dir, tmp_path, capsys):
    out = tmp_path / "deep"
    args = ["-q", "expand", str(gpt2_dir), str(out), "--num-layers", "4", "--depth", "stack"]
    assert main([*args, "--allow-lossy"]) == 0
    record = json.loads((out / "lemonkit.json").read_text())
    assert record["plan"]["layer_map"] == [0, 1, 0, 1] and record["plan"]["depth"] == "stack"
    plan_args = ["plan", str(gpt2_dir), "--hidden-size", "128", "--method", "aki"]
    assert main([*plan_args, "--allow-lossy"]) == 0
    text = capsys.readouterr().out
    assert "new units from transformer.h.1.mlp.c_fc.weight (AKI)" in text
    assert "LOSSY (allowed)" in text
