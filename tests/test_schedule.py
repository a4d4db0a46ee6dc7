"""The LEMON schedule: warm-up, same peak, faster decay to the minimum, then flat."""

import pickle

import pytest
import torch

from lemonkit.recipe.schedule import get_lemon_schedule


def _lrs(steps, **kwargs):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=4e-3)
    sched = get_lemon_schedule(opt, **kwargs)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out, sched


@pytest.mark.parametrize("shape", ["cosine", "linear"])
def test_warmup_peak_decay_and_floor(shape):
    lrs, _ = _lrs(300, num_warmup_steps=20, num_training_steps=120, shape=shape)
    assert lrs[0] == 0.0
    assert lrs[10] == pytest.approx(2e-3)  # halfway through warm-up
    assert max(lrs) == pytest.approx(4e-3) and lrs.index(max(lrs)) == 20  # the same peak
    assert all(a >= b for a, b in zip(lrs[20:121], lrs[21:121], strict=False))  # decays
    assert lrs[120] == pytest.approx(4e-4)  # min LR at the shortened total
    assert lrs[299] == pytest.approx(4e-4)  # and stays there


def test_schedule_pickles_and_resumes():
    _, sched = _lrs(50, num_warmup_steps=10, num_training_steps=100)
    restored = pickle.loads(pickle.dumps(sched.state_dict()))
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=4e-3)
    again = get_lemon_schedule(opt, num_warmup_steps=10, num_training_steps=100)
    again.load_state_dict(restored)
    assert again.get_last_lr() == sched.get_last_lr()
    pickle.dumps(sched.lr_lambdas[0])  # no closures


def test_bad_arguments():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError):
        get_lemon_schedule(opt, 10, 5)
    with pytest.raises(ValueError):
        get_lemon_schedule(opt, 1, 5, shape="step")
