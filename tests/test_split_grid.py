"""Every copy of a split lies on the grid of its source element's last bit in the storage
dtype, so the copies sum to the element exactly: negative shares above half the element's
binade, float64 storage (where the compute dtype is the storage dtype), and bfloat16
weights near the top of the range included (found by review: the add-and-subtract
rounding only reached the grid for |v| < 2^(e-1) without extra compute bits, and a
running sum of three copies could round in float64)."""

import pytest
import torch

from lemonkit.engine.rules import expand_in, expert_piece, snap_to_grid
from lemonkit.plan.spaces import circular_map


def _weights(dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    exps = torch.randint(-20, 20, (48, 8), generator=gen).double()
    w = torch.randn(48, 8, generator=gen, dtype=torch.float64) * 2.0**exps
    w[0] = torch.finfo(dtype).max * torch.linspace(-0.99, 0.99, 8, dtype=torch.float64)
    return w.to(dtype)


def _compute(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype.itemsize <= 2 else torch.float64


def test_snap_reaches_the_grid_for_negative_values():
    ref = torch.tensor([1.0, 1.0, -1.5], dtype=torch.float64)
    odd = 0.75 + 2.0**-53  # below 1.0's grid: its last bit is 2^-53
    values = torch.tensor([-odd, odd, -1.3], dtype=torch.float64)
    got = snap_to_grid(values, ref, torch.float64)
    steps = got * 2.0**52  # the last bit of 1.0 in float64 is 2^-52
    assert torch.equal(steps, steps.round())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("split", ["lemon", "paper"])
@pytest.mark.parametrize("copies", [2, 3])
def test_split_copies_sum_exactly(dtype, split, copies):
    w, compute = _weights(dtype), _compute(dtype)
    gen = torch.Generator().manual_seed(0)
    space = circular_map(8, 8 * copies)
    out = expand_in(w.to(compute), 1, space, split, gen, dtype, sigma=0.02, spread=0.95)
    stored = out.to(dtype)
    assert torch.equal(stored.to(compute), out)  # every copy representable
    rest = w.double()  # W - p0 - p1 - ...: each step exact when the pieces are on W's grid
    for piece in stored.split(8, dim=1):
        rest = rest - piece.double()
    assert not rest.any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_diluted_expert_copies_sum_exactly(dtype):
    w, compute = _weights(dtype)[1:], _compute(dtype)
    pieces = [
        expert_piece(
            w.to(compute),
            r,
            3,
            diluted=True,
            split="lemon",
            gen=torch.Generator().manual_seed(0),
            storage=dtype,
            spread=0.95,
        ).to(dtype)
        for r in range(3)
    ]
    deviations = [p.double() - w.double() for p in pieces]  # exact: on W's grid, below |W|
    assert not (deviations[0] + deviations[1] + deviations[2]).any()
