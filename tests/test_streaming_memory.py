"""Memory independent of block size: the engine reads only the rows each chunk copies,
and zeroed blocks come in chunks."""

from dataclasses import replace

import torch

from lemonkit.engine import iter_expand_tensor
from lemonkit.engine.lazy import LazyTensor
from lemonkit.engine.tensor import CHUNK_ELEMENTS
from lemonkit.io.memory import KEEP_BELOW, _libc, anonymous_rss, release_freed
from lemonkit.plan import make_plan
from lemonkit.plan.decisions import decide
from lemonkit.testing.zoo import build


def _llama_plan():
    model = build("llama", dtype=torch.bfloat16, layers=2)
    state = model.state_dict()
    infos = {n: (t.dtype, tuple(t.shape)) for n, t in state.items()}
    plan = make_plan(model.config, hidden_size=96, num_layers=3)
    return state, plan, decide(plan, infos, for_checkpoint=True)


def test_rows_are_read_not_the_whole_tensor():
    state, plan, decisions = _llama_plan()
    checked = 0
    for d in decisions:
        t = state[d.source]
        if t.dim() < 2 or d.op != "expand":
            continue
        asked = []

        def rows(a, b, t=t, asked=asked):
            asked.append(b - a)
            return t[a:b]

        def whole(name=d.name):
            raise AssertionError(f"{name}: the whole source was loaded")

        lazy = LazyTensor(tuple(t.shape), t.dtype, rows, whole)
        got = torch.cat(list(iter_expand_tensor(plan, d, lazy)))
        assert torch.equal(got, torch.cat(list(iter_expand_tensor(plan, d, t)))), d.name
        assert asked and max(asked) <= t.shape[0]
        checked += 1
    assert checked >= 10


def test_zeroed_tensors_come_in_chunks():
    state, plan, decisions = _llama_plan()
    zero = next(d for d in decisions if d.op == "zero" and len(d.shape) == 2)
    big = replace(zero, shape=(4096, 4096))
    chunks = list(iter_expand_tensor(plan, big, state[zero.source]))
    assert len(chunks) > 1 and all(c.numel() <= CHUNK_ELEMENTS for c in chunks)
    assert sum(len(c) for c in chunks) == 4096 and not any(c.any() for c in chunks)


def test_freed_memory_is_released_on_glibc():
    blocks = [torch.ones(1 << 18) for _ in range(64)]  # 64 MB in 1 MB blocks, then freed
    del blocks
    assert _libc() is not None  # glibc (this project's Linux): malloc_trim is there
    assert isinstance(release_freed(), bool)


def test_freed_memory_is_kept_for_reuse_below_the_threshold():
    before = anonymous_rss()
    block = torch.ones(1 << 24)  # 64 MB, touched: anonymous and resident
    assert anonymous_rss() - before >= 60 << 20
    del block
    assert release_freed(above=1 << 50) is False  # below the threshold: nothing trimmed
    assert 0 < anonymous_rss() < KEEP_BELOW * 4
