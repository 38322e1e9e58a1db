"""Test-time mirroring (eval.tta flip): the mean of the two views' probabilities, selectable per
run or per command, never writing over the run's own metrics."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import train_tiny_run
from vlsa.cli import main
from vlsa.config import Config, build_config, digest_tree
from vlsa.engine.evaluate import evaluate_run
from vlsa.engine.inference import model_logits
from vlsa.errors import VlsaError


def _asymmetric_model():
    torch.manual_seed(0)
    return torch.nn.Conv2d(3, 3, kernel_size=3, padding=1)  # a 3x3 kernel is not mirror-symmetric


def test_flip_is_the_mean_of_the_two_views_probabilities():
    model, x = _asymmetric_model(), torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        expected = (model(x).softmax(1) + model(x.flip(-1)).flip(-1).softmax(1)) / 2
    out = model_logits(model, x, batch_size=1, device="cpu", tta="flip")
    assert out.shape == (2, 3, 8, 8)
    assert torch.allclose(out.softmax(1), expected, atol=1e-6)
    # and it is not the single view: the kernel is asymmetric
    assert not torch.allclose(model_logits(model, x, 1, "cpu").softmax(1), expected, atol=1e-3)


def test_flip_changes_nothing_for_a_mirror_equivariant_model():
    torch.manual_seed(1)
    pointwise = torch.nn.Conv2d(3, 2, kernel_size=1)
    x = torch.rand(3, 3, 6, 6)
    off, flip = model_logits(pointwise, x, 2, "cpu"), model_logits(pointwise, x, 2, "cpu", tta="flip")
    assert torch.allclose(off.softmax(1), flip.softmax(1), atol=1e-6)


def test_unknown_tta_is_refused():
    with pytest.raises(ValueError, match="eval.tta 'rot90'"):
        model_logits(_asymmetric_model(), torch.rand(1, 3, 4, 4), 1, "cpu", tta="rot90")


def test_off_keeps_every_earlier_config_digest_and_flip_changes_it():
    base = Config()
    assert base.eval.tta == "off"
    assert "tta" not in digest_tree(base.to_dict())["eval"]
    flipped = build_config({}, ["eval.tta=flip"])
    assert flipped.digest() != base.digest()


def test_the_cli_offers_the_modes_the_config_accepts():
    from vlsa.cli import TTA_CHOICES
    from vlsa.config import TTA_MODES

    assert TTA_CHOICES == TTA_MODES


@pytest.fixture(scope="module")
def run(fundus_root, tmp_path_factory):
    return train_tiny_run(fundus_root, tmp_path_factory, "tta")


def test_evaluate_with_another_tta_writes_beside_the_runs_metrics(run):
    own = evaluate_run(run, quiet=True)
    before = (run / "metrics.json").read_text()
    flip = evaluate_run(run, quiet=True, tta="flip")
    assert own["tta"] == "off" and flip["tta"] == "flip" and flip["file"] == "metrics_tta-flip.json"
    assert (run / "metrics.json").read_text() == before  # the run's own results untouched
    on_disk = json.loads((run / "metrics_tta-flip.json").read_text())
    assert on_disk["domains"].keys() == own["domains"].keys()
    assert on_disk["postprocess"]["applied"] == own["postprocess"]["applied"]  # the run's decision, kept
    # the run's own setting asked for explicitly is the run's full evaluation
    assert evaluate_run(run, quiet=True, tta="off")["file"] == "metrics.json"
    with pytest.raises(VlsaError, match="--tta 'both'"):
        evaluate_run(run, quiet=True, tta="both")


def test_cli_evaluate_and_predict_take_tta(run, tmp_path):
    assert main(["evaluate", "--run", str(run), "--tta", "flip"]) == 0
    assert (run / "metrics_tta-flip.md").is_file()
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 52, 3), dtype=np.uint8)).save(inputs / "eye.png")
    assert main(["predict", "--run", str(run), "--input", str(inputs), "--output", str(tmp_path / "out"),
                 "--tta", "flip"]) == 0
    assert np.asarray(Image.open(tmp_path / "out" / "eye.png")).shape == (40, 52)
    with pytest.raises(SystemExit) as bad:
        main(["predict", "--run", str(run), "--input", str(inputs), "--output", str(tmp_path / "o2"), "--tta", "x"])
    assert bad.value.code == 2
