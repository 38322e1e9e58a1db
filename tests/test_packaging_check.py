"""The packaging gate (benchmarks/packaging_check.py) reads `vlsa evaluate`'s metrics.json of each
(variant, seed) run and refuses a candidate that is worse on whole photos."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import packaging_check  # noqa: E402


def _run(folder: Path, disc: float, errors: list[float], unseen: float = 0.8) -> Path:
    """A run folder holding the parts of metrics.json the gate reads."""
    cases = [{"name": f"p{i}", "vcdr": 0.5 + e, "experts_mean": 0.5} for i, e in enumerate(errors)]
    mae = sum(abs(e) for e in errors) / len(errors)
    metrics = {
        "domains": {"DrishtiGS1": {"role": "source", "n": 51, "dice": {"mean": 0.9}},
                    "dofe/Domain2": {"role": "target", "n": 2, "dice": {"mean": unseen}}},
        "whole_photo": {
            "domains": {"DrishtiGS1": {"dice": {"disc": disc, "cup": disc - 0.08}}},
            "vcdr": {"domains": {"DrishtiGS1": {"mae": mae, "r": 0.8, "inter_expert_mae": 0.063}},
                     "cases": {"DrishtiGS1": cases}},
            "locator_metrics": {"DrishtiGS1": {"inside_fraction": 1.0}}}}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def _units(tmp_path, candidate_disc, candidate_extra):
    ref, cand = {}, {}
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):
        base = [0.02, 0.05, 0.08, 0.03]
        ref[seed] = packaging_check.read_unit(_run(tmp_path / "ref" / f"s{seed}", 0.96 + jitter / 2, base))
        cand[seed] = packaging_check.read_unit(_run(tmp_path / "cand" / f"s{seed}", candidate_disc + jitter / 3,
                                                    [e + candidate_extra + jitter / 10 for e in base], unseen=0.82))
    return {packaging_check.REFERENCE: ref, "candidate": cand}


def test_a_candidate_worse_on_whole_photos_is_not_packaged(tmp_path):
    summary = packaging_check.summarise(_units(tmp_path, 0.93, 0.02), [0, 1, 2])
    row = summary["candidate"]
    assert abs(row["photo_vcdr_mae"]["mean"] - summary[packaging_check.REFERENCE]["photo_vcdr_mae"]["mean"] - 0.02) < 1e-3
    assert row["vs_reference"]["vcdr_abs_error_per_photo"]["n"] == 12  # 4 photos x 3 seeds, paired
    assert packaging_check.gate(row) == "not packaged: worse vCDR error and disc Dice on whole photos"
    text = packaging_check.report(summary, packaging_check.provenance(), 0.063, [("candidate", 3)])
    assert "not packaged" in text and "0.063, the human limit" in text
    assert '- candidate s3: `python benchmarks/packaging_check.py --variants "candidate" --seeds 3`' in text


def test_a_candidate_level_on_whole_photos_may_ship(tmp_path):
    summary = packaging_check.summarise(_units(tmp_path, 0.96, 0.0), [0, 1, 2])
    assert packaging_check.gate(summary["candidate"]) == "may ship: not worse on whole photos"
