"""vCDR evaluation against the experts (with the inter-expert reference beside it) and the
whole-photo evaluation through the locator, on a tiny run trained on synthetic whole photos."""

import json
import re

import numpy as np
import pytest

from vlsa.cli import main
from vlsa.clinical import agreement, inter_expert_reference
from vlsa.data.spec import FUNDUS
from vlsa.engine.fundus_eval import vcdr_of, vcdr_summary
from vlsa.engine.locator import locator_dir


def test_vcdr_summary_is_the_agreement_with_the_experts_mean_and_the_inter_expert_mae():
    rng = np.random.default_rng(0)
    experts = rng.uniform(0.3, 0.8, (20, 4))
    pred = experts.mean(1) + rng.normal(0, 0.05, 20)
    cases = [{"name": str(i), "vcdr": float(p), "experts": list(e)} for i, (p, e) in enumerate(zip(pred, experts))]
    s = vcdr_summary(cases)
    expected = agreement(pred, experts.mean(1))
    assert s["mae"] == pytest.approx(expected["mae"]) and s["r"] == pytest.approx(expected["r"])
    assert s["inter_expert_mae"] == pytest.approx(inter_expert_reference(experts)["mae"]) and s["experts"] == 4


def test_vcdr_is_measured_on_the_post_processed_map():
    labels = np.zeros((40, 40), np.uint8)
    labels[10:30, 10:30] = 1
    labels[15:25, 15:25] = 2  # vCDR 10 / 20
    labels[0:2, 0:2] = 2  # a stray cup blob outside the disc: it would make the ratio 30 / 32
    assert vcdr_of(labels, FUNDUS) == pytest.approx(0.5)


def test_evaluate_adds_vcdr_the_whole_photo_path_and_the_locator_metric(photo_run, capsys):
    assert main(["evaluate", "--run", str(photo_run), "--report"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    # a bar with its total (its first frame, "0%| | 0/6", always drawn; without one it read "0photo")
    assert re.search(r"whole photos DrishtiGS1: +\d+%\|[^|]*\| \d/6 \[", captured.err)
    metrics = json.loads((photo_run / "metrics.json").read_text())
    roi_vcdr = metrics["vcdr"]["domains"]["DrishtiGS1"]
    assert roi_vcdr["n"] == 6 and 0 <= roi_vcdr["mae"] <= 1
    # the synthetic experts read the drawn ratio -0.03, -0.01, +0.01, +0.03: each vs the other three's mean
    assert roi_vcdr["inter_expert_mae"] == pytest.approx((0.04 + 0.04 / 3) * 2 / 4, abs=1e-3)
    whole = metrics["whole_photo"]
    dice = whole["domains"]["DrishtiGS1"]["dice"]
    assert whole["domains"]["DrishtiGS1"]["n"] == 6 and 0 <= dice["disc"] <= 1 and 0 <= dice["cup"] <= 1
    located = json.loads((locator_dir(photo_run) / "metrics.json").read_text())["domains"]["DrishtiGS1"]
    assert located == whole["locator_metrics"]["DrishtiGS1"]
    assert located["n"] == 6 and located["found"] == 6 and located["inside"] == 6
    assert located["centre_error_diameters"]["max"] < 0.25
    assert (photo_run / metrics["vcdr_plot"]).is_file() and metrics["vcdr_plot"] == "vcdr.png"
    assert "inter-expert (each expert vs the mean of the other 3) MAE 0.027" in printed
    assert "disc found 6/6, inside the ROI 6/6" in printed
    report = (photo_run / "report.html").read_text()
    assert "Vertical cup-to-disc ratio" in report and "Whole photographs" in report and 'src="vcdr.png"' in report
    # metrics.md carries the same numbers (a new user looked for vCDR there and found only Dice)
    md = (photo_run / "metrics.md").read_text()
    assert "## Vertical cup-to-disc ratio" in md and "![Bland-Altman plot of vCDR](vcdr.png)" in md
    assert f"| ROI | DrishtiGS1 | 6 | {roi_vcdr['mae']:.3f} |" in md
    assert f"| whole photo | DrishtiGS1 | 6 | {whole['vcdr']['domains']['DrishtiGS1']['mae']:.3f} |" in md
    assert "## Whole photographs" in md and f"| {dice['disc']:.3f} | {dice['cup']:.3f} |" in md
    assert "### Disc locator" in md and "| DrishtiGS1 | 6 | 6 | 6 |" in md


def test_evaluating_the_locator_run_itself_is_refused_with_the_way_to_do_it(photo_run, capsys):
    assert main(["evaluate", "--run", str(locator_dir(photo_run))]) == 2
    err = capsys.readouterr().err
    assert "is a disc locator run; evaluate the segmentation run it belongs to" in err and str(photo_run) in err
