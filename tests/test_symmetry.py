"""Symmetry breaking (paper 4.1, NOTES.md 8): after one optimizer step, replicated units
differ with LEMON's unequal splits and stay identical with Net2Net's equal ones."""

import pytest
import torch

import lemonkit
from lemonkit.testing.zoo import BUILDERS, build, exact_width, mlp_size


def _mlp_preactivations(model, x):
    """Pre-activations of layer 0's MLP hidden units, [tokens, F]."""
    captured = {}
    layer = model.transformer.h[0].mlp.c_fc
    handle = layer.register_forward_hook(lambda m, i, o: captured.setdefault("h", o))
    model(x)
    handle.remove()
    return captured["h"].reshape(-1, captured["h"].shape[-1])


def _one_step(model, x, optimizer_cls):
    model.train()
    opt = optimizer_cls(model.parameters(), lr=1e-2)
    loss = model(x, labels=x).loss
    loss.backward()
    opt.step()
    model.eval()


@pytest.mark.parametrize("optimizer_cls", [torch.optim.SGD, torch.optim.AdamW])
def test_replicas_diverge_with_lemon_and_not_with_net2net(optimizer_cls):
    small = build("gpt2", randomize_norms=False)
    x = torch.randint(0, 97, (4, 12), generator=torch.Generator().manual_seed(0))
    gaps = {}
    for method in ("lemon", "net2net"):
        big = lemonkit.expand(small, hidden_size=128, intermediate_size=512, method=method)
        f_src = small.config.n_inner or 4 * small.config.n_embd
        with torch.no_grad():
            h0 = _mlp_preactivations(big, x)
        torch.testing.assert_close(h0[:, :f_src], h0[:, f_src:], rtol=1e-10, atol=1e-10)
        _one_step(big, x, optimizer_cls)
        with torch.no_grad():
            h = _mlp_preactivations(big, x)
        gaps[method] = float((h[:, :f_src] - h[:, f_src:]).norm() / h[:, :f_src].norm())
    assert gaps["net2net"] < 1e-10, gaps
    assert gaps["lemon"] > 1e-4, gaps


def test_plan_records_the_symmetry_choices():
    _, plan = lemonkit.expand(build("gpt2"), hidden_size=96, return_plan=True)
    record = plan.to_json()
    assert "unequal" in record["symmetry_breaking"]
    assert record["seed"] == 0


def test_seed_changes_splits_but_not_the_function():
    small = build("llama")
    a = lemonkit.expand(small, hidden_size=128, seed=0)
    b = lemonkit.expand(small, hidden_size=128, seed=1)
    c = lemonkit.expand(small, hidden_size=128, seed=0)
    w = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(a.state_dict()[w], b.state_dict()[w])
    assert torch.equal(a.state_dict()[w], c.state_dict()[w])
    assert lemonkit.verify(small, b).ok


def _first_mlp_producer(model):
    """The first layer's weight whose axis writes the MLP space, that axis, and the
    channels of one MLP unit (2 for gpt-oss's interleaved [gate_j, up_j] pairs)."""
    from lemonkit.tables import table_for
    from lemonkit.tables.format import Out

    table = table_for(model.config.model_type)
    units = {"mlp": 1, **{d.name: d.unit_size for d in table.derived if d.base == "mlp"}}
    params = dict(model.named_parameters())
    for spec in table.tensors:
        for axis, rule in enumerate(spec.axes):
            name = spec.name.replace("{i}", "0")
            space = rule.space if isinstance(rule, Out) else None
            first = space[0] if isinstance(space, tuple) else space  # fused [gate; up]: gate
            if first in units and name in params:
                return params[name], axis, units[first]
    raise AssertionError("no MLP producer")


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_every_architecture_breaks_symmetry_with_lemon_only(arch):
    """Replicated MLP units get different gradients with LEMON's splits, identical ones
    with Net2Net's (so they would stay identical for ever)."""
    from lemonkit.verification.compare import random_inputs

    small = build(arch, randomize_norms=False)
    small.config._experts_implementation = "eager"  # MoE kernels refuse float64
    f_src = mlp_size(small)
    gaps = {}
    for method in ("lemon", "net2net"):
        big = lemonkit.expand(
            small, intermediate_size=2 * f_src, hidden_size=exact_width(arch), method=method
        )
        inputs = random_inputs(small.config, 2, 8, seed=0)
        out = big(**inputs)
        (out.logits.double() ** 2).mean().backward()
        weight, axis, unit = _first_mlp_producer(big)
        grad = weight.grad.movedim(axis, 0)  # replicas of unit j: rows j and j + F
        f = f_src * unit
        gaps[method] = float((grad[:f] - grad[f : 2 * f]).norm() / grad[:f].norm())
    assert gaps["net2net"] < 1e-10, gaps
    assert gaps["lemon"] > 1e-4, gaps
