"""The post-processing decision is made at the end of training, recorded with the checkpoint it
was made for, made again when the checkpoint changes, and used by prediction without the training
data (issue 30, rows 1 and 4)."""

import json
import shutil

import numpy as np
import pytest

from tests.conftest import tiny_overrides
from vlsa.config import build_config
from vlsa.engine.checkpoint import load_checkpoint
from vlsa.engine.postprocessing import FILE, decide
from vlsa.engine.train import train
from vlsa.errors import VlsaError


def _fresh_decision(run, tmp_path):
    """What deciding from scratch on the run as it is now gives (in a copy, without its record)."""
    from vlsa.engine.evaluate import load_run

    copy = tmp_path / "fresh"
    shutil.copytree(run, copy)
    (copy / FILE).unlink()
    config, spec, model = load_run(copy)
    return decide(copy, config, spec, model, "cpu")


def test_training_writes_the_decision_and_continuing_training_makes_it_again(fundus_root, tmp_path):
    from vlsa.engine.evaluate import evaluate_run

    cfg = build_config({}, tiny_overrides(fundus_root, steps=12))
    run = tmp_path / "run"
    train(cfg, run, stop_at=3, quiet=True)
    evaluate_run(run, domains=["Domain1"], quiet=True)  # decides for the step-3 checkpoint
    early = json.loads((run / FILE).read_text())
    train(None, run, resume=True, quiet=True)
    saved = json.loads((run / FILE).read_text())  # written when training ended
    fresh = _fresh_decision(run, tmp_path)
    assert (saved["val_dice_on"], saved["val_dice_off"]) == pytest.approx((fresh["val_dice_on"], fresh["val_dice_off"]))
    assert saved["val_dice_on"] != early["val_dice_on"]
    best = load_checkpoint(run / "checkpoints" / "best.pt")["step"]
    assert early["checkpoint"]["step"] == 3 and early["finished"] is False
    assert saved["finished"] is True and saved["checkpoint"]["step"] == best


def _images(root, n=3):
    return sorted((root / "Domain2" / "test" / "ROIs" / "image").glob("*.png"))[:n]


def test_a_copied_run_without_its_data_predicts_the_maps_that_were_scored(fundus_root, tmp_path):
    from vlsa.data.io import load_mask
    from vlsa.engine.predict import predict_paths

    data = tmp_path / "data"
    shutil.copytree(fundus_root, data)
    # seed 1: a model for which post-processing helps on source validation, so the choice shows
    run = train(build_config({}, tiny_overrides(data, steps=6) + ["seed=1"]), tmp_path / "run", quiet=True)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for image in _images(data):
        shutil.copy(image, inputs / image.name)
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, moved)  # as training left it
    here = predict_paths(run, [str(inputs)], tmp_path / "here", quiet=True)
    shutil.move(str(data), str(tmp_path / "data-gone"))
    there = predict_paths(moved, [str(inputs)], tmp_path / "there", quiet=True)
    for a, b in zip(here, there):
        assert np.array_equal(load_mask(a), load_mask(b)), b.name
    decision = json.loads((moved / FILE).read_text())  # made at the end of training
    assert decision["mode"] == "auto" and decision["applied"] and decision["checkpoint"]["step"] == 6
    # and it is the recorded decision that was applied: without post-processing the maps differ
    other = predict_paths(moved, [str(inputs)], tmp_path / "other", quiet=True, postprocess="off")
    assert any(not np.array_equal(load_mask(a), load_mask(b)) for a, b in zip(there, other))


def test_prediction_refuses_without_a_recorded_decision_or_the_data_to_make_one(fundus_root, tmp_path):
    from vlsa.engine.predict import predict_paths

    data = tmp_path / "data"
    shutil.copytree(fundus_root, data)
    run = train(build_config({}, tiny_overrides(data, steps=3)), tmp_path / "run", quiet=True)
    (run / FILE).unlink()  # as in a run made before decisions were recorded
    shutil.rmtree(data)
    image = _images(fundus_root, 1)
    with pytest.raises(VlsaError, match=r"postprocess\.json: no post-processing decision .*--postprocess on\|off"):
        predict_paths(run, [str(image[0])], tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()
    assert len(predict_paths(run, [str(image[0])], tmp_path / "out", quiet=True, postprocess="off")) == 1
