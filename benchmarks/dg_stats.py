"""Statistics of the DG table: spread over seeds and paired comparisons of methods.

- Spread: the sample standard deviation over seeds (ddof = 1; undefined, NaN, for one seed).
- Paired comparison of a method with a reference method: the paired units are (source domain,
  seed) — the same source site, the same seed, the same unseen targets, only the method differs.
  Per unit the difference of the metric (method - reference, e.g. unseen Dice averaged over the
  targets of that source); reported as the mean difference with a two-sided 95 % Student t
  interval over the units. The units of one seed share the target test sets, so the interval is
  a guide, not an exact test. A difference is called "higher"/"lower" only when the interval
  excludes 0; otherwise it is "inconclusive" — never "support" on a t of about 1.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
METRICS = ("unseen_dice", "unseen_hd95")  # compared per paired unit
LOWER_IS_BETTER = {"unseen_hd95"}


def sample_std(values) -> float:
    """Sample standard deviation (ddof = 1); NaN for fewer than two values."""
    values = np.asarray(list(values), dtype=np.float64)
    return float(values.std(ddof=1)) if values.size >= 2 else float("nan")


def unit_values(result: dict) -> dict[str, dict[str, float]]:
    """One seed's protocol result -> {run name (the source): {metric: value over its unseen targets}}."""
    out = {}
    for name, run in result["runs"].items():
        unseen = [d for d in run["domains"].values() if d["role"] == "target"]
        out[name] = {"unseen_dice": float(np.mean([d["dice"]["mean"] for d in unseen])),
                     "unseen_hd95": float(np.mean([d["hd95"]["mean"] for d in unseen]))}
    return out


def paired_difference(method: dict[str, float], reference: dict[str, float], lower_is_better: bool = False) -> dict:
    """Per-unit values {unit: x} of a method and the reference -> mean difference (method - reference)
    over the units both have, its 95 % t interval, and a verdict ('higher' | 'lower' | 'inconclusive';
    'better' / 'worse' wording is left to the caller, with `lower_is_better`)."""
    units = sorted(set(method) & set(reference))
    diffs = np.array([method[u] - reference[u] for u in units], dtype=np.float64)
    n = int(diffs.size)
    mean = float(diffs.mean()) if n else float("nan")
    if n >= 2:
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * diffs.std(ddof=1) / math.sqrt(n))
        low, high = mean - half, mean + half
    else:
        low = high = float("nan")
    if n >= 2 and (low > 0 or high < 0):
        verdict = "higher" if mean > 0 else "lower"
        better = (verdict == "lower") == lower_is_better
    else:
        verdict, better = "inconclusive", None
    return {"n": n, "units": units, "mean": mean, "ci_low": low, "ci_high": high, "verdict": verdict,
            "better": better}


def verdict_text(cmp: dict, reference: str) -> str:
    """Plain words for a comparison: 'better than X', 'worse than X' or 'inconclusive vs X'."""
    if cmp["better"] is None:
        return f"inconclusive vs {reference} (95 % CI contains 0)"
    return f"{'better' if cmp['better'] else 'worse'} than {reference} (95 % CI excludes 0)"


def compare(units: dict[str, dict[str, dict[str, float]]], reference: str) -> dict:
    """units[method][metric] = {unit: value} -> {method: {metric: paired_difference}} against `reference`
    (every method but the reference; empty when the reference has no units)."""
    if reference not in units:
        return {}
    out = {}
    for method, by_metric in units.items():
        if method == reference:
            continue
        out[method] = {m: paired_difference(by_metric.get(m, {}), units[reference].get(m, {}), m in LOWER_IS_BETTER)
                       for m in METRICS}
    return out
