"""The zoom-augmentation choice of benchmarks/scale_invariance.py: select_vlsa's rule 2 with the ROI
scale shift as the corruption, on hand-made source-validation tables."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import scale_invariance  # noqa: E402
from select_vlsa import CLEAN_TOLERANCE, SHIFT_GAIN  # noqa: E402


def _row(canonical: float, off: float) -> dict:
    return {str(s): {"n": 10, "mean": canonical if s == 2.5 else off, "disc": 0.9, "cup": 0.8}
            for s in scale_invariance.SCALES}


def test_the_augmented_policy_wins_only_with_an_off_canonical_gain_and_no_canonical_loss():
    base = _row(0.90, 0.70)
    passes = {"base": base, "aug": _row(0.90 - CLEAN_TOLERANCE / 2, 0.70 + SHIFT_GAIN + 1e-6)}
    assert "-> **aug**" in scale_invariance.decision(passes)
    too_small = {"base": base, "aug": _row(0.95, 0.70 + SHIFT_GAIN / 2)}
    assert "-> **base**" in scale_invariance.decision(too_small)
    loses_canonical = {"base": base, "aug": _row(0.90 - 2 * CLEAN_TOLERANCE, 0.99)}
    assert "-> **base**" in scale_invariance.decision(loses_canonical)
