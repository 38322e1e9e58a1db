"""benchmarks/tta_real.py: mirroring is chosen by rule 2 on source validation only, and the unseen
difference is paired per (seed, case)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import tta_real  # noqa: E402


def _arm(clean, corrupted, unseen, cases):
    return {"clean": clean, "corrupted": corrupted, "source_test": 0.9, "unseen": unseen,
            "paired": {f"dofe/Domain2/{i}": v for i, v in enumerate(cases)}}


def _by_arm(flip_corrupted, flip_unseen_cases):
    return {"off": {f"s{s}": _arm(0.93, 0.80, 0.80, [0.8, 0.7, 0.9]) for s in range(3)},
            "flip": {f"s{s}": _arm(0.93, flip_corrupted, 0.85, flip_unseen_cases) for s in range(3)}}


def test_flip_is_chosen_only_when_corrupted_source_validation_gains_enough():
    assert tta_real.choice(_by_arm(0.80 + tta_real.SHIFT_GAIN + 0.001, [0.8, 0.7, 0.9])) == "flip"
    assert tta_real.choice(_by_arm(0.80 + tta_real.SHIFT_GAIN / 2, [0.8, 0.7, 0.9])) == "off"


def test_unseen_gain_is_paired_per_seed_and_case_and_never_decides():
    s = tta_real.summary(_by_arm(0.80, [0.9, 0.8, 1.0]))  # +0.1 on every unseen case, no source gain
    assert s["paired_unseen"]["n"] == 9
    assert abs(s["paired_unseen"]["mean"] - 0.1) < 1e-9
    assert s["chosen"] == "off"
