"""The runs of an experiment: their names, what each one is, and how they are displayed.

This module owns the harness's run vocabulary; ``experiment`` trains what ``run_specs``
lists, ``report`` and ``plots`` group and label runs by the names and groups here.

Runs, in order (each named ``{method}-s{seed}``, or after its ablation):

- ``small``: the source model, trained from scratch (``small_steps``).
- ``scratch-s{k}``: the large model from scratch, ``steps`` = T steps, one per seed. Their
  mean final validation loss is the *target*.
- ``lemon-s{k}``: LEMON expansion of ``small``, LEMON recipe (same peak LR, decay over
  ``lemon_ratio`` x T), one per seed (expansion seed and data seed).
- baselines: ``net2net`` (bert2BERT-FPI), ``aki`` (bert2BERT-AKI), ``stack`` (StackBERT
  depth), trained with the LEMON recipe, one run per ``baseline_seeds`` (default: the first
  seed); ``lemon-default`` (LEMON, the scratch schedule over T), ``net2net-default``,
  ``aki-default``, ``stack-default`` (the same with the scratch schedule) and ``ki-soft`` /
  ``ki-hard`` (the large model from scratch learning from ``small``), the first seed.
- ablations: ``lemon-lr{f}`` (peak LR x f) and ``lemon-decay{r}`` (decay over r x T).

Example:
    >>> [s.name for s in run_specs({"seeds": [0, 1], "baselines": ["aki", "ki-soft"]})]
    ['small', 'scratch-s0', 'scratch-s1', 'lemon-s0', 'lemon-s1', 'aki-s0', 'ki-soft-s0']
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import lemonkit
from lemonkit.harness.errors import HarnessError

# the order of the groups in a report's table
GROUP_ORDER = ("reference", "headline", "baseline", "ablation")


@dataclass
class RunSpec:
    """One run. ``init``: "small" (train the source), "scratch", "expand".

    Its fields (in this order) are part of every run's cache key: a new field, or a
    renamed one, would make every committed result stale."""

    name: str
    init: str
    group: str  # "source" | "reference" | "headline" | "baseline" | "ablation"
    seed: int = 0
    method: str = "lemon"
    depth: str = "zero"
    lr_scale: float = 1.0
    decay_ratio: float = 1.0  # decay length as a fraction of T
    steps_ratio: float = 1.0  # longest run as a fraction of T
    min_ratio: float = 0.0  # with stop_at_target: not before this fraction of T
    ki: str | None = None
    stop_at_target: bool = False


# ---------------------------------------------------------------- baselines

EXPANSION_BASELINES = ("net2net", "aki", "stack")
DEFAULT_SCHEDULE_BASELINES = tuple(f"{b}-default" for b in EXPANSION_BASELINES)
KI_BASELINES = ("ki-soft", "ki-hard")
BASELINES = ("lemon-default", *EXPANSION_BASELINES, *DEFAULT_SCHEDULE_BASELINES, *KI_BASELINES)


def run_specs(preset: dict) -> list[RunSpec]:
    """Every run of an experiment preset, in the order they must run.

    ``preset``: the values of one ``[preset.X]`` table (``seeds``, ``baselines``,
    ``baseline_seeds``, ``ablation_lr``, ``ablation_decay``, ``lemon_ratio``)."""
    r = preset.get("lemon_ratio", 0.5)
    # the LEMON recipe: decay over r T; then on at the floor LR until the target (at most T)
    recipe = {"decay_ratio": r, "min_ratio": r, "stop_at_target": True}
    seeds, first = preset["seeds"], preset["seeds"][:1]
    specs = [RunSpec("small", "small", "source")]
    specs += [RunSpec(f"scratch-s{s}", "scratch", "reference", seed=s) for s in seeds]
    specs += [RunSpec(f"lemon-s{s}", "expand", "headline", seed=s, **recipe) for s in seeds]
    for b in preset.get("baselines", []):
        for s in preset.get("baseline_seeds", first) if b in EXPANSION_BASELINES else first:
            specs.append(_baseline(b, s, recipe))
    for f in preset.get("ablation_lr", []):
        specs.append(RunSpec(f"lemon-lr{f:g}", "expand", "ablation", lr_scale=f, **recipe))
    for d in preset.get("ablation_decay", []):
        decay = {**recipe, "decay_ratio": d, "min_ratio": d}
        specs.append(RunSpec(f"lemon-decay{d:g}", "expand", "ablation", **decay))
    return specs


def _baseline(b: str, seed: int, recipe: dict) -> RunSpec:
    name = f"{b}-s{seed}"
    if b in DEFAULT_SCHEDULE_BASELINES:  # the same start, the from-scratch schedule
        spec = _baseline(b.removesuffix("-default"), seed, recipe)
        return replace(spec, name=name, decay_ratio=1.0, min_ratio=0.0)
    if b == "lemon-default":  # LEMON init, the from-scratch schedule (decay over T)
        return RunSpec(name, "expand", "baseline", seed=seed, stop_at_target=True)
    if b == "net2net":  # equal splits, LEMON's zero-output depth: isolates symmetry breaking
        return RunSpec(name, "expand", "baseline", seed=seed, method=b, **recipe)
    if b == "aki":  # bert2BERT: AKI width, depth by stacking the widened model
        return RunSpec(name, "expand", "baseline", seed=seed, method=b, depth="stack", **recipe)
    if b == "stack":  # LEMON width, StackBERT depth: isolates the depth rule
        return RunSpec(name, "expand", "baseline", seed=seed, depth="stack", **recipe)
    if b in KI_BASELINES:
        return RunSpec(name, "scratch", "baseline", seed=seed, ki=b[3:], stop_at_target=True)
    raise HarnessError(f"unknown baseline {b!r} (known: {', '.join(BASELINES)})")


def is_lossy(spec: RunSpec) -> bool:
    """Whether the run starts from an expansion that changes the function (aki, stack):
    read from lemonkit's operator tables, the one place that knows."""
    return bool(
        lemonkit.METHODS[spec.method].lossy_reason or lemonkit.DEPTHS[spec.depth].lossy_reason
    )


# ---------------------------------------------------------------- names -> methods, labels


def method_of(name: str) -> str:
    """``net2net-s1`` -> ``net2net``; names without a seed suffix are their own method.

    Example:
        >>> method_of("net2net-default-s1"), method_of("lemon-lr0.2")
        ('net2net-default', 'lemon-lr0.2')
    """
    base, _, seed = name.rpartition("-s")
    return base if base and seed.isdigit() else name


# the columns of the report's overview, after LEMON's own
OVERVIEW_RUNS = (*EXPANSION_BASELINES, "lemon-default", *DEFAULT_SCHEDULE_BASELINES, *KI_BASELINES)

LABELS = {
    "scratch": "from scratch (reference)",
    "lemon": "LEMON, LEMON recipe",
    "lemon-default": "LEMON, scratch schedule",
    "net2net": "Net2Net / bert2BERT-FPI width (equal splits), zero depth",
    "aki": "bert2BERT-AKI (AKI width, stacked depth)",
    "stack": "LEMON width, StackBERT depth (stacked copies)",
    "ki-soft": "soft KI (from scratch + teacher)",
    "ki-hard": "hard KI (from scratch + teacher)",
    "net2net-default": "Net2Net / FPI, scratch schedule",
    "aki-default": "bert2BERT-AKI, scratch schedule",
    "stack-default": "StackBERT depth, scratch schedule",
}


def label_of(name: str) -> str:
    """A run's legend entry: its method's label, with the run's name when seeded.

    Example:
        >>> label_of("aki-s1"), label_of("lemon-lr0.2")
        ('bert2BERT-AKI (AKI width, stacked depth) [aki-s1]', 'lemon-lr0.2')
    """
    base = method_of(name)
    return f"{LABELS.get(base, name)}" + (f" [{name}]" if base != name else "")


COLORS = {
    "scratch": "0.45",
    "lemon": "tab:red",
    "lemon-default": "tab:orange",
    "net2net": "tab:blue",
    "aki": "tab:purple",
    "stack": "tab:cyan",
    "ki-soft": "tab:olive",
    "ki-hard": "tab:green",
}
# with the scratch schedule: the base method's colour (drawn dash-dotted)
COLORS |= {b: COLORS[b.removesuffix("-default")] for b in DEFAULT_SCHEDULE_BASELINES}

# ablations: none of these is LEMON's red, which they are drawn against
ABLATION_COLORS = ("tab:blue", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
