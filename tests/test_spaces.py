"""Index maps: stream, circular, group-aware attention heads, layer maps."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lemonkit.errors import ImpossibleExpansionError
from lemonkit.plan.layers import check_layer_map, default_layer_map
from lemonkit.plan.spaces import attention_maps, circular_map, stream_map


def test_stream_map_copies_then_extras():
    m = stream_map(4, 10, fill="avg")
    assert m.sources == (0, 1, 2, 3, 0, 1, 2, 3, -1, -1)
    assert m.copies == 2
    assert m.eta == pytest.approx((2 * 4 / 10) ** 0.5)


def test_circular_map_channels_follow_units():
    m = circular_map(2, 3, unit_size=4)
    assert m.channel_sources().tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]


def test_shrinking_is_refused():
    with pytest.raises(ImpossibleExpansionError, match="smaller"):
        stream_map(8, 4, fill="zero")


@settings(max_examples=200, deadline=None)
@given(
    kv_src=st.integers(1, 4),
    rep_src=st.integers(1, 4),
    kv_mult=st.integers(1, 3),
    kv_extra=st.integers(0, 3),
    rep_tgt=st.integers(1, 6),
)
def test_attention_maps_keep_every_query_on_its_kv_head(
    kv_src, rep_src, kv_mult, kv_extra, rep_tgt
):
    """NOTES.md 4: qmap[j] // rep_src == kvmap[j // rep_tgt], every source head kept."""
    heads_src = kv_src * rep_src
    kv_tgt = kv_src * kv_mult + kv_extra
    heads_tgt = kv_tgt * rep_tgt
    if heads_tgt < heads_src:
        return
    try:
        q, kv = attention_maps(heads_src, kv_src, heads_tgt, kv_tgt, head_dim=2)
    except ImpossibleExpansionError as e:
        assert "cannot be lossless" in str(e)
        return
    for j, s in enumerate(q.sources):
        assert s // rep_src == kv.sources[j // rep_tgt]
    assert set(q.sources) == set(range(heads_src))
    assert set(kv.sources) == set(range(kv_src))


def test_attention_maps_regroup_8_to_25_style():
    # 8 heads / 2 KV -> 24 heads / 2 KV: KV kept, groups grow from 4 to 12 heads
    q, kv = attention_maps(8, 2, 24, 2, head_dim=4)
    assert kv.sources == (0, 1)
    assert [s // 4 for s in q.sources] == [0] * 12 + [1] * 12


def test_attention_maps_refuse_groups_too_small():
    with pytest.raises(ImpossibleExpansionError, match="too few"):
        attention_maps(8, 2, 9, 3, head_dim=4)


def test_default_layer_map_puts_new_blocks_next_to_source():
    assert default_layer_map(3, 3) == [0, 1, 2]
    assert default_layer_map(2, 5) == [0, 0, 1, 1, 1]
    assert default_layer_map(6, 12) == [i // 2 for i in range(12)]


def test_layer_map_validation():
    assert check_layer_map([0, 0, 1], 2) == [False, True, False]
    with pytest.raises(ImpossibleExpansionError, match="in order"):
        check_layer_map([1, 0], 2)
    with pytest.raises(ImpossibleExpansionError, match="not a source layer"):
        check_layer_map([0, 1, 2], 2)
