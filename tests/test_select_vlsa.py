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


def _shifted(default: tuple[float, float], other: tuple[float, float], other_unseen: float = 0.80) -> dict:
    """results with (clean source val, corrupted source val) per candidate, one dataset."""
    names = list(select_vlsa.CANDIDATES)
    row = lambda clean, shifted, unseen: {"A": {"source_val": clean, "shifted": shifted, "source_test": clean,  # noqa: E731
                                                "unseen": unseen}}
    return {"mms": {names[0]: row(*default, 0.80), names[-1]: row(*other, other_unseen)}}


def test_rule_2_needs_corrupted_source_validation_gain_without_clean_loss():
    default, other = list(select_vlsa.CANDIDATES)[0], list(select_vlsa.CANDIDATES)[-1]
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
