"""Human-readable text for ``lemonkit plan`` and ``lemonkit list``.

Example:
    >>> print(describe_architectures().splitlines()[0])
    gpt2: GPT2LMHeadModel, GPT2Model
"""

from __future__ import annotations

from lemonkit.architectures import TABLES
from lemonkit.architectures.base import Beta, Gamma, In, Out, Tensor
from lemonkit.plan import ExpansionPlan


def rule_text(plan: ExpansionPlan, spec: Tensor, is_new: bool) -> str:
    """One line: the rule applied on each axis of a tensor."""
    if is_new and spec.branch_out and plan.zero_new_branches:
        return "zeros (new block: residual branch output starts at 0)"
    tie = plan.table.tie_embeddings
    if plan.tied and tie and spec.name == tie[0]:
        return "tied to the embedding (not saved)"
    parts = []
    for axis, rule in enumerate(spec.axes):
        if rule is None:
            continue
        space = rule.space if isinstance(rule.space, str) else "|".join(rule.space)
        if isinstance(rule, Out):
            fill = plan.maps[space].fill if isinstance(rule.space, str) else "copy"
            parts.append(f"axis{axis} out:{space} (copy, extras {fill})")
        elif isinstance(rule, In):
            split = "unequal split" if plan.split == "lemon" else "equal split"
            parts.append(f"axis{axis} in:{space} ({split}, extras random)")
        elif isinstance(rule, Gamma | Beta):
            kind = "gamma*eta" if isinstance(rule, Gamma) else "beta"
            if spec.tied_head_norm and plan.tied:
                kind += "/k (tied head)"
            if spec.stream_norm and plan.lossy_reason:
                kind += " (lossy: stream norm)"
            parts.append(f"norm {kind}")
    return "; ".join(parts) or "unchanged"


def describe_plan(plan: ExpansionPlan, layout: list) -> str:
    s, t = plan.source_sizes, plan.sizes
    record = plan.to_json()
    lines = [
        f"model type {plan.model_type}, method {plan.method}, depth {plan.depth}, seed {plan.seed}",
        "sizes: " + ", ".join(f"{k} {s[k]}->{t[k]}" for k in s),
        *(
            f"layer map{' of ' + g if g else ''} (target <- source): {m}; new blocks at "
            f"{[i for i, n in enumerate(new) if n]}"
            for g, (m, new) in (plan.groups.items() or [(None, (plan.layer_map, plan.new_layers))])
        ),
        f"eta = {plan.eta:.6g}, norm eps x {record['norm_eps_scale']:.6g}, "
        f"stream scale {record['stream_scale']:.6g}",
    ]
    if plan.lossy_reason:
        lines.append(f"LOSSY (allowed): {plan.lossy_reason}")
    width = max(len(e.name) for e, _ in layout) if layout else 10
    for e, shape in layout:
        src = "" if e.source == e.name else f" <- {e.source}"
        rule = "identity norm (Post-LN depth)" if e.identity else rule_text(plan, e.spec, e.is_new)
        if e.donor and not (e.is_new and e.spec.branch_out and plan.zero_new_branches):
            rule += f"; new units from {e.donor} (AKI)"
        lines.append(f"{e.name:<{width}} {str(list(shape)):<16} {rule}{src}")
    return "\n".join(lines)


def exactness(table) -> list[str]:
    """What grows exactly for a table, and the caveats, from the table's data."""
    if table.stages:
        return [
            "stage widths and the stem: exact at any width (channels copied through BatchNorm)",
            "depth per stage: exact (new blocks copy a block after the first; their last "
            "BatchNorm is zero)",
        ]
    lines = []
    if table.indivisible_lossy:
        lines.append(
            "hidden: exact for multiples of the source; other widths only with "
            "--allow-lossy (approximate, error reported)"
        )
    else:
        lines.append("hidden: exact at any width (float64 error ~1e-16)")
    if table.dead_heads:
        lines.append("heads: grow with the hidden size, group size kept (dead-head layout)")
    else:
        kv = ", KV heads (group-aware)" if table.config.kv_heads else ""
        lines.append(f"heads{kv}, MLP: exact")
    if any(t.post_ln for t in table.tensors):
        lines.append("layers: exact up to O(layer_norm_eps) (Post-LN: the affine moves)")
    else:
        lines.append("layers: exact (new blocks output zero)")
    if table.fixed_eps:
        lines.append("norm eps kept: the stream is scaled by 1/eta instead")
    return lines


def describe_architectures() -> str:
    """The text of ``lemonkit list``.

    >>> "llama" in describe_architectures()
    True
    """
    lines = []
    for table in TABLES:
        lines.append(f"{', '.join(table.model_types)}: {', '.join(table.classes)}")
        lines += [f"    {line}" for line in exactness(table)]
    return "\n".join(lines)
