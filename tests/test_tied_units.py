"""No replicated unit stays tied (issue 11): every architecture, expanded with the default
construction in width (indivisible where exact, MLP ratio 2.5, heads following) and depth
together, has no two equal rows or columns in any weight after 60 AdamW steps, except
units that never received a gradient. Net2Net stays tied: the measure works."""

import pytest
import torch

import lemonkit
from lemonkit.testing.untie import train, unexplained_ties
from lemonkit.testing.zoo import BUILDERS, build, exact_width, mlp_size
from lemonkit.verification.symmetry import tied_units, total_tied


def _grow(arch: str, **options):
    small = build(arch, dtype=torch.float32)
    sizes = dict(hidden_size=exact_width(arch), intermediate_size=5 * mlp_size(small) // 2)
    return lemonkit.expand(small, num_layers=3, **sizes, **options)


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_no_replicated_unit_stays_tied(arch):
    big = _grow(arch)
    assert total_tied(tied_units(big), "all") > 0  # replicas start tied (zeroed branches)
    seen = train(big, steps=60)
    assert unexplained_ties(big, seen) == {}
    assert unexplained_ties(big, seen, near_rtol=1e-6) == {}  # not even within rounding


def test_net2net_stays_tied():
    big = lemonkit.expand(build("gpt2", dtype=torch.float32), hidden_size=128, method="net2net")
    seen = train(big, steps=60)
    ties = unexplained_ties(big, seen, near_rtol=1e-6)
    assert ties["transformer.h.0.attn.c_attn.weight"]["cols"] == 3 * 128  # every head


def test_gpt2_conv1d_copies_draw_their_own_splits():
    """[in, out] weights: the copies of a head are different columns from the start."""
    big = lemonkit.expand(build("gpt2", dtype=torch.float32), hidden_size=128)
    assert tied_units(big).get("transformer.h.0.attn.c_attn.weight", {}).get("cols", 0) == 0


def test_tied_units_counts():
    layer = torch.nn.Linear(3, 4, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1.0, 2.0], [1.0, 1.0, 2.0], [3, 3, 4], [5, 5, 7]]))
        layer.weight[3, 0] += 1e-6  # columns 0 and 1: near-tied, not tied
    counts = tied_units(layer, near_rtol=1e-6)["weight"]
    assert counts == {"rows": 2, "cols": 0, "near_rows": 2, "near_cols": 2}
    emb = torch.nn.Embedding(3, 2)
    with torch.no_grad():
        emb.weight.zero_()
    assert tied_units(emb) == {}


def test_experiments_record_tied_units_at_the_start_and_after_the_first_interval():
    from lemonkit.harness.data import TextData
    from lemonkit.harness.loop import RunConfig
    from lemonkit.harness.loop import train as run
    from lemonkit.harness.models import build_model

    gen = torch.Generator().manual_seed(0)
    data = TextData(
        torch.randint(0, 256, (5000,), generator=gen, dtype=torch.uint8),
        torch.randint(0, 256, (2000,), generator=gen, dtype=torch.uint8),
    )
    spec = {"arch": "gpt2", "hidden": 16, "layers": 1, "heads": 2}
    small = build_model(spec, "causal_lm", seq_len=8)
    big = lemonkit.expand(small, hidden_size=32, method="net2net")
    cfg = RunConfig(
        steps=4, lr=1e-3, warmup=1, batch_size=4, seq_len=8, eval_every=2, eval_batches=1
    )
    from lemonkit.harness.experiment import _tied_probe
    from lemonkit.harness.growth import tied_count

    start = tied_count(big)  # what the experiment records as tied_units_start
    hist = run(big, "causal_lm", data, cfg, probe=_tied_probe).history
    assert [("tied_units" in h) for h in hist] == [False, True, False]
    assert start > 0 and hist[1]["tied_units"] > 0  # Net2Net's replicas


def _near_by_distance_matrix(vectors: torch.Tensor, atol: float) -> int:
    """The n x n reference: rows within atol (max norm) of another row."""
    v = vectors.double()
    far = torch.cdist(v, v, p=float("inf")) > atol
    far.fill_diagonal_(True)
    return int((~far).any(dim=1).sum())


@pytest.mark.parametrize("seed", range(6))
def test_near_ties_by_projection_order_match_the_distance_matrix(seed):
    """The sorted-projection search finds exactly the near-tied rows the full distance
    matrix finds: exact copies, many zero rows, near copies and clusters of them."""
    from lemonkit.verification.symmetry import _duplicates

    g = torch.Generator().manual_seed(seed)
    w = torch.randn(300, 40, generator=g)
    w[10:60] = 0.0  # many identical rows (a grown stream's zero rows)
    w[100] = w[101]  # an exact copy
    w[200] = w[201] + 1e-7 * torch.randn(40, generator=g)  # a near copy
    w[210:215] = w[220] + 5e-7 * torch.rand(5, 40, generator=g)  # a near cluster
    w[250] = w[251] + 1e-3  # not near
    atol = 1e-6 * float(w.abs().max())
    for m in (w, w.T.contiguous()):
        assert _duplicates(m, atol) == _near_by_distance_matrix(m, atol)
    assert _duplicates(w, 0.0) == 50 + 2
