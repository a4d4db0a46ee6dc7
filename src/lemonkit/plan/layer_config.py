"""Config fields that say something per block, remapped through a layer map.

Two kinds, both table data: lists with one entry per layer (``layer_types``: sliding or
full attention) and which blocks of a mixture of experts have a dense MLP instead
(Qwen's ``mlp_only_layers`` with ``decoder_sparse_step``, DeepSeek's
``first_k_dense_replace``). A target block is what its source block was. The planner
uses this for the target config, block-wise verification for its slice models.

Example:
    >>> from transformers import Qwen2MoeConfig
    >>> from lemonkit.tables import table_for
    >>> cfg = Qwen2MoeConfig(num_hidden_layers=2, mlp_only_layers=[0])
    >>> remap_layer_config(cfg, table_for("qwen2_moe"), [0, 0, 1], 2)
    >>> cfg.mlp_only_layers, cfg.decoder_sparse_step
    ([0, 1], 1)
"""

from __future__ import annotations

from typing import Any

from lemonkit.errors import ImpossibleExpansionError
from lemonkit.tables.format import ArchTable, DenseLayers


def remap_layer_config(cfg: Any, table: ArchTable, layer_map: list[int], n_src: int) -> None:
    """Rewrite ``cfg``'s per-layer fields in place for target layers copying
    ``layer_map`` (its entries index the ``n_src`` layers ``cfg`` describes now)."""
    if table.config is not None:
        for key in table.config.per_layer:
            value = getattr(cfg, key, None)
            if isinstance(value, list) and len(value) == n_src:
                setattr(cfg, key, [value[s] for s in layer_map])
    if table.dense_layers is not None and list(layer_map) != list(range(n_src)):
        flags = dense_flags(cfg, table.dense_layers, n_src)
        write_dense_flags(cfg, table.dense_layers, [flags[s] for s in layer_map])


def dense_flags(cfg: Any, spec: DenseLayers, n_layers: int) -> list[bool]:
    """For each block, whether it has a dense MLP (no experts)."""
    if spec.first_k:
        k = getattr(cfg, spec.first_k) or 0
        return [i < k for i in range(n_layers)]
    listed = set(getattr(cfg, spec.index_list, None) or [])
    step = getattr(cfg, spec.sparse_step, 1) if spec.sparse_step else 1
    return [i in listed or not step or (i + 1) % step != 0 for i in range(n_layers)]


def write_dense_flags(cfg: Any, spec: DenseLayers, flags: list[bool]) -> None:
    """Set the fields so that exactly the flagged blocks are dense; a layout the config
    cannot say (DeepSeek's dense blocks must come first) is refused."""
    if spec.first_k:
        k = sum(flags)
        if flags != [True] * k + [False] * (len(flags) - k):
            raise ImpossibleExpansionError(
                f"the dense blocks would be at {[i for i, f in enumerate(flags) if f]}, but "
                f"{spec.first_k} can only make the first blocks dense: place new copies of "
                "dense blocks among the first ones (layer_map)"
            )
        setattr(cfg, spec.first_k, k)
        return
    if spec.sparse_step:
        setattr(cfg, spec.sparse_step, 1)
    setattr(cfg, spec.index_list, [i for i, f in enumerate(flags) if f])
