"""The rule that picks VLSA's default (benchmarks/select_vlsa.py) reads source validation only."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import select_vlsa  # noqa: E402


def _results(default_val: float, other_val: float, other_unseen: float) -> dict:
    default, other = list(select_vlsa.CANDIDATES)[:2]
    row = lambda val, unseen: {"A": {"source_val": val, "source_test": val, "unseen": unseen}}  # noqa: E731
    return {"mms": {default: row(default_val, 0.80), other: row(other_val, other_unseen)}}


def test_a_candidate_replaces_the_default_only_by_enough_source_validation_dice():
    default, other = list(select_vlsa.CANDIDATES)[:2]
    assert select_vlsa.choose(_results(0.950, 0.950 + select_vlsa.MIN_GAIN + 1e-6, 0.70)) == other
    # better on the unseen domains but not on source validation: never chosen
    assert select_vlsa.choose(_results(0.950, 0.951, 0.99)) == default


def _row(clean: float, shifted: float, unseen: float = 0.80) -> dict:
    return {"A": {"source_val": clean, "shifted": shifted, "source_test": clean, "unseen": unseen}}


def _shifted(default: tuple[float, float], other: tuple[float, float], other_unseen: float = 0.80) -> dict:
    """results with (clean source val, corrupted source val) per candidate, one dataset."""
    return {"mms": {list(select_vlsa.CANDIDATES)[0]: _row(*default), "RandConv views": _row(*other, other_unseen)}}


def test_rule_2_needs_corrupted_source_validation_gain_without_clean_loss():
    default, other = list(select_vlsa.CANDIDATES)[0], "RandConv views"
    gain = select_vlsa.SHIFT_GAIN
    assert select_vlsa.choose_shifted(_shifted((0.97, 0.80), (0.97, 0.80 + gain + 1e-6)), "mms") == other
    # not enough gain under corruption
    assert select_vlsa.choose_shifted(_shifted((0.97, 0.80), (0.97, 0.80 + gain / 2)), "mms") == default
    # robust but clearly worse on clean source validation
    tol = select_vlsa.CLEAN_TOLERANCE
    assert select_vlsa.choose_shifted(_shifted((0.97, 0.80), (0.97 - 2 * tol, 0.90)), "mms") == default
    # the unseen domains never decide
    assert select_vlsa.choose_shifted(_shifted((0.97, 0.80), (0.97, 0.80), other_unseen=0.99), "mms") == default
    # a dataset with no results keeps the default
    assert select_vlsa.choose_shifted({}, "fundus") == default


def test_stage_2_compares_a_stacked_candidate_with_its_base_not_the_default():
    default, gain = list(select_vlsa.CANDIDATES)[0], select_vlsa.SHIFT_GAIN
    stacked = next(n for n, base in select_vlsa.BUILDS_ON.items() if base == "RandConv views")
    results = {"mms": {default: _row(0.97, 0.80), "RandConv views": _row(0.97, 0.90)}}
    # well above the default but not above its base: the base stays
    results["mms"][stacked] = _row(0.97, 0.90 + gain / 2)
    assert select_vlsa.choose_shifted(results, "mms") == "RandConv views"
    results["mms"][stacked] = _row(0.97, 0.90 + gain + 1e-6)
    assert select_vlsa.choose_shifted(results, "mms") == stacked
    # compared on the same sources only: a candidate missing a source's run is not chosen yet
    two = lambda clean, shifted: {**_row(clean, shifted), "B": _row(clean, shifted)["A"]}  # noqa: E731
    both = {default: two(0.97, 0.80), "RandConv views": two(0.97, 0.90), stacked: _row(0.99, 0.99)}
    assert select_vlsa.choose_shifted({"mms": both}, "mms") == "RandConv views"
    # a stacked candidate is never chosen where its base was not
    results["mms"]["RandConv views"] = _row(0.97, 0.80)
    assert select_vlsa.choose_shifted(results, "mms") == default
    # nor by rule 1, which ranks the stage-1 candidates only
    results["mms"][stacked] = _row(0.99, 0.99)
    assert select_vlsa.choose(results) == default
