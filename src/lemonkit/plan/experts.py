"""A mixture of experts' sizes: how many experts, their MLP, the shared expert.

More experts (``num_experts = m x E``) copy every expert m times, with its router row.
A softmax router gives the m copies of an expert 1/m of its probability each, so the
copies' outputs are weighted 1/m; a sigmoid router keeps every copy's score and only
renormalised top-k weights are shared. The top-k becomes m x k, so that the selected
experts are all the copies of the source's top-k: the output is exactly the source's,
and each token runs m times as many experts (m times the expert FLOPs per token).
``keep_top_k`` keeps k: lossy, and refused unless ``allow_lossy``.

Example:
    >>> from transformers import MixtralConfig
    >>> from lemonkit.tables import table_for
    >>> cfg = MixtralConfig(num_local_experts=4, num_experts_per_tok=2)
    >>> expert_source(cfg, table_for("mixtral"))["num_experts"]
    4
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lemonkit.errors import ImpossibleExpansionError
from lemonkit.plan.spaces import SpaceMap, circular_map
from lemonkit.plan.targets import Options, Targets
from lemonkit.tables.format import EXPERTS, MOE_MLP, SHARED_MLP, ArchTable

EXPERT_SIZES = ("moe_intermediate_size", "shared_expert_intermediate_size", "num_experts")


def expert_source(config: Any, table: ArchTable) -> dict[str, int | None]:
    """The source's expert count, expert MLP and shared expert sizes (None: none)."""
    ex = table.experts
    if ex is None:
        return dict.fromkeys(EXPERT_SIZES)
    return {
        "num_experts": getattr(config, ex.count),
        "moe_intermediate_size": getattr(config, ex.mlp) if ex.mlp else None,
        "shared_expert_intermediate_size": getattr(config, ex.shared_mlp)
        if ex.shared_mlp
        else None,
    }


def expert_target(table: ArchTable, src: Targets, req: Targets) -> dict[str, int | None]:
    """The target's expert sizes: left out, the source's. Refused: expert sizes for a
    family that has no such size, and an expert count that is not a multiple."""
    out = {}
    for name in EXPERT_SIZES:
        value, source = getattr(req, name), getattr(src, name)
        if value is not None and source is None:
            raise ImpossibleExpansionError(_no_such_size(table, name))
        out[name] = value or source
    e_src, e_tgt = src.num_experts, out["num_experts"]
    if e_src and e_tgt % e_src:
        raise ImpossibleExpansionError(
            f"num_experts {e_tgt} is not a multiple of the source's {e_src}: the copies of an "
            "expert share its routing weight, which is exact only when every expert gets the "
            f"same number of copies (choose {e_src * max(1, e_tgt // e_src)} or "
            f"{e_src * (e_tgt // e_src + 1)})"
        )
    return out


def _no_such_size(table: ArchTable, name: str) -> str:
    model_type = table.model_types[0]
    if table.experts is None:
        return (
            f"{model_type} has no experts ({name} applies to mixtures of experts); "
            "lemonkit.upcycle (lemonkit upcycle) turns a dense model into one"
        )
    if name == "moe_intermediate_size":
        return f"{model_type}'s experts have no MLP size of their own: use intermediate_size"
    return f"{model_type} has no {name}"


def expert_spaces(table: ArchTable, config: Any, src: Targets, tgt: Targets) -> dict[str, SpaceMap]:
    """The expert map (copies of every expert, in order: target j copies j mod E, so that
    target expert groups are copies of source groups) and the expert MLP maps."""
    ex = table.experts
    if ex is None:
        return {}
    maps = {
        EXPERTS: replace(
            circular_map(src.num_experts, tgt.num_experts, name=EXPERTS),
            diluted=dilutes(config, table),
        )
    }
    if ex.mlp:
        maps[MOE_MLP] = circular_map(
            src.moe_intermediate_size, tgt.moe_intermediate_size, name=MOE_MLP
        )
    shared = _shared_sizes(table, config, src, tgt)
    if shared:
        maps[SHARED_MLP] = circular_map(*shared, name=SHARED_MLP)
    return maps


def dilutes(config: Any, table: ArchTable) -> bool:
    """Whether the model weighs m copies of an expert 1/m each: a softmax router always,
    a sigmoid router when it renormalises the top-k weights."""
    ex = table.experts
    return ex.router == "softmax" or bool(ex.renorm and getattr(config, ex.renorm, False))


def _shared_sizes(table: ArchTable, config: Any, src: Targets, tgt: Targets):
    ex = table.experts
    if ex.shared_mlp:
        return src.shared_expert_intermediate_size, tgt.shared_expert_intermediate_size
    if ex.shared_experts:
        n = getattr(config, ex.shared_experts) or 0
        return (n * src.moe_intermediate_size, n * tgt.moe_intermediate_size) if n else None
    return None


def copies(src: Targets, tgt: Targets) -> int:
    """m: how many copies of each expert the target has (1 without experts)."""
    return tgt.num_experts // src.num_experts if src.num_experts else 1


def experts_lossy(src: Targets, tgt: Targets, options: Options) -> str | None:
    """More experts with the experts per token kept: refused, or the reason."""
    m = copies(src, tgt)
    if m == 1 or not options.keep_top_k:
        return None
    reason = (
        f"keep_top_k keeps the experts per token while the experts grow {m}x: each token "
        f"runs copies of fewer experts, which changes the function"
    )
    if not options.allow_lossy:
        raise ImpossibleExpansionError(
            f"not lossless: {reason}. Pass allow_lossy=True (--allow-lossy) to build it, or "
            f"leave keep_top_k off (experts per token x {m}: exact)"
        )
    return reason


def write_expert_config(cfg: Any, table: ArchTable, src: Targets, tgt: Targets, keep_top_k: bool):
    """Expert count, experts per token (x m unless kept), the fields scaled with them
    (DeepSeek's groups) and the expert MLP sizes, on the target config."""
    ex = table.experts
    if ex is None:
        return
    m = copies(src, tgt)
    setattr(cfg, ex.count, tgt.num_experts)
    if not keep_top_k:
        setattr(cfg, ex.top_k, getattr(cfg, ex.top_k) * m)
    for name in ex.scaled if not keep_top_k else ():
        if getattr(cfg, name, None):
            setattr(cfg, name, getattr(cfg, name) * m)
    if ex.mlp:
        setattr(cfg, ex.mlp, tgt.moe_intermediate_size)
    if ex.shared_mlp:
        setattr(cfg, ex.shared_mlp, tgt.shared_expert_intermediate_size)


def experts_record(plan) -> dict | None:
    """The provenance of an expert growth: counts, experts per token, the compute."""
    ex = plan.table.experts
    if ex is None:
        return None
    k_src = getattr(plan.source_config, ex.top_k)
    k_tgt = getattr(plan.target_config, ex.top_k)
    return {
        "num_experts": [plan.source.num_experts, plan.target.num_experts],
        "experts_per_token": [k_src, k_tgt],
        "copies_weighted": "1/m each (softmax router or renormalised top-k)"
        if plan.maps[EXPERTS].diluted
        else "kept (sigmoid scores, not renormalised)",
        "compute": f"expert FLOPs per token x {k_tgt / k_src:g}" if k_tgt != k_src else "unchanged",
    }
