"""A new block's untying noise lands on its replicated units only (drawn for them alone
where one producer axis has replicas), and is the same chunked or whole."""

import dataclasses

import torch

from lemonkit.engine.rules import copy_ranks
from lemonkit.engine.tensor import expand_tensor, iter_expand_tensor
from lemonkit.plan.decisions import decide
from lemonkit.plan.planner import make_plan
from lemonkit.tables.format import Out, space_names
from lemonkit.testing.zoo import build


def _replica_mask(plan, d) -> torch.Tensor:
    mask = torch.zeros(d.shape, dtype=torch.bool)
    for axis, rule in enumerate(d.axes):
        if isinstance(rule, Out):
            maps = [plan.maps[n] for n in space_names(rule.space)]
            flags = torch.cat([copy_ranks(m.channel_sources())[1] > 1 for m in maps])
            shape = [1] * len(d.shape)
            shape[axis] = -1
            mask |= flags.view(shape)
    return mask


def test_untie_noise_touches_only_replicated_units():
    model = build("llama", dtype=torch.float32, layers=2)
    sd = model.state_dict()
    infos = {n: (t.dtype, tuple(t.shape)) for n, t in sd.items()}
    plan = make_plan(model.config, hidden_size=96, intermediate_size=200, num_layers=4)
    untied = [d for d in decide(plan, infos) if d.untie]
    assert untied
    for d in untied:
        noisy = expand_tensor(plan, d, sd[d.source])
        plain = expand_tensor(plan, dataclasses.replace(d, untie=0.0), sd[d.source])
        moved = noisy != plain
        mask = _replica_mask(plan, d)
        assert mask.any() and not (moved & ~mask).any(), d.name
        assert moved[mask].float().mean() > 0.99, d.name  # every replica's entry moved
        chunks = list(iter_expand_tensor(plan, d, sd[d.source]))
        assert torch.equal(torch.cat(chunks) if len(chunks) > 1 else chunks[0], noisy)
