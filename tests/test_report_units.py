"""HD95/ASD units in the reports when domains differ (a new user's cardiac trial: report.html said
"HD95 (mm)" over ACDC's h5 copy, which has no spacing and is scored in voxels)."""

import json

from vlsa.report.html import write_report
from vlsa.report.tables import distance_units, metrics_markdown


def _domain(role: str, units: str, hd95: float) -> dict:
    scores = {"lv": 0.9, "mean": 0.9}
    return {"role": role, "n": 12, "units": units, "dice": scores, "hd95": {"lv": hd95, "mean": hd95},
            "asd": {"lv": hd95 / 3, "mean": hd95 / 3}}


def _metrics() -> dict:
    return {"dataset": "acdc", "source": ["ACDC"], "units": "mm", "unit_of_evaluation": "volume", "split": "test",
            "domains": {"ACDC": _domain("source", "px", 1.81), "sunnybrook/Sunnybrook": _domain("target", "mm", 3.56)}}


def test_a_domain_in_other_units_is_named_in_the_headings_and_a_note(tmp_path):
    metrics = _metrics()
    assert distance_units(metrics) == ("mm; px for ACDC",
                                       "HD95/ASD of ACDC are in px, not mm (voxel spacing unknown there).")
    md = metrics_markdown(metrics)
    assert "## HD95, mm; px for ACDC (lower is better)" in md and "## ASD, mm; px for ACDC" in md
    assert "- HD95/ASD of ACDC are in px, not mm (voxel spacing unknown there)." in md
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    page = write_report(tmp_path).read_text()
    assert "<h2>HD95 (mm; px for ACDC)</h2>" in page and "<h2>ASD (mm; px for ACDC)</h2>" in page
    assert "HD95/ASD of ACDC are in px, not mm" in page


def test_one_unit_everywhere_needs_no_note():
    metrics = _metrics()
    metrics["domains"]["ACDC"]["units"] = "mm"
    assert distance_units(metrics) == ("mm", None)
    assert "## HD95, mm (lower is better)" in metrics_markdown(metrics)
