"""Issue 25 row 2: the overlays of `vlsa evaluate --report` show exactly the map that was scored
(post-processed when post-processing applied), the map `vlsa predict` writes for the same image."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from tests.conftest import tiny_overrides
from vlsa.config import build_config
from vlsa.engine.train import train


def two_blob_logits(model, images, batch_size, device, progress=None, tta="off"):
    """N x 3 x S x S logits of a disc with a cup on the left and a second, smaller disc blob at the
    right edge: the blob anatomical post-processing removes (largest component)."""
    n, s = len(images), images.shape[-1]
    logits = torch.zeros(n, 3, s, s)
    logits[:, 0] = 1.0
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    disc = (yy - s // 2) ** 2 + (xx - s // 3) ** 2 <= (s // 5) ** 2
    cup = (yy - s // 2) ** 2 + (xx - s // 3) ** 2 <= (s // 10) ** 2
    blob = (yy - s // 2) ** 2 + (xx - s + 5) ** 2 <= 9
    logits[:, 1][:, disc | blob] = 5.0
    logits[:, 2][:, cup] = 9.0
    return logits


@pytest.fixture()
def run_with_postprocessing(fundus_root, tmp_path):
    run = tmp_path / "run"
    train(build_config({}, tiny_overrides(fundus_root, steps=2) + ["eval.postprocess=on"]), run, quiet=True)
    return run


def test_overlays_show_the_post_processed_map_that_was_scored_and_predicted(run_with_postprocessing, fundus_root,
                                                                             tmp_path, monkeypatch):
    import vlsa.engine.evaluate as ev
    import vlsa.engine.inference as inference
    import vlsa.engine.predict as predict
    from vlsa.cli import main

    monkeypatch.setattr(inference, "model_logits", two_blob_logits)
    monkeypatch.setattr(predict, "model_logits", two_blob_logits)
    shown = {}
    real_panel = ev.case_panel

    def recording_panel(rgb, truth, pred, spec, caption):
        shown[caption.split()[0]] = (pred.copy(), float(re.search(r"Dice ([0-9.]+)", caption).group(1)))
        return real_panel(rgb, truth, pred, spec, caption)

    monkeypatch.setattr(ev, "case_panel", recording_panel)
    run = run_with_postprocessing
    assert main(["evaluate", "--run", str(run), "--domains", "Domain2", "--report"]) == 0
    assert shown and (run / "report_Domain2.html").is_file()
    images = fundus_root / "Domain2" / "test" / "ROIs" / "image"
    assert main(["predict", "--run", str(run), "--input", str(images), "--output", str(tmp_path / "pred")]) == 0
    metrics = json.loads((run / "metrics_Domain2.json").read_text())
    assert metrics["postprocess"]["applied"] is True
    raw = two_blob_logits(None, torch.zeros(1, 3, 32, 32), 1, "cpu")[0]
    assert ndimage.label(raw.argmax(0).numpy() >= 1)[1] == 2  # the raw prediction has two disc blobs
    for name, (pred, dice) in shown.items():
        written = np.asarray(Image.open(tmp_path / "pred" / f"{name}.png"))
        assert np.array_equal(pred, written), name  # the overlay is the map predict writes ...
        assert ndimage.label(pred >= 1)[1] == 1, name  # ... post-processed: the second blob is gone
        assert 0.0 <= dice <= 1.0
