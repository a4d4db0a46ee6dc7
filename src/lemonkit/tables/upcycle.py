"""Dense -> mixture of experts: for each MoE family, the dense families it upcycles and
where each of its MoE tensors comes from (data; ``lemonkit.plan.upcycle`` reads it).

Every expert is a copy of the dense MLP and the router is random. With the top-k
weights renormalised to sum to 1, the MoE computes sum_k w_k MLP(x) = MLP(x) for any
router, so the upcycled model is the dense one exactly; Qwen's families get
``norm_topk_prob = True`` for it (their default is False, under which the selected
probabilities sum to less than 1 and vary per token: no constant scale could fix
that). Qwen2-MoE's shared expert starts as a copy of the dense MLP with its down
projection at zero (like a new block's branch), so it adds nothing until trained.

Names are relative to the base model (``layers.{i}...``); ``{e}`` is the expert.

Example:
    >>> rule_for("mixtral").sources
    ('llama', 'mistral')
"""

from __future__ import annotations

from dataclasses import dataclass

from lemonkit.errors import ImpossibleExpansionError


@dataclass(frozen=True)
class Source:
    """Where one MoE tensor comes from: ``copy`` (a dense tensor; per expert where the
    name has ``{e}``), ``stack`` (num_experts copies of the dense tensors concatenated
    along their rows, on a new leading axis), ``zeros`` (shaped like a dense tensor),
    ``router`` (random [num_experts, hidden]) or ``gate_row`` (random [1, hidden])."""

    kind: str
    dense: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpcycleRule:
    """How dense models of ``sources`` become the MoE family ``to``.

    ``memory``: the MoE tensors as the module holds them (stacked experts);
    ``disk``: as its checkpoints save them (one tensor per expert). Dense tensors named
    by a source are replaced; every other tensor keeps its name. ``config``: fields set
    to keep it exact; ``expert_sizes``: fields set to the dense MLP's size; ``refuse``:
    (field, value, why) for dense configs the MoE family cannot express; ``exact``:
    why the output is the dense model's, for the record.
    """

    to: str
    sources: tuple[str, ...]
    memory: tuple[tuple[str, Source], ...]
    disk: tuple[tuple[str, Source], ...]
    exact: str
    config: tuple[tuple[str, object], ...] = ()
    expert_sizes: tuple[str, ...] = ()
    refuse: tuple[tuple[str, object, str], ...] = ()


_D = "layers.{i}.mlp."
GATE, UP, DOWN = _D + "gate_proj.weight", _D + "up_proj.weight", _D + "down_proj.weight"

_STACKED = (
    (_D + "gate.weight", Source("router")),
    (_D + "experts.gate_up_proj", Source("stack", (GATE, UP))),  # [E, 2F, D]
    (_D + "experts.down_proj", Source("stack", (DOWN,))),  # [E, D, F]
)
_PER_EXPERT = (
    (_D + "gate.weight", Source("router")),
    (_D + "experts.{e}.gate_proj.weight", Source("copy", (GATE,))),
    (_D + "experts.{e}.up_proj.weight", Source("copy", (UP,))),
    (_D + "experts.{e}.down_proj.weight", Source("copy", (DOWN,))),
)
_SHARED = (
    (_D + "shared_expert.gate_proj.weight", Source("copy", (GATE,))),
    (_D + "shared_expert.up_proj.weight", Source("copy", (UP,))),
    (_D + "shared_expert.down_proj.weight", Source("zeros", (DOWN,))),
    (_D + "shared_expert_gate.weight", Source("gate_row")),
)
_M = "layers.{i}.block_sparse_moe."
_QWEN_CONFIG = (("norm_topk_prob", True), ("decoder_sparse_step", 1), ("mlp_only_layers", ()))
_QWEN_EXACT = (
    "norm_topk_prob is set to True (the renormalised top-k weights sum to 1, so the "
    "copies of the dense MLP sum to it for any router)"
)

RULES: dict[str, UpcycleRule] = {
    r.to: r
    for r in (
        UpcycleRule(
            to="mixtral",
            sources=("llama", "mistral"),
            memory=_STACKED,
            disk=(
                (_M + "gate.weight", Source("router")),
                (_M + "experts.{e}.w1.weight", Source("copy", (GATE,))),
                (_M + "experts.{e}.w3.weight", Source("copy", (UP,))),
                (_M + "experts.{e}.w2.weight", Source("copy", (DOWN,))),
            ),
            exact="Mixtral always renormalises the top-k weights, which then sum to 1",
            refuse=(
                ("attention_bias", True, "Mixtral's attention has no biases"),
                ("mlp_bias", True, "Mixtral's experts have no biases"),
            ),
        ),
        UpcycleRule(
            to="qwen2_moe",
            sources=("qwen2",),
            memory=(*_STACKED, *_SHARED),
            disk=(*_PER_EXPERT, *_SHARED),
            exact=_QWEN_EXACT + "; the shared expert's down projection starts at zero",
            config=_QWEN_CONFIG,
            expert_sizes=("moe_intermediate_size", "shared_expert_intermediate_size"),
        ),
        UpcycleRule(
            to="qwen3_moe",
            sources=("qwen3",),
            memory=_STACKED,
            disk=_PER_EXPERT,
            exact=_QWEN_EXACT,
            config=_QWEN_CONFIG,
            expert_sizes=("moe_intermediate_size",),
            refuse=(
                (
                    "use_sliding_window",
                    True,
                    "Qwen3-MoE has no per-layer sliding window (max_window_layers)",
                ),
            ),
        ),
    )
}


def rule_for(to: str) -> UpcycleRule:
    """The rule that upcycles into ``to``; an unknown family is refused with the known."""
    if to not in RULES:
        known = "; ".join(f"{', '.join(r.sources)} -> {name}" for name, r in RULES.items())
        raise ImpossibleExpansionError(f"cannot upcycle into {to!r}; lemonkit upcycles {known}")
    return RULES[to]
