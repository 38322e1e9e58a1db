"""Cardiac (and any volumetric) metrics are scored against the original annotation, on its own
grid and spacing, per 3D volume — not against the label resampled to `data.spacing`."""

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlsa.data.mms import MMSReader
from vlsa.data.spec import CARDIAC
from vlsa.engine.data import Prepared
from vlsa.engine.geometry import geometry_for, to_model, to_original
from vlsa.engine.inference import score
from vlsa.metrics import case_metrics

SPACING = 1.67  # mm, configs/mms_sdg.yaml; the synthetic vendors are at 1.10-1.45 mm
SIZE = 96


def _perfect_on_resampled_grid(samples):
    """Predictions that are exactly the resampled label on the model grid, mapped back the way
    evaluation maps a model's logits (`to_original`)."""
    preds = []
    for s in samples:
        geom = geometry_for(True, s.label.shape, SIZE)
        _, lab = to_model(s.image, s.label, geom)
        logits = F.one_hot(lab, CARDIAC.num_classes).permute(2, 0, 1).float() * 10
        preds.append(to_original(logits, geom, s.original_shape).argmax(0).numpy())
    return preds


def _prepared(samples):
    return Prepared(torch.zeros(len(samples)), torch.zeros(len(samples)), samples, [])


def _annotation_volume(reader, volume_id):
    """The ED/ES frame of the ground-truth file, read straight from disk: z x X x Y and zooms."""
    code, phase = volume_id.rsplit("_", 1)
    case = next(c for c in reader.cases if c.code == code)
    nii = nib.load(str(case.label))
    frame = case.ed if phase == "ED" else case.es
    gt = np.rint(np.asarray(nii.dataobj)[..., frame]).astype(np.int64)
    return np.moveaxis(gt, 2, 0), nii.header.get_zooms()


@pytest.mark.parametrize("vendor", ["A", "B", "C", "D"])
def test_scores_against_the_original_annotation_in_mm(cardiac_root, vendor):
    reader = MMSReader(cardiac_root, spacing=SPACING)
    samples = list(reader.samples(vendor, "test"))
    assert samples[0].label.shape != samples[0].original_label.shape  # really resampled
    preds = _perfect_on_resampled_grid(samples)
    acc = score(_prepared(samples), preds, CARDIAC)
    # independent expectation: the mapped-back prediction against the gt file, per volume, in mm
    by_volume = {}
    for s, p in zip(samples, preds):
        by_volume.setdefault(s.volume_id, []).append((s.slice_index, p))
    for volume_id, result in zip(acc.case_ids, acc.cases):
        truth, zooms = _annotation_volume(reader, volume_id)
        pred = np.stack([p for _, p in sorted(by_volume[volume_id], key=lambda t: t[0])])
        expected = case_metrics(pred, truth, CARDIAC.regions, (zooms[2], zooms[0], zooms[1]))
        for m in ("dice", "hd95"):
            for region in CARDIAC.regions:
                assert result[m][region] == pytest.approx(expected[m][region], abs=1e-6)
    agg = acc.aggregate()
    # the resampling round trip loses detail: a prediction perfect on the 1.67 mm grid is not
    # perfect against the annotation (the old path scored it 1.0 on every vendor)
    assert 0.85 < agg["dice"]["myo"] < 0.999
    assert agg["hd95"]["myo"] > 0


def test_a_prediction_equal_to_the_annotation_scores_one(cardiac_root):
    reader = MMSReader(cardiac_root, spacing=SPACING)
    samples = list(reader.samples("C", "test"))
    agg = score(_prepared(samples), [s.original_label for s in samples], CARDIAC).aggregate()
    assert agg["dice"] == {"lv": 1.0, "myo": 1.0, "rv": 1.0, "mean": 1.0}
    assert agg["hd95"]["mean"] == 0.0


def test_without_resampling_the_label_is_the_annotation(cardiac_root):
    samples = list(MMSReader(cardiac_root, spacing=None).samples("A", "test"))
    assert all(s.original_label is None for s in samples)
    agg = score(_prepared(samples), [s.label for s in samples], CARDIAC).aggregate()
    assert agg["dice"]["mean"] == 1.0


def test_train_and_evaluate_with_resampling_score_on_the_original_grid(cardiac_root, tmp_path):
    from tests.conftest import tiny_overrides
    from vlsa.config import build_config
    from vlsa.engine.evaluate import evaluate_run
    from vlsa.engine.inference import SCORING_VERSION
    from vlsa.engine.train import train

    overrides = tiny_overrides(cardiac_root, dataset="mms", source="A", steps=2) + [f"data.spacing={SPACING}"]
    run = train(build_config({}, overrides), tmp_path / "run", quiet=True)
    metrics = evaluate_run(run, domains=["A", "C"], quiet=True)
    assert metrics["scoring"] == SCORING_VERSION and metrics["units"] == "mm"
    assert all(0.0 <= metrics["domains"][d]["dice"]["mean"] <= 1.0 for d in ("A", "C"))
    assert list((run / "overlays_A+C").glob("*.png")) or list((run / "overlays").glob("*.png"))


def test_nnunet_predictions_on_the_resampled_grid_are_scored_on_the_original(cardiac_root, tmp_path):
    from vlsa.baselines.nnunet_row import load_predictions

    samples = list(MMSReader(cardiac_root, spacing=SPACING).samples("B", "test"))
    volume_id = samples[0].volume_id
    samples = [s for s in samples if s.volume_id == volume_id]
    # nnU-Net was given the resampled slices: its (here perfect) prediction is on that grid
    stacked = np.stack([s.label for s in sorted(samples, key=lambda s: s.slice_index)], axis=-1).astype(np.uint8)
    nib.save(nib.Nifti1Image(stacked, np.eye(4)), str(tmp_path / f"{volume_id}.nii.gz"))
    preds = load_predictions(samples, tmp_path, True, CARDIAC.num_classes)
    assert all(p.shape == s.original_label.shape for p, s in zip(preds, samples))
    agg = score(_prepared(samples), preds, CARDIAC).aggregate()
    assert 0.85 < agg["dice"]["mean"] < 1.0  # the same round trip as every other row, not a shape error
