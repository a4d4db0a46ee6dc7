"""Index maps: how each *space* (an axis family such as the residual stream) grows.

A space has ``src_units`` source units and ``tgt_units`` target units, each unit being
``unit_size`` channels (1 for the residual stream and the MLP hidden layer, ``head_dim``
for attention heads). ``sources[j]`` is the source unit that target unit ``j`` copies, or
``-1`` for an *extra* unit that copies nothing (the indivisible remainder of the residual
stream, filled with the average or with zeros, paper B.3).

Example:
    >>> stream_map(4, 6, fill="avg").sources
    (0, 1, 2, 3, -1, -1)
    >>> circular_map(4, 6).sources
    (0, 1, 2, 3, 0, 1)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Literal

import torch

from lemonkit.errors import ImpossibleExpansionError
from lemonkit.tables.format import EXPERTS, HEADS, HEADS_QKV, HIDDEN, KV_HEADS, MLP

__all__ = ["EXPERTS", "HEADS", "HEADS_QKV", "HIDDEN", "KV_HEADS", "MLP"]  # re-exported names

Fill = Literal["avg", "zero", "copy"]


@dataclass(frozen=True)
class SpaceMap:
    """Target unit -> source unit for one space; see the module docstring."""

    name: str
    src_units: int
    tgt_units: int
    sources: tuple[int, ...]
    fill: Fill = "copy"
    unit_size: int = 1
    # the model weighs each copy of a unit 1/copies (a softmax router's copies of an expert
    # share its probability): consumer splits then sum to copies x the source
    diluted: bool = False

    @property
    def copies(self) -> int:
        """k = floor(target / source): how many whole copies of the source there are."""
        return self.tgt_units // self.src_units

    @property
    def eta(self) -> float:
        """The norm rescale sqrt(k * Ds / Dt) of NOTES.md section 1 (1.0 when divisible)."""
        return (self.copies * self.src_units / self.tgt_units) ** 0.5

    @property
    def is_identity(self) -> bool:
        """Every unit maps to itself (a same-size map may still permute heads)."""
        return self.sources == tuple(range(self.src_units))

    def channel_sources(self) -> torch.Tensor:
        """Per-channel source index (``-1`` for extras), length ``tgt_units * unit_size``.

        >>> circular_map(2, 3, unit_size=2).channel_sources().tolist()
        [0, 1, 2, 3, 0, 1]
        """
        return _channel_sources(self.sources, self.unit_size).clone()

    def new_channels(self) -> torch.Tensor:
        """Per-channel flags of the *new* units: every target unit that is not the first
        occurrence of its source unit (later copies and extras), length
        ``tgt_units * unit_size``. bert2BERT-AKI gives these units another layer's fan-in.

        >>> circular_map(2, 3).new_channels().tolist()
        [False, False, True]
        """
        return _new_channels(self.sources, self.unit_size).clone()

    def to_json(self) -> dict:
        return {
            "src_units": self.src_units,
            "tgt_units": self.tgt_units,
            "unit_size": self.unit_size,
            "fill": self.fill,
            "sources": list(self.sources),
            **({"diluted": True} if self.diluted else {}),
        }


@functools.lru_cache(maxsize=256)
def _channel_sources(sources: tuple[int, ...], unit_size: int) -> torch.Tensor:
    src = torch.tensor(sources, dtype=torch.long)
    chan = src[:, None] * unit_size + torch.arange(unit_size)[None, :]
    chan[src < 0] = -1
    return chan.reshape(-1)


@functools.lru_cache(maxsize=256)
def _new_channels(sources: tuple[int, ...], unit_size: int) -> torch.Tensor:
    seen: set[int] = set()
    new = []
    for s in sources:
        new.append(s < 0 or s in seen)
        seen.add(s)
    return torch.tensor(new, dtype=torch.bool).repeat_interleave(unit_size)


def stream_map(src: int, tgt: int, fill: Fill, name: str = HIDDEN) -> SpaceMap:
    """Residual stream: k whole copies, then ``tgt mod src`` extras (avg or zero filled)."""
    check_growth(name, src, tgt)
    k = tgt // src
    sources = tuple(list(range(src)) * k + [-1] * (tgt - k * src))
    return SpaceMap(name, src, tgt, sources, fill=fill)


def circular_map(src: int, tgt: int, unit_size: int = 1, name: str = MLP) -> SpaceMap:
    """Circular replication (paper B.3.3): target unit j copies source unit j mod src."""
    check_growth(name, src, tgt)
    return SpaceMap(name, src, tgt, tuple(j % src for j in range(tgt)), unit_size=unit_size)


def attention_maps(
    heads_src: int, kv_src: int, heads_tgt: int, kv_tgt: int, head_dim: int
) -> tuple[SpaceMap, SpaceMap]:
    """Group-aware query/KV head maps (NOTES.md section 4).

    KV heads are replicated circularly. Each new KV group is then filled with query heads
    of the source group it copies, cycling through that group across its copies, so that
    query head j reads a copy of the KV head its source head read.

    >>> q, kv = attention_maps(4, 2, 6, 2, head_dim=8)
    >>> q.sources, kv.sources
    ((0, 1, 0, 2, 3, 2), (0, 1))
    """
    check_growth("heads", heads_src, heads_tgt)
    check_growth("kv_heads", kv_src, kv_tgt)
    for n, kv, what in ((heads_src, kv_src, "source"), (heads_tgt, kv_tgt, "target")):
        if n % kv:
            raise ImpossibleExpansionError(
                f"{what} num_heads={n} is not a multiple of num_kv_heads={kv}"
            )
    rep_src, rep_tgt = heads_src // kv_src, heads_tgt // kv_tgt
    kv_sources = tuple(g % kv_src for g in range(kv_tgt))
    q_sources: list[int] = []
    for g, s in enumerate(kv_sources):
        copy_index = g // kv_src  # how many earlier target groups copied group s
        for t in range(rep_tgt):
            q_sources.append(s * rep_src + (copy_index * rep_tgt + t) % rep_src)
    missing = sorted(set(range(heads_src)) - set(q_sources))
    if missing:
        raise ImpossibleExpansionError(
            f"heads {heads_src}->{heads_tgt} with kv heads {kv_src}->{kv_tgt} cannot be "
            f"lossless: each new KV group holds only {rep_tgt} query heads, too few to keep "
            f"all {rep_src} query heads of the source group (source heads {missing} would be "
            "lost); choose more heads per KV group"
        )
    return (
        SpaceMap(HEADS, heads_src, heads_tgt, tuple(q_sources), unit_size=head_dim),
        SpaceMap(KV_HEADS, kv_src, kv_tgt, kv_sources, unit_size=head_dim),
    )


def dead_head_maps(
    heads_src: int, kv_src: int, heads_tgt: int, kv_tgt: int, head_dim: int
) -> tuple[SpaceMap, SpaceMap]:
    """Head maps for norms over all heads at once (OLMo2's q/k norms, NOTES.md 13):
    floor(H'/H) whole copies of every head, the remaining heads *dead* (zero q, k and v
    rows), so the normalised vector is zero-expanded and its mean square scales by
    eta_h^2 = k H / H', like the stream's. Needs the group size kept.

    >>> q, kv = dead_head_maps(4, 2, 6, 3, head_dim=8)
    >>> q.sources, kv.sources
    ((0, 1, 2, 3, -1, -1), (0, 1, -1))
    """
    if heads_src * kv_tgt != heads_tgt * kv_src:
        raise ImpossibleExpansionError(
            f"heads {heads_src}/{kv_src} -> {heads_tgt}/{kv_tgt}: a model that normalises all "
            "heads at once needs the query heads per KV head kept"
        )
    q = stream_map(heads_src, heads_tgt, fill="zero", name=HEADS)
    kv = stream_map(kv_src, kv_tgt, fill="zero", name=KV_HEADS)
    return replace(q, unit_size=head_dim), replace(kv, unit_size=head_dim)


def check_growth(name: str, src: int, tgt: int) -> None:
    if tgt < src:
        raise ImpossibleExpansionError(
            f"{name}: target {tgt} is smaller than source {src}; lemonkit only grows models"
        )
    if src <= 0:
        raise ImpossibleExpansionError(f"{name}: source size {src} must be positive")
