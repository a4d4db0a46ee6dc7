"""Dense -> MoE upcycling, planned: the MoE config and the MoE checkpoint's tensors (names,
shapes, and what each is made of), from the dense config and names only.

The upcycled model is first a mixture of experts of the *dense model's sizes* that
computes the same function (every expert a copy of the dense MLP; a random router;
renormalised top-k weights, see :mod:`lemonkit.tables.upcycle`); then the ordinary
plan grows it (width, heads, MLP, depth) like any MoE checkpoint. This is the one place
where lemonkit changes the class: ``LlamaForCausalLM`` -> ``MixtralForCausalLM``.

Example:
    >>> from transformers import LlamaConfig
    >>> dense = LlamaConfig(hidden_size=64, num_attention_heads=4, intermediate_size=96)
    >>> request = Upcycle("mixtral", num_experts=4, experts_per_token=2)
    >>> cfg = upcycle_config(dense, request)
    >>> type(cfg).__name__, cfg.num_local_experts, cfg.intermediate_size, cfg.architectures
    ('MixtralConfig', 4, 96, ['MixtralForCausalLM'])
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from lemonkit.errors import ImpossibleExpansionError
from lemonkit.tables import table_for
from lemonkit.tables.upcycle import Source, UpcycleRule, rule_for

TensorInfo = tuple[Any, tuple[int, ...]]  # (dtype, shape)


@dataclass(frozen=True)
class Upcycle:
    """What a user asks for: the MoE family, its expert count and experts per token, and
    the seed of the random router (the expansion's seed)."""

    to: str
    num_experts: int
    experts_per_token: int
    seed: int = 0

    @property
    def rule(self) -> UpcycleRule:
        return rule_for(self.to)


@dataclass(frozen=True)
class Recipe:
    """One tensor of the upcycled checkpoint: its source kind, the concrete dense tensors
    it is made of, its dtype and shape."""

    kind: str
    dense: tuple[str, ...]
    dtype: Any
    shape: tuple[int, ...]


def check_request(config: Any, request: Upcycle) -> UpcycleRule:
    """The rule for a dense config, or a one-line reason why it cannot be upcycled."""
    rule = request.rule
    if config.model_type not in rule.sources:
        raise ImpossibleExpansionError(
            f"cannot upcycle {config.model_type} into {rule.to}: {rule.to} upcycles "
            f"{', '.join(rule.sources)}"
        )
    for field_name, value, why in rule.refuse:
        if getattr(config, field_name, None) == value:
            raise ImpossibleExpansionError(
                f"cannot upcycle this {config.model_type} ({field_name}={value!r}): {why}"
            )
    e, k = request.num_experts, request.experts_per_token
    if not (isinstance(e, int) and isinstance(k, int) and 1 <= k <= e):
        raise ImpossibleExpansionError(
            f"num_experts={e}, experts per token={k}: need 1 <= experts per token <= num_experts"
        )
    return rule


def upcycle_config(config: Any, request: Upcycle, headless: bool = False) -> Any:
    """The MoE config at the dense sizes: the dense config's fields the MoE config has,
    the expert count and experts per token, the expert sizes set to the dense MLP's,
    the fields that keep it exact, and the MoE class in ``architectures``."""
    from transformers import CONFIG_MAPPING

    rule = check_request(config, request)
    cls = CONFIG_MAPPING[rule.to]
    names = {f.name for f in dataclasses.fields(cls)} | {"architectures", "dtype"}
    values = {k: v for k, v in config.to_dict().items() if k in names}
    experts = table_for(rule.to).experts
    values[experts.count] = request.num_experts
    values[experts.top_k] = request.experts_per_token
    for field_name in rule.expert_sizes:
        values[field_name] = config.intermediate_size
    values.update({k: list(v) if isinstance(v, tuple) else v for k, v in rule.config})
    moe = table_for(rule.to)
    values["architectures"] = [moe.base_classes[0] if headless else moe.classes[0]]
    try:
        return cls(**_mapped(cls, values))
    except Exception as e:  # the MoE class validates what the dense config let through
        raise ImpossibleExpansionError(
            f"the {rule.to} config cannot be built from the source's config.json: "
            f"{type(e).__name__}: {e}"
        ) from e


def _mapped(cls: type, values: dict) -> dict:
    """Attribute-mapped names (``num_experts`` -> ``num_local_experts``) as fields."""
    mapping = getattr(cls, "attribute_map", {}) or {}
    return {mapping.get(k, k): v for k, v in values.items()}


def upcycled_tensors(
    infos: dict[str, TensorInfo],
    config: Any,
    request: Upcycle,
    *,
    stacked: bool,
    prefix: str,
) -> dict[str, Recipe]:
    """Every tensor of the upcycled checkpoint from the dense one's names and shapes:
    ``stacked`` experts (a module's state dict) or one tensor per expert (a checkpoint).
    ``prefix``: the base model's prefix in these names (``model.``, or "" headless)."""
    rule = request.rule
    entries = rule.memory if stacked else rule.disk
    consumed = [_pattern(prefix + d) for _, s in entries for d in s.dense]
    layers = sorted({int(m.group(1)) for n in infos for p in consumed if (m := p.match(n))})
    out = {
        n: Recipe("copy", (n,), *infos[n]) for n in infos if not any(p.match(n) for p in consumed)
    }
    for i in layers:
        first = next(prefix + d.replace("{i}", str(i)) for _, s in entries for d in s.dense)
        dtype = infos[first][0] if first in infos else None  # the dense MLP's
        for pattern, source in entries:
            dense = tuple(prefix + d.replace("{i}", str(i)) for d in source.dense)
            missing = [n for n in dense if n not in infos]
            if missing:
                raise ImpossibleExpansionError(f"cannot upcycle: the dense MLP lacks {missing[0]}")
            name = prefix + pattern.replace("{i}", str(i))
            recipe = _recipe(source, dense, infos, config, request, dtype)
            for e in range(request.num_experts) if "{e}" in name else [None]:
                out[name if e is None else name.replace("{e}", str(e))] = recipe
    return out


def _pattern(name: str) -> re.Pattern:
    return re.compile("^" + re.escape(name).replace(r"\{i\}", r"(\d+)") + "$")


def _recipe(source: Source, dense, infos, config, request: Upcycle, dtype) -> Recipe:
    """``dtype``: the dense MLP's, for what is made anew (the router)."""
    if source.kind in ("copy", "zeros"):
        return Recipe(source.kind, dense, *infos[dense[0]])
    if source.kind == "stack":
        rows = sum(infos[n][1][0] for n in dense)
        cols = infos[dense[0]][1][1:]
        return Recipe("stack", dense, infos[dense[0]][0], (request.num_experts, rows, *cols))
    rows = request.num_experts if source.kind == "router" else 1
    return Recipe(source.kind, (), dtype, (rows, config.hidden_size))


def upcycle_growth(request: Upcycle, growth: dict[str, Any]) -> dict[str, Any]:
    """The growth keywords for the upcycled MoE: ``intermediate_size`` is the dense MLP's
    size, which every expert copies, so it also sets the families' own expert sizes
    (unless given); the expert count is the request's."""
    growth = dict(growth)
    if growth.get("num_experts") not in (None, request.num_experts):
        raise ImpossibleExpansionError(
            "num_experts is the upcycled expert count here; grow the experts later with "
            "lemonkit expand --num-experts"
        )
    growth.pop("num_experts", None)
    size = growth.get("intermediate_size")
    for field_name in request.rule.expert_sizes if size else ():
        if growth.get(field_name) is None:
            growth[field_name] = size
    return growth


def upcycle_record(config: Any, request: Upcycle, moe_config: Any, dense_class=None) -> dict:
    """The provenance of an upcycling (``lemonkit.json``'s ``plan.upcycle``)."""
    rule = request.rule
    dense_class = dense_class or (getattr(config, "architectures", None) or [config.model_type])[0]
    return {
        "from": config.model_type,
        "to": rule.to,
        "class": f"{dense_class} -> {moe_config.architectures[0]}",
        "num_experts": request.num_experts,
        "experts_per_token": request.experts_per_token,
        "experts": "copies of the dense MLP",
        "router": f"random, N(0, {moe_config.initializer_range}^2), seed {request.seed}",
        "exact_because": rule.exact,
        "set": dict(rule.config),
    }
