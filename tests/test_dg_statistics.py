"""Statistics of the DG table (benchmarks/dg_table.py, dg_stats.py) and the README's wording of them."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import dg_stats  # noqa: E402
import dg_table  # noqa: E402
import readme_results  # noqa: E402


def _protocol(dice_by_source: dict[str, float], hd=10.0):
    """A single-source protocol result: each source's run scores `dice` on its unseen targets."""
    runs = {}
    for source, dice in dice_by_source.items():
        domains = {source: {"role": "source", "dice": {"a": 0.9, "mean": 0.9}, "hd95": {"a": 1.0, "mean": 1.0}}}
        for t in dice_by_source:
            if t != source:
                domains[t] = {"role": "target", "dice": {"a": dice, "mean": dice}, "hd95": {"a": hd, "mean": hd}}
        runs[source] = {"source": [source], "domains": domains}
    return {"runs": runs}


def test_std_is_the_sample_std_and_per_seed_values_are_kept():
    units = {("fundus", "m"): {s: _protocol({"A": v, "B": v}) for s, v in enumerate([0.6, 0.7, 0.8])}}
    row = dg_table.summarise(units)["fundus"]["m"]
    assert row["unseen_dice_std"] == pytest.approx(0.1)  # ddof 1; numpy's default would give 0.0816
    assert row["per_seed"]["unseen_dice"] == {"0": pytest.approx(0.6), "1": pytest.approx(0.7), "2": pytest.approx(0.8)}
    assert row["units"]["unseen_dice"]["B/s2"] == pytest.approx(0.8)


def test_one_seed_has_no_spread():
    assert np.isnan(dg_stats.sample_std([0.7]))


def test_paired_interval_and_verdicts():
    ref = {f"u{i}": 0.5 for i in range(6)}
    # consistent +0.02 with small noise: the interval excludes 0
    clear = dg_stats.paired_difference({u: 0.52 + 0.001 * i for i, u in enumerate(ref)}, ref)
    assert clear["n"] == 6 and clear["ci_low"] > 0 and clear["verdict"] == "higher" and clear["better"] is True
    # differences of mean 0.01 and sd 0.03 (t ~ 0.8): inconclusive
    noisy = dg_stats.paired_difference({u: 0.5 + d for u, d in zip(ref, [0.05, -0.03, 0.02, -0.02, 0.04, 0.0])}, ref)
    assert noisy["ci_low"] < 0 < noisy["ci_high"] and noisy["verdict"] == "inconclusive" and noisy["better"] is None
    # the interval is mean ± t(0.975, n-1) * sd / sqrt(n)
    d = np.array([0.05, -0.03, 0.02, -0.02, 0.04, 0.0])
    assert noisy["ci_high"] - noisy["mean"] == pytest.approx(2.5706 * d.std(ddof=1) / np.sqrt(6), rel=1e-4)
    # HD95: lower is better
    hd = dg_stats.paired_difference({u: 9.0 - 0.01 * i for i, u in enumerate(ref)}, {u: 10.0 for u in ref}, True)
    assert hd["verdict"] == "lower" and hd["better"] is True


def test_comparison_pairs_by_source_and_seed_against_the_reference(monkeypatch):
    units = {("mms", "ref"): {0: _protocol({"A": 0.8, "B": 0.6}), 1: _protocol({"A": 0.7, "B": 0.5})},
             ("mms", "m"): {0: _protocol({"A": 0.81, "B": 0.61}), 1: _protocol({"A": 0.71, "B": 0.52})}}
    table = dg_table.summarise(units)
    cmp = dg_table.comparisons(table, reference="ref")["mms"]["m"]["unseen_dice"]
    # paired differences +0.01, +0.01, +0.01, +0.02 (unpaired, the seeds' spread would swamp them)
    assert cmp["n"] == 4 and cmp["mean"] == pytest.approx(0.0125) and cmp["ci_low"] > 0
    text = dg_table.markdown(table, {}, dg_table.provenance(), "x.png", reference="ref")
    assert "Paired comparison with **ref**" in text and "better than ref (95 % CI excludes 0)" in text


def test_readme_calls_a_difference_better_only_when_its_interval_excludes_zero():
    def dg(cmp):
        rows = {"ref": {"unseen_dice": 0.80}, "m": {"unseen_dice": 0.83}}
        return {"table": {"fundus": rows}, "reference": "ref", "comparisons": {"fundus": {"m": {"unseen_dice": cmp}}}}

    speed = {"batch": 4, "train": [{"size": 64, "model": "ERM", "step_s": 1.0}],
             "em_vs_attention": [{"side": 8, "block": "EM", "step_s": 1.0, "peak_mb": 1.0},
                                 {"side": 8, "block": "attention", "step_s": 2.0, "peak_mb": 2.0}]}
    wide = dg_stats.paired_difference({"a": 0.9, "b": 0.76, "c": 0.83}, {"a": 0.8, "b": 0.8, "c": 0.8})
    line = readme_results.headline(dg(wide), speed)[1]
    assert "inconclusive" in line and "better" not in line.split("(difference")[0]
    tight = dg_stats.paired_difference({"a": 0.83, "b": 0.831, "c": 0.829}, {"a": 0.8, "b": 0.8, "c": 0.8})
    assert "better)" in readme_results.headline(dg(tight), speed)[1]


def test_readme_makes_no_untested_claims():
    text = (ROOT / "README.md").read_text().lower()
    for word in ("beats", "support for", "(support"):
        assert word not in text


def test_target_is_checked_against_the_strongest_baseline_of_each_dataset():
    # two baselines: the target margin is measured from the stronger one, not from the reference
    units = {("mms", "ERM U-Net + colour aug"): {0: _protocol({"A": 0.70, "B": 0.70})},
             ("mms", "ERM U-Net + RandConv"): {0: _protocol({"A": 0.80, "B": 0.80})},
             ("mms", "VLSA"): {0: _protocol({"A": 0.82, "B": 0.83})}}
    check = dg_table.target_check(dg_table.summarise(units))["mms"]
    assert check["best_baseline"] == "ERM U-Net + RandConv"
    assert check["margin"] == pytest.approx(0.025) and check["met"] is False  # +0.095 over colour aug would pass
    assert check["paired"]["n"] == 2
    units[("mms", "VLSA")] = {0: _protocol({"A": 0.84, "B": 0.84})}
    assert dg_table.target_check(dg_table.summarise(units))["mms"]["met"] is True
