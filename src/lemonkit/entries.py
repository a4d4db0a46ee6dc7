"""Target tensors: which source tensor each one comes from, and how.

:func:`target_entries` walks the layer map of an :class:`~lemonkit.plan.ExpansionPlan`:
each target layer's tensors come from its source layer; Post-LN depth moves the output
norm's affine (NOTES.md 6); bert2BERT-AKI names a *donor*, the next source layer's tensor
that gives the new units their rows.

Example:
    >>> from transformers import GPT2Config
    >>> from lemonkit.plan import make_plan
    >>> plan = make_plan(GPT2Config(n_embd=64, n_head=4, n_layer=2), num_layers=3)
    >>> e = target_entries(plan, ["transformer.h.1.mlp.c_proj.weight"])[1]
    >>> e.name, e.source, e.is_new
    ('transformer.h.2.mlp.c_proj.weight', 'transformer.h.1.mlp.c_proj.weight', True)
"""

from __future__ import annotations

from typing import NamedTuple

from lemonkit.architectures.base import Out, Tensor
from lemonkit.plan import ExpansionPlan


class TargetEntry(NamedTuple):
    """One output tensor: its name, the source tensor it comes from, the table entry,
    whether it belongs to a new block, whether it is an identity norm (Post-LN depth:
    NOTES.md 6), and for ``aki`` the *donor*: the next source layer's tensor whose
    expansion gives the new units' rows, and the target name that seeds it."""

    name: str
    source: str
    spec: Tensor
    is_new: bool
    identity: bool = False
    donor: str | None = None
    donor_name: str | None = None


def target_entries(plan: ExpansionPlan, source_names: list[str]) -> list[TargetEntry]:
    """Every target tensor, non-layer tensors first, then layers in target order.

    Unknown tensor names raise.
    """
    present = set(source_names)
    from lemonkit.checks import match_or_raise  # local import: checks is imported lazily

    per_layer: dict[tuple[str | None, int], list[tuple[str, Tensor]]] = {}
    entries: list[TargetEntry] = []
    for name in source_names:
        spec, layer = match_or_raise(plan.table, name)
        if layer is None:
            entries.append(TargetEntry(name, name, spec, False))
        else:
            per_layer.setdefault((spec.group, layer), []).append((name, spec))
    for group in [None, *plan.groups]:
        layer_map, new_layers = plan.layer_map_of(group)
        for t_layer, s_layer in enumerate(layer_map):
            for name, spec in per_layer.get((group, s_layer), []):
                entry = TargetEntry(spec.with_layer(name, t_layer), name, spec, new_layers[t_layer])
                if plan.zero_new_branches:  # stacked blocks keep every norm as it is
                    entry = _post_ln(plan, entry, t_layer)
                entries.append(_aki_donor(plan, entry, s_layer, layer_map, present))
    return entries


def _aki_donor(
    plan: ExpansionPlan, entry: TargetEntry, s_layer: int, layer_map: list[int], present: set
) -> TargetEntry:
    """bert2BERT-AKI: a layer tensor with a producer axis takes its new units' rows from
    the same tensor of the next source layer (expanded as that layer's first copy is);
    the top source layer keeps its own."""
    if plan.method != "aki" or not any(isinstance(r, Out) for r in entry.spec.axes):
        return entry
    if s_layer + 1 not in layer_map:
        return entry
    donor = entry.spec.with_layer(entry.source, s_layer + 1)
    if donor not in present:  # an optional tensor the next layer lacks
        return entry
    donor_name = entry.spec.with_layer(entry.name, layer_map.index(s_layer + 1))
    return entry._replace(donor=donor, donor_name=donor_name)


def _post_ln(plan: ExpansionPlan, entry: TargetEntry, t: int) -> TargetEntry:
    """Post-LN depth by moving the affine (NOTES.md 6): the output norm of a block that a
    new block follows becomes the identity; the last new block of a run takes the output
    norm of the original block that starts the run; new blocks' inner norms are identity."""
    kind = entry.spec.post_ln
    if kind == "inner":
        return entry._replace(identity=entry.is_new)
    if kind != "out":
        return entry
    if t + 1 < len(plan.layer_map) and plan.new_layers[t + 1]:
        return entry._replace(identity=True)
    start = max(i for i in range(t + 1) if not plan.new_layers[i])
    return entry._replace(source=entry.spec.with_layer(entry.source, plan.layer_map[start]))
