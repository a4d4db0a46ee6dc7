"""Name checks of a checkpoint against its table and plan, before any weight is read.

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

from lemonkit.errors import CheckpointError
from lemonkit.plan.layers import DEFAULT_GROUP
from lemonkit.plan.spaces import SpaceMap
from lemonkit.tables.format import ArchTable, AxisRule, SpaceRef, Tensor, space_names

if TYPE_CHECKING:
    from lemonkit.plan.planner import ExpansionPlan


def space_size(maps: dict[str, SpaceMap], space: SpaceRef, side: str) -> int:
    """Channels of a (possibly fused) space on the ``"src"`` or ``"tgt"`` side."""
    attr = "src_units" if side == "src" else "tgt_units"
    return sum(getattr(maps[n], attr) * maps[n].unit_size for n in space_names(space))


def source_axes_sizes(plan: ExpansionPlan, axes: tuple[AxisRule, ...]) -> list[int | None]:
    """The source size each axis must have (None: an axis that does not grow)."""
    return [None if rule is None else space_size(plan.maps, rule.space, "src") for rule in axes]


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
    table = plan.table
    for name in names:
        spec, layer = match_or_raise(table, name)
        group = spec.group or (DEFAULT_GROUP if layer is not None else None)
        if group and group not in plan.groups:
            raise CheckpointError(f"unexpected tensor {name!r}: the config has no {group}")
        limit = plan.group_of(spec.group).src_layers if layer is not None else 0
        if layer is not None and layer >= limit:
            raise CheckpointError(f"unexpected tensor {name!r}: the config has only {limit} layers")
    present = set(names)
    for spec in table.tensors:
        if spec.optional or (spec.group and spec.group not in plan.groups):
            continue  # a group the config lacks (a stage beyond the config's) has no tensors
        if "{e}" in spec.name:
            continue  # one entry per expert: how many is not in the table
        layers = range(plan.group_of(spec.group).src_layers) if spec.per_layer else [0]
        for i in layers:
            wanted = [n.replace("{i}", str(i)) for n in table.names_for(spec)]
            if not any(w in present for w in wanted):
                raise CheckpointError(f"missing tensor {wanted[0]!r}")
    _check_experts(plan, names)
    head = table.tie_embeddings and table.spec(table.tie_embeddings[0])
    if not plan.tied and head and not any(n in present for n in table.names_for(head)):
        raise CheckpointError(
            f"missing tensor {table.tie_embeddings[0]!r}: the config says the head is not "
            "tied to the embeddings"
        )


def _check_experts(plan: ExpansionPlan, names: list[str]) -> None:
    """A layer holding per-expert tensors holds one for every expert the config has."""
    count = plan.source.num_experts
    found: dict[tuple[str, int | None], set[int]] = {}
    for name in names:
        spec, layer = plan.table.match(name)
        if spec.per_expert is not None:
            found.setdefault((spec.name, layer), set()).add(spec.expert_of(name))
    for (pattern, layer), experts in found.items():
        if experts != set(range(count)):
            missing = sorted(set(range(count)) - experts) or sorted(experts - set(range(count)))
            where = pattern.replace("{i}", str(layer))
            raise CheckpointError(
                f"{where}: the config has {count} experts, but the checkpoint's experts "
                f"{'lack' if len(experts) < count else 'include'} {missing[:5]}"
            )
