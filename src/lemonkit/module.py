"""The ``nn.Module`` shell: ``lemonkit.expand(model, ...)`` -> a model of the same class.

Example:
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> small = LlamaForCausalLM(LlamaConfig(hidden_size=64, num_hidden_layers=2,
    ...     num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
    ...     vocab_size=100))
    >>> big = expand(small, hidden_size=96, num_layers=3)
    >>> type(big).__name__, big.config.hidden_size, big.config.num_attention_heads
    ('LlamaForCausalLM', 96, 6)
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from lemonkit.engine import expand_state_dict
from lemonkit.plan import ExpansionPlan
from lemonkit.tables import table_for


def expand(
    model: torch.nn.Module,
    *,
    return_plan: bool = False,
    **growth: Any,
) -> torch.nn.Module | tuple[torch.nn.Module, ExpansionPlan]:
    """Expand a ``transformers`` model losslessly; the source is not modified.

    ``growth``: the target sizes and options of :mod:`lemonkit.plan.targets`, e.g.
    ``hidden_size=768, num_layers=12, num_heads=12, num_kv_heads=4,
    intermediate_size=3072, layer_map=[0, 0, 1, 1], seed=0, method="lemon",
    depth="zero", allow_lossy=False``. Sizes left out keep the source's value (heads
    follow the hidden size, head_dim kept). ``method="net2net"`` uses equal splits (no
    symmetry breaking). Staged CNNs (ResNet) take per-stage ``hidden_sizes`` and
    ``depths`` and ``embedding_size``.

    Growth baselines (not lossless, so they need ``allow_lossy=True``; ``plan.lossy_reason``
    says why): ``method="aki"`` (bert2BERT-AKI: equal splits, new units' fan-in from the
    next layer) and ``depth="stack"`` (StackBERT: default layer map ``[i % L_src]``, new
    blocks' branches kept). ``depth="zero"`` (default) zeroes new blocks' branch outputs:
    lossless.
    """
    table = table_for(model.config.model_type)
    state, plan = expand_state_dict(
        model.state_dict(),
        model.config,
        base_model=type(model).__name__ in table.base_classes,
        compute_dtype=torch.float64,
        **growth,
    )
    big = build_model(type(model), copy.deepcopy(plan.target_config), state)
    big.train(model.training)
    return (big, plan) if return_plan else big


def build_model(cls: type, config, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Instantiate ``cls(config)`` and load ``state`` into it (every parameter must be set)."""
    dtype = next(iter(state.values())).dtype
    model = cls(config).to(dtype)
    result = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or []) | _shared_names(model)
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"expanded state dict does not fit {cls.__name__}: missing {missing[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )
    return init_like_from_pretrained(model)


def _shared_names(model: torch.nn.Module) -> set[str]:
    """State-dict names whose tensor another name shares (a head tied by assignment)."""
    by_storage: dict[int, list[str]] = {}
    for name, tensor in model.state_dict().items():
        by_storage.setdefault(tensor.data_ptr(), []).append(name)
    return {n for names in by_storage.values() if len(names) > 1 for n in names}


def init_like_from_pretrained(model: torch.nn.Module) -> torch.nn.Module:
    """Give constant buffers the values ``from_pretrained`` gives them: ``cls(config)``
    rounds Gemma's ``embed_scale`` to float32 before any ``.to(dtype)``, while loading
    sets it in the model's dtype; expansions are computed for the latter."""
    for module in model.modules():
        scalar = getattr(module, "scalar_embed_scale", None)
        if scalar is not None and isinstance(getattr(module, "embed_scale", None), torch.Tensor):
            module.embed_scale.fill_(scalar)
    return model
