"""Property test: random small LLaMA and GPT-2 configs and targets stay lossless."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lemonkit
from lemonkit.testing.zoo import build


@st.composite
def llama_expansions(draw):
    d = draw(st.sampled_from([4, 8]))
    kv = draw(st.integers(1, 3))
    rep = draw(st.integers(1, 3))
    heads = kv * rep
    hidden = heads * d
    kv_t = kv * draw(st.integers(1, 3))
    heads_t = kv_t * draw(st.integers(rep, rep + 2))
    layers = draw(st.integers(1, 3))
    mlp = draw(st.integers(4, 40))
    src = dict(hidden=hidden, heads=heads, kv=kv, layers=layers, mlp=mlp, head_dim=d)
    tgt = dict(
        hidden_size=heads_t * d,
        num_heads=heads_t,
        num_kv_heads=kv_t,
        num_layers=layers + draw(st.integers(0, 3)),
        intermediate_size=mlp + draw(st.integers(0, 50)),
        seed=draw(st.integers(0, 3)),
    )
    return src, tgt


@settings(max_examples=25, deadline=None)
@given(llama_expansions())
def test_random_llama_expansions_are_lossless(case):
    src, tgt = case
    small = build("llama", dtype=torch.float64, **src)
    big = lemonkit.expand(small, **tgt)
    report = lemonkit.verify(small, big, seq_len=6)
    assert report.rel_error_fp64 <= 1e-12, (src, tgt, report)


@settings(max_examples=20, deadline=None)
@given(
    heads=st.integers(1, 4),
    extra_heads=st.integers(0, 9),
    layers=st.integers(1, 3),
    extra_layers=st.integers(0, 3),
    seed=st.integers(0, 5),
)
def test_random_gpt2_expansions_are_lossless(heads, extra_heads, layers, extra_layers, seed):
    small = build("gpt2", hidden=heads * 8, heads=heads, layers=layers)
    big = lemonkit.expand(
        small, hidden_size=(heads + extra_heads) * 8, num_layers=layers + extra_layers, seed=seed
    )
    assert lemonkit.verify(small, big, seq_len=6).rel_error_fp64 <= 1e-12
