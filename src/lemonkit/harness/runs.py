"""The runs of an experiment: their names, what each one is, and how they are displayed.

This module owns the harness's run vocabulary; ``experiment`` trains what ``run_specs``
lists, ``report`` and ``plots`` group and label runs by the names and groups here. The
growth methods themselves (name -> ``lemonkit.expand`` keywords) are the data of
``growth.GROWTHS``.

Runs, in order (each named ``{method}-s{seed}``, or after its ablation, ``...-s{seed}``):

- sources: ``small`` (the source model, trained from scratch for ``small_steps``), and for
  the when-to-grow sweep ``small-x{f}`` (f x ``small_steps``) and ``small-annealed`` (its
  LR decayed to the floor, not held constant).
- ``scratch-s{k}``: the large model from scratch, ``steps`` = T steps, one per seed. Their
  mean final validation loss is the *target*.
- ``lemon-s{k}``: LEMON expansion of ``small``, LEMON recipe (same peak LR, decay over
  ``lemon_ratio`` x T, then on at the floor LR until the target), one per seed.
- baselines (``baselines``, over ``baseline_seeds``, default the first seed): every growth
  method of ``growth.GROWTHS`` by name, with the LEMON recipe; ``{method}-default`` the same
  start with the from-scratch schedule (``lemon-default`` included); ``ki-soft`` /
  ``ki-hard``: the large model from scratch learning from ``small``.
- ablations (over ``ablation_seeds``, default the first seed): ``lemon-lr{f}`` (peak LR x
  f), ``lemon-decay{r}`` (decay over r x T), ``lemon-paper-sigma{s}`` (the paper's split
  with that sigma), ``hyperclone-snr{q}`` (noise at that SNR).
- timing (``grow_after``, ``anneal_source``; over ``ablation_seeds``): ``lemon-x{f}-s{k}``
  grown from ``small-x{f}``, ``lemon-annealed-s{k}`` from ``small-annealed``.

Example:
    >>> [s.name for s in run_specs({"seeds": [0, 1], "baselines": ["aki", "ki-soft"]})]
    ['small', 'scratch-s0', 'scratch-s1', 'lemon-s0', 'lemon-s1', 'aki-s0', 'ki-soft-s0']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import lemonkit
from lemonkit.harness.errors import HarnessError
from lemonkit.harness.growth import GROWTHS

# the order of the groups in a report's table
GROUP_ORDER = ("reference", "headline", "baseline", "ablation", "timing")

SUMMARY, INVOCATION = "summary.json", "invocation.json"  # in a preset folder, not runs
NOT_RUNS = (SUMMARY, INVOCATION)


@dataclass
class RunSpec:
    """One run. ``init``: "small" (train a source), "scratch", "expand".

    Its fields (in this order) are part of every run's cache key: a new field, or a
    renamed one, would make every committed result stale, so the fields after
    ``stop_at_target`` are left out of the key while they hold their defaults
    (``key_fields``)."""

    name: str
    init: str
    group: str  # "source" | "reference" | "headline" | "baseline" | "ablation" | "timing"
    seed: int = 0
    method: str = "lemon"
    depth: str = "zero"
    lr_scale: float = 1.0
    decay_ratio: float = 1.0  # decay length as a fraction of T
    steps_ratio: float = 1.0  # longest run as a fraction of T (a source: of small_steps)
    min_ratio: float = 0.0  # with stop_at_target: not before this fraction of T
    ki: str | None = None
    stop_at_target: bool = False
    # --- newer fields: in the cache key only when set
    options: dict = field(default_factory=dict)  # more lemonkit.expand keywords (split...)
    noise_snr: float | None = None  # Gaussian noise after the expansion (HyperCloning)
    source: str = "small"  # the source run this one grows from (or learns from, KI)
    anneal: bool = False  # a source run: LR decayed to the floor instead of held constant


NEWER_FIELDS = ("options", "noise_snr", "source", "anneal")


def key_fields(spec: RunSpec) -> dict:
    """The spec as its cache key holds it: the newer fields only where they are set.

    Example:
        >>> [k for k in key_fields(RunSpec("a", "expand", "headline", noise_snr=9.0))][-2:]
        ['stop_at_target', 'noise_snr']
    """
    defaults = {
        f.name: (f.default_factory() if callable(f.default_factory) else f.default)
        for f in fields(RunSpec)
    }
    return {k: v for k, v in asdict(spec).items() if k not in NEWER_FIELDS or v != defaults[k]}


# ---------------------------------------------------------------- baselines

EXPANSION_BASELINES = tuple(g for g in GROWTHS if g != "lemon")
DEFAULT_SCHEDULE_BASELINES = tuple(f"{g}-default" for g in GROWTHS)
KI_BASELINES = ("ki-soft", "ki-hard")
BASELINES = (*EXPANSION_BASELINES, *DEFAULT_SCHEDULE_BASELINES, *KI_BASELINES)


def run_specs(preset: dict, task: str = "causal_lm") -> list[RunSpec]:
    """Every run of an experiment preset, in the order they must run.

    ``preset``: the values of one ``[preset.X]`` table (``seeds``, ``baselines``,
    ``baseline_seeds``, ``ablation_seeds``, ``ablation_lr``, ``ablation_decay``,
    ``ablation_sigma``, ``ablation_spread``, ``ablation_snr``, ``grow_after``, ``anneal_source``,
    ``lemon_ratio``); ``task`` picks the per-family keywords of a growth method."""
    r = preset.get("lemon_ratio", 0.5)
    # the LEMON recipe: decay over r T; then on at the floor LR until the target (at most T)
    recipe = {"decay_ratio": r, "min_ratio": r, "stop_at_target": True}
    seeds, first = preset["seeds"], preset["seeds"][:1]
    specs = _sources(preset) + [
        RunSpec(f"scratch-s{s}", "scratch", "reference", seed=s) for s in seeds
    ]
    specs += [RunSpec(f"lemon-s{s}", "expand", "headline", seed=s, **recipe) for s in seeds]
    for b in preset.get("baselines", []):
        for s in preset.get("baseline_seeds", first):
            specs.append(_baseline(b, s, recipe, task))
    for s in preset.get("ablation_seeds", first):
        specs += _ablations(preset, s, recipe, task)
    for s in preset.get("ablation_seeds", first):
        specs += _timing(preset, s, recipe)
    return specs


def _sources(preset: dict) -> list[RunSpec]:
    """``small``, then the when-to-grow sweep's sources."""
    specs = [RunSpec("small", "small", "source")]
    specs += [
        RunSpec(f"small-x{f:g}", "small", "source", steps_ratio=f)
        for f in preset.get("grow_after", [])
    ]
    if preset.get("anneal_source"):
        specs.append(RunSpec("small-annealed", "small", "source", anneal=True))
    return specs


def _grown(name: str, g: str, group: str, seed: int, task: str, **settings) -> RunSpec:
    """A run that starts from growth method ``g`` of ``GROWTHS``."""
    growth = GROWTHS[g]
    kw = growth.kwargs(task)
    method, depth = kw.pop("method", "lemon"), kw.pop("depth", "zero")
    return RunSpec(
        name,
        "expand",
        group,
        seed=seed,
        method=method,
        depth=depth,
        options=kw,
        noise_snr=growth.noise_snr,
        **settings,
    )


def _baseline(b: str, seed: int, recipe: dict, task: str) -> RunSpec:
    name = f"{b}-s{seed}"
    if b in DEFAULT_SCHEDULE_BASELINES:  # the same start, the from-scratch schedule
        return _grown(name, b.removesuffix("-default"), "baseline", seed, task, stop_at_target=True)
    if b in EXPANSION_BASELINES:
        return _grown(name, b, "baseline", seed, task, **recipe)
    if b in KI_BASELINES:
        return RunSpec(name, "scratch", "baseline", seed=seed, ki=b[3:], stop_at_target=True)
    raise HarnessError(f"unknown baseline {b!r} (known: {', '.join(BASELINES)})")


def _ablations(preset: dict, s: int, recipe: dict, task: str) -> list[RunSpec]:
    """The LEMON recipe's and the constructions' knobs, one seed."""
    specs = [
        RunSpec(f"lemon-lr{f:g}-s{s}", "expand", "ablation", seed=s, lr_scale=f, **recipe)
        for f in preset.get("ablation_lr", [])
    ]
    for d in preset.get("ablation_decay", []):
        decay = {**recipe, "decay_ratio": d, "min_ratio": d}
        specs.append(RunSpec(f"lemon-decay{d:g}-s{s}", "expand", "ablation", seed=s, **decay))
    for sigma in preset.get("ablation_sigma", []):
        spec = _grown(
            f"lemon-paper-sigma{sigma:g}-s{s}", "lemon-paper", "ablation", s, task, **recipe
        )
        specs.append(replace(spec, options={**spec.options, "sigma": sigma}))
    for spread in preset.get("ablation_spread", []):  # 0: equal splits, as Net2Net
        spec = _grown(f"lemon-spread{spread:g}-s{s}", "lemon", "ablation", s, task, **recipe)
        specs.append(replace(spec, options={**spec.options, "spread": spread}))
    for snr in preset.get("ablation_snr", []):
        spec = _grown(f"hyperclone-snr{snr:g}-s{s}", "hyperclone", "ablation", s, task, **recipe)
        specs.append(replace(spec, noise_snr=float(snr)))
    return specs


def _timing(preset: dict, s: int, recipe: dict) -> list[RunSpec]:
    """When to grow: LEMON from each source of the sweep, the LEMON recipe, one seed."""
    sources = [(f"x{f:g}", f"small-x{f:g}") for f in preset.get("grow_after", [])]
    if preset.get("anneal_source"):
        sources.append(("annealed", "small-annealed"))
    return [
        RunSpec(f"lemon-{tag}-s{s}", "expand", "timing", seed=s, source=src, **recipe)
        for tag, src in sources
    ]


def is_lossy(spec: RunSpec) -> bool:
    """Whether the run starts from an expansion that changes the function (aki, stack,
    added noise): read from lemonkit's operator tables, the one place that knows (a rule
    this lemonkit lacks is refused by ``lemonkit.expand`` itself)."""
    method, depth = lemonkit.METHODS.get(spec.method), lemonkit.DEPTHS.get(spec.depth)
    return bool(
        spec.noise_snr is not None
        or (method and method.lossy_reason)
        or (depth and depth.lossy_reason)
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
OVERVIEW_RUNS = (*EXPANSION_BASELINES, *DEFAULT_SCHEDULE_BASELINES, *KI_BASELINES)

LABELS = {
    "scratch": "from scratch (reference)",
    **{g.name: g.label + ", LEMON recipe" for g in GROWTHS.values()},
    **{f"{g.name}-default": g.label + ", scratch schedule" for g in GROWTHS.values()},
    "ki-soft": "soft KI (from scratch + teacher)",
    "ki-hard": "hard KI (from scratch + teacher)",
}


def label_of(name: str) -> str:
    """A run's legend entry: its method's label, with the run's name when seeded.

    Example:
        >>> label_of("aki-s1"), label_of("lemon-lr0.2")
        ('bert2BERT-AKI (AKI width, stacked depth), LEMON recipe [aki-s1]', 'lemon-lr0.2')
    """
    base = method_of(name)
    return f"{LABELS.get(base, name)}" + (f" [{name}]" if base != name else "")


COLORS = {
    "scratch": "0.45",
    **{g.name: g.color for g in GROWTHS.values()},
    "ki-soft": "tab:olive",
    "ki-hard": "tab:green",
}
# with the scratch schedule: the base method's colour (drawn dash-dotted); LEMON's orange
COLORS |= {b: COLORS[b.removesuffix("-default")] for b in DEFAULT_SCHEDULE_BASELINES}
COLORS["lemon-default"] = "tab:orange"

# ablations: none of these is LEMON's red, which they are drawn against
ABLATION_COLORS = ("tab:blue", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
