"""Spread over seeds and paired comparisons: the statistics behind RESULTS.md's verdicts.

Every figure over seeds is the mean ± the sample standard deviation. LEMON is compared with
each other method **on the same seeds** (same expansion seed, same data order): per seed,
the other run's validation loss minus LEMON's at the last step both evaluated (for runs
that stop at the target, the faster run's stopping step), and the difference of their
savings where both reached the target. The verdict rule (``VERDICT_RULE``): a method is
ahead when the mean paired difference is larger than two standard errors of the paired
differences (sd / sqrt(n)); otherwise no difference is claimed. One seed: no verdict.

Example:
    >>> mean_std([0.5, 0.6, 0.7], pct=True)
    '60.0% ± 10.0'
    >>> verdict_of([0.02, 0.03, 0.025])
    'LEMON ahead'
    >>> verdict_of([0.02, -0.03, 0.01])
    'no difference'
"""

from __future__ import annotations

import math
import statistics

VERDICT_RULE = (
    "A method is ahead when its mean paired difference (same seeds) is larger than two "
    "standard errors of the paired differences (sample sd / sqrt(seeds)); otherwise no "
    "difference is claimed, and one seed gives no verdict."
)


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    mean = statistics.mean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def mean_std(values: list[float | None], pct: bool = False, digits: int = 4) -> str:
    """``mean ± sd`` over seeds; ``reached by k/n seeds`` when some are None; ``-`` if none."""
    if not values:
        return "-"
    if any(v is None for v in values):
        reached = sum(v is not None for v in values)
        return "not reached" if reached == 0 else f"reached by {reached}/{len(values)} seeds"
    mean, sd = mean_sd(values)
    if pct:
        one = f"{100 * mean:.1f}%"
        return one if len(values) == 1 else f"{one} ± {100 * sd:.1f}"
    one = f"{mean:.{digits}f}"
    return one if len(values) == 1 else f"{one} ± {sd:.{digits}f}"


def mean_se(diffs: list[float]) -> tuple[float, float]:
    """Mean of paired differences and its standard error (inf for one pair)."""
    mean, sd = mean_sd(diffs)
    return mean, sd / math.sqrt(len(diffs)) if len(diffs) > 1 else math.inf


def verdict_of(diffs: list[float], lower_is_lemon: bool = False) -> str:
    """``LEMON ahead`` / ``other ahead`` / ``no difference`` / ``one seed: no verdict``.

    ``diffs``: other minus LEMON, positive when LEMON is better (a loss), or with
    ``lower_is_lemon`` LEMON minus other (a saving)."""
    if len(diffs) < 2:
        return "one seed: no verdict"
    mean, se = mean_se(diffs)
    if abs(mean) <= 2 * se:
        return "no difference"
    return "LEMON ahead" if mean > 0 else "other ahead"


def val_at_common_step(a: list[dict], b: list[dict]) -> tuple[int, float, float] | None:
    """(step, val of a, val of b) at the last step after 0 that both histories evaluated."""
    va = {h["step"]: h["val_loss"] for h in a}
    vb = {h["step"]: h["val_loss"] for h in b}
    common = sorted(set(va) & set(vb) - {0})
    if not common:
        return None
    s = common[-1]
    return s, va[s], vb[s]


def paired(lemon: dict[int, dict], other: dict[int, dict]) -> dict:
    """LEMON against one method over the seeds both ran (seed -> run record and row)."""
    seeds = sorted(set(lemon) & set(other))
    d_loss, d_saved, steps = [], [], []
    for s in seeds:
        common = val_at_common_step(lemon[s]["history"], other[s]["history"])
        if common is not None:
            steps.append(common[0])
            d_loss.append(common[2] - common[1])
        a, b = lemon[s]["saved"], other[s]["saved"]
        if a is not None and b is not None:
            d_saved.append(a - b)
    return {
        "seeds": seeds,
        "steps": steps,
        "d_loss": d_loss,
        "d_saved": d_saved,
        "verdict": verdict_of(d_loss),
    }


def diff_text(diffs: list[float], pct: bool = False) -> str:
    """``+0.0123 ± 0.0040`` (mean ± SE; percentage points with ``pct``) or ``-``."""
    if not diffs:
        return "-"
    mean, se = mean_se(diffs)
    scale, unit, digits = (100, " pp", 1) if pct else (1, "", 4)
    se_text = "" if math.isinf(se) else f" ± {scale * se:.{digits}f}"
    return f"{scale * mean:+.{digits}f}{se_text}{unit}"


def by_verdict(paired: dict[str, dict], methods: set[str]) -> dict[str, list[str]]:
    """The ``methods`` among ``paired`` grouped by their verdict, in ``paired``'s order."""
    found: dict[str, list[str]] = {}
    for method, p in paired.items():
        if method in methods:
            found.setdefault(p["verdict"], []).append(method)
    return found


def ablation_words(paired: dict[str, dict], ablations: set[str]) -> list[str]:
    """The ablations' paired verdicts in one sentence, apart from the methods' (they have
    fewer seeds); ``[]`` when no ablation was paired.

    Example:
        >>> ablation_words({"lemon-spread0": {"verdict": "LEMON ahead"}}, {"lemon-spread0"})
        ['Ablations (on the seeds they share with LEMON, same rule): LEMON ahead: lemon-spread0.']
    """
    found = by_verdict(paired, ablations)
    if not found:
        return []
    parts = [f"{v}: {', '.join(sorted(m))}" for v, m in sorted(found.items())]
    return [f"Ablations (on the seeds they share with LEMON, same rule): {'; '.join(parts)}."]
