"""Human-readable text for ``lemonkit plan`` and ``lemonkit list``, read from the plan's
decisions and the tables' data (nothing here decides anything).

Example:
    >>> print(describe_architectures().splitlines()[0])
    gpt2: GPT2LMHeadModel, GPT2Model
"""

from __future__ import annotations

from lemonkit.plan import ExpansionPlan
from lemonkit.plan.decisions import Decision
from lemonkit.plan.layers import DEFAULT_GROUP
from lemonkit.plan.methods import SPLIT_RULES
from lemonkit.tables.format import ArchTable, Gamma, In, Out, PyramidFields, space_names


def decision_text(plan: ExpansionPlan, d: Decision) -> str:
    """One line: how a target tensor is made."""
    if d.op == "zero":
        return "zeros (new block: residual branch output starts at 0)"
    if d.op == "cancel":
        return (
            f"cancelling (type-2 new block: paired units read alpha and -alpha, alpha ~ "
            f"N(0, {plan.sigma:g}^2); the branch adds exactly 0)"
        )
    if d.op == "identity":
        why = "its source layer has none" if d.spec.stand_in else "Post-LN depth"
        return f"identity norm ({why})"
    if d.op == "keep":
        return "unchanged (integer buffer)"
    text = "; ".join(_axis_text(plan, d, axis, rule) for axis, rule in enumerate(d.axes) if rule)
    text = text or "unchanged"
    if not d.saved:
        text += "; tied to the embedding (not saved)"
    if d.donor:
        text += f"; new units from {d.donor} (AKI)"
    if d.expert_copy:
        rank, copies = d.expert_copy
        text += f"; copy {rank + 1} of {copies} of its expert (the copies split its output)"
    if d.untie:
        text += f"; new block: replicated units' fan-in + N(0, {d.untie:g}^2) (untied)"
    if d.paired:
        text += "; type-2 new block: paired units (if any here) take their leader's entries"
    return text


def _axis_text(plan: ExpansionPlan, d: Decision, axis: int, rule) -> str:
    names = space_names(rule.space)
    space = "|".join(names)
    if isinstance(rule, Out):
        fills = sorted({plan.maps[n].fill for n in names})
        return f"axis{axis} out:{space} (copy, extras {'/'.join(fills)})"
    if isinstance(rule, In):
        return f"axis{axis} in:{space} ({SPLIT_RULES[plan.split].split_text}, extras random)"
    kind = "gamma*eta" if isinstance(rule, Gamma) else "beta"
    if d.norm_scale != 1.0:
        kind += "/k (tied head)"
    if d.approximate:
        kind += " (lossy: stream norm)"
    return f"norm {kind}"


def sizes_text(plan: ExpansionPlan) -> str:
    """``hidden_size 64->96, num_heads 4->6, ...`` (and head_dim, which is kept)."""
    src, tgt = plan.source.given(), plan.target.given()
    parts = [f"{k} {_size(src[k])}->{_size(v)}" for k, v in tgt.items()]
    if plan.head_dim:
        parts.append(f"head_dim {plan.head_dim} (kept)")
    return ", ".join(parts)


def _size(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def describe_plan(plan: ExpansionPlan, decisions: list[Decision]) -> str:
    lines = [
        f"model type {plan.model_type}, method {plan.method}, depth {plan.depth}, seed {plan.seed}",
        f"split {plan.split}, new blocks {plan.options.new_blocks}, sigma {plan.sigma:g}",
        "sizes: " + sizes_text(plan),
        *(
            f"layer map{'' if name == DEFAULT_GROUP else ' of ' + name} (target <- source): "
            f"{list(g.layer_map)}; new blocks at {[i for i, n in enumerate(g.new) if n]}"
            for name, g in plan.groups.items()
        ),
        f"eta = {plan.eta:.6g}, norm eps x {plan.norm_eps_scale:.6g}, "
        f"stream scale {plan.stream_scale:.6g}",
    ]
    if plan.upcycle:
        lines.insert(0, "upcycled to " + upcycled_text(plan.upcycle))
    if plan.lossy_reason:
        lines.append(f"LOSSY (allowed): {plan.lossy_reason}")
    width = max(len(d.name) for d in decisions) if decisions else 10
    for d in decisions:
        src = "" if d.source == d.name else f" <- {d.source}"
        lines.append(f"{d.name:<{width}} {str(list(d.shape)):<16} {decision_text(plan, d)}{src}")
    return "\n".join(lines)


def upcycled_text(record: dict) -> str:
    """An upcycle's record (``plan.upcycle``) in words."""
    return (
        f"{record['class']}, {record['num_experts']} experts (copies of the MLP), "
        f"{record['experts_per_token']} per token; exact because {record['exact_because']}"
    )


def exactness(table: ArchTable) -> list[str]:
    """What grows exactly for a table, and the caveats, from the table's data."""
    if isinstance(table.stages, PyramidFields):
        return _pyramid_exactness(table)
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
        own = " (on their own: KV heads are the heads)" if table.config.also_heads else ""
        lines.append(f"heads{kv}{own}, MLP: exact")
    if any(t.post_ln for t in table.tensors):
        lines.append("layers: exact up to O(layer_norm_eps) (Post-LN: the affine moves)")
    else:
        lines.append("layers: exact (new blocks output zero)")
    if table.fixed_eps:
        lines.append("norm eps kept: the stream is scaled by 1/eta instead")
    return lines + _why(table) + _expert_lines(table)


def _why(table: ArchTable) -> list[str]:
    """The table's note, and why widths that are not multiples are refused."""
    lines = [table.note] if table.note else []
    if table.indivisible_lossy:
        lines.append(f"why: {table.indivisible_lossy}")
    return lines


def _expert_lines(table: ArchTable) -> list[str]:
    """What grows exactly in a mixture of experts, and where it can be upcycled from."""
    from lemonkit.tables.upcycle import RULES

    ex = table.experts
    if ex is None:
        into = [
            f"{', '.join(sorted(set(r.sources) & set(table.model_types)))} -> {to}"
            for to, r in RULES.items()
            if set(r.sources) & set(table.model_types)
        ]
        return [f"upcycle to an MoE (lemonkit upcycle, exact): {'; '.join(into)}"] if into else []
    dense = f" (dense blocks: {table.config.mlp})" if table.dense_layers else ""
    lines = [f"expert MLP: {ex.mlp or table.config.mlp}{dense}"]
    if ex.shared_mlp:
        lines.append(f"shared expert: {ex.shared_mlp}")
    elif ex.shared_experts:
        lines.append(f"shared experts: {ex.shared_experts} x {ex.mlp}")
    groups = "; expert groups x m" if ex.scaled else ""
    lines.append(
        "more experts (num_experts): exact at multiples m (copies with their router rows; "
        f"experts per token x m, so m x the expert FLOPs per token{groups}); "
        "--keep-top-k keeps them: lossy"
    )
    if table.dense_layers:
        lines.append("dense blocks (no experts) follow their source block under depth growth")
    rule = RULES.get(table.model_types[0])
    if rule:
        lines.append(f"upcycle from {', '.join(rule.sources)}: lemonkit upcycle --to {rule.to}")
    return lines


def _pyramid_exactness(table: ArchTable) -> list[str]:
    width = "embed_dim (every stage alike): " + (
        "exact for multiples of the source; other widths only with --allow-lossy "
        "(approximate, error reported)"
        if table.indivisible_lossy
        else "exact at any width"
    )
    period = table.stages.block_period
    return [
        width,
        "heads follow each stage's width (head_dim kept), mlp_ratio: exact",
        "depth per stage: exact (new blocks' post-norms at zero; added in groups of "
        f"{period} so that every block keeps its position mod {period}: shifted windows)",
        *_why(table),
    ]


def describe_architectures() -> str:
    """The text of ``lemonkit list`` (the registry as it is now, registered tables too).

    >>> "llama" in describe_architectures()
    True
    """
    from lemonkit import tables

    lines = []
    for table in tables.TABLES:
        lines.append(f"{', '.join(table.model_types)}: {', '.join(table.classes)}")
        lines += [f"    {line}" for line in exactness(table)]
    return "\n".join(lines)
