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
