"""A dense checkpoint seen as the mixture of experts it upcycles to (same sizes).

:class:`UpcycledSource` is a read-only mapping from MoE tensor name to tensor that makes
each tensor only when asked for (from the dense tensors, copied, stacked or zeroed, or
a random router seeded by the seed and the tensor's name), so the ordinary engine can
expand it tensor by tensor, in memory or streaming from a folder.

Example:
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from lemonkit.plan.upcycle import Upcycle
    >>> dense = LlamaForCausalLM(LlamaConfig(hidden_size=32, num_attention_heads=2,
    ...     intermediate_size=48, num_hidden_layers=1, vocab_size=50))
    >>> moe = upcycled_source(dense.state_dict(), dense.config, Upcycle("mixtral", 4, 2))
    >>> tuple(moe["model.layers.0.mlp.experts.gate_up_proj"].shape)
    (4, 96, 32)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from lemonkit.plan.upcycle import Recipe, Upcycle, upcycle_config, upcycle_record, upcycled_tensors
from lemonkit.tables import table_for


class UpcycledSource(Mapping[str, torch.Tensor]):
    """The MoE checkpoint a dense one upcycles to; see the module docstring."""

    def __init__(
        self,
        dense: Mapping[str, torch.Tensor],
        config: Any,
        recipes: dict,
        seed: int,
        record: dict,
        headless: bool,
    ):
        self.dense = dense
        self.config = config  # the MoE config at the dense sizes
        self.recipes: dict[str, Recipe] = recipes
        self.seed = seed
        self.record = record  # the provenance: plan.upcycle
        self.headless = headless
        self._last: tuple[str | None, torch.Tensor | None] = (None, None)

    def __getitem__(self, name: str) -> torch.Tensor:
        r = self.recipes[name]
        if r.kind == "copy":
            return self._read(r.dense[0])
        if r.kind == "zeros":
            return torch.zeros(r.shape, dtype=r.dtype)
        if r.kind == "stack":
            one = torch.cat([self._read(n) for n in r.dense])
            return one.unsqueeze(0).expand(r.shape).contiguous()
        gen = torch.Generator().manual_seed(_seed(self.seed, name))
        std = self.config.initializer_range
        return (torch.randn(r.shape, generator=gen, dtype=torch.float32) * std).to(r.dtype)

    def _read(self, name: str) -> torch.Tensor:
        """A dense tensor; the last one read is kept, as its experts' copies are asked
        for one after the other (one read from disk, not one per expert)."""
        last = self._last  # one read of the pair: workers' threads replace it at will
        if last[0] != name:
            last = (name, self.dense[name])
            self._last = last
        return last[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self.recipes)

    def __len__(self) -> int:
        return len(self.recipes)

    def infos(self) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
        """Every tensor's (dtype, shape), without making any."""
        return {n: (r.dtype, r.shape) for n, r in self.recipes.items()}

    def is_headless(self) -> bool:
        return self.headless


def upcycled_source(
    dense: Mapping[str, torch.Tensor],
    config: Any,
    request: Upcycle,
    *,
    infos: dict | None = None,
    stacked: bool = True,
    headless: bool = False,
    dense_class: str | None = None,
) -> UpcycledSource:
    """The MoE view of a dense state dict or checkpoint (``infos``: its dtypes and shapes,
    read from ``dense`` when not given); ``stacked``: experts as a module holds them,
    else one tensor per expert as checkpoints save them."""
    if infos is None:
        infos = {n: (t.dtype, tuple(t.shape)) for n, t in dense.items()}
    moe_config = upcycle_config(config, request, headless=headless)
    prefix = "" if headless else table_for(config.model_type).base_prefix
    recipes = upcycled_tensors(infos, config, request, stacked=stacked, prefix=prefix)
    record = upcycle_record(config, request, moe_config, dense_class)
    return UpcycledSource(dense, moe_config, recipes, request.seed, record, headless)


def _seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:upcycle:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")
