"""Name and shape checks of a checkpoint against its table and plan, before any write.

Example:
    >>> from transformers import GPT2Config
    >>> from lemonkit.plan import make_plan
    >>> plan = make_plan(GPT2Config(n_embd=32, n_head=2, n_layer=1), hidden_size=48)
    >>> try:
    ...     check_names(plan, ["transformer.h.3.ln_1.weight"])
    ... except CheckpointError as e:
    ...     print(e)
    unexpected tensor 'transformer.h.3.ln_1.weight': the config has only 1 layers
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lemonkit.architectures.base import ArchTable, SpaceRef, Tensor
from lemonkit.errors import CheckpointError
from lemonkit.spaces import SpaceMap

if TYPE_CHECKING:
    from lemonkit.plan import ExpansionPlan


def effective_axes(plan: ExpansionPlan, spec: Tensor) -> tuple:
    """A tied head is expanded exactly like the embedding it shares weights with."""
    tie = plan.table.tie_embeddings
    if plan.tied and tie and spec.name == tie[0]:
        return match_or_raise(plan.table, tie[1])[0].axes
    return spec.axes


def space_size(maps: dict[str, SpaceMap], space: SpaceRef, side: str) -> int:
    """Channels of a (possibly fused) space on the ``"src"`` or ``"tgt"`` side."""
    names = (space,) if isinstance(space, str) else space
    attr = "src_units" if side == "src" else "tgt_units"
    return sum(getattr(maps[n], attr) * maps[n].unit_size for n in names)


def target_shape(plan: ExpansionPlan, spec: Tensor, shape: torch.Size) -> list[int]:
    axes = effective_axes(plan, spec)
    return [
        dim if rule is None else space_size(plan.maps, rule.space, "tgt")
        for dim, rule in zip(shape, axes, strict=True)
    ]


def check_shape(plan: ExpansionPlan, spec: Tensor, name: str, shape: tuple[int, ...]) -> None:
    """A source tensor's shape must match what the source config says."""
    axes = effective_axes(plan, spec)
    expected = [None if rule is None else space_size(plan.maps, rule.space, "src") for rule in axes]
    ok = len(expected) == len(shape) and all(
        e is None or e == d for e, d in zip(expected, shape, strict=False)
    )
    if not ok:
        raise CheckpointError(
            f"tensor {name} has shape {tuple(shape)}, which does not match the config "
            f"(expected {['*' if e is None else e for e in expected]})"
        )


def match_or_raise(table: ArchTable, name: str) -> tuple[Tensor, int | None]:
    found = table.match(name)
    if found is None:
        raise CheckpointError(
            f"unexpected tensor {name!r} for model type {table.model_types[0]}: not in "
            "lemonkit's table for it (is this the right config.json?)"
        )
    return found


def check_names(plan: ExpansionPlan, names: list[str]) -> None:
    """Every tensor is known, in a layer the config has, and no required one is missing."""
    table, tied, n_layers = plan.table, plan.tied, plan.source_sizes["layers"]
    for name in names:
        spec, layer = match_or_raise(table, name)
        if spec.group and spec.group not in plan.groups:
            raise CheckpointError(f"unexpected tensor {name!r}: the config has no {spec.group}")
        limit = max(plan.layer_map_of(spec.group)[0]) + 1 if spec.group else n_layers
        if layer is not None and layer >= limit:
            raise CheckpointError(f"unexpected tensor {name!r}: the config has only {limit} layers")
    present = set(names)
    for spec in table.tensors:
        if spec.optional:
            continue
        if "{e}" in spec.name:
            continue  # one entry per expert: how many is not in the table
        layers = range(n_layers) if spec.per_layer else [0]
        for i in layers:
            wanted = [n.replace("{i}", str(i)) for n in table.names_for(spec)]
            if not any(w in present for w in wanted):
                raise CheckpointError(f"missing tensor {wanted[0]!r}")
    head = table.tie_embeddings and table.spec(table.tie_embeddings[0])
    if not tied and head and not any(n in present for n in table.names_for(head)):
        raise CheckpointError(
            f"missing tensor {table.tie_embeddings[0]!r}: the config says the head is not "
            "tied to the embeddings"
        )
