"""`vlsa predict` on a DICOM cine series, with an oracle model (its logits are the image's grey
levels, so the prediction is the drawn label map): the NIfTI of each phase lies on the DICOM
geometry (oblique, files out of order, rescaled), the SEG reads back as the same masks on the same
source images, and the clinical indices are those of the drawn shapes, ED/ES by LV volume."""

import csv
import json
import logging
import math

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from tests.data.cine_series import COL, ROW, cine_labels, write_cine
from vlsa.config import build_config
from vlsa.data.dicom_seg import read_seg
from vlsa.data.spec import CARDIAC, FUNDUS
from vlsa.engine.predict import Predictor
from vlsa.engine.predict_dicom import is_dicom_input, predict_dicom
from vlsa.errors import DataError

LEVEL = torch.tensor([0.0, 1.0, 0.5, 0.75])  # LEVELS of cine_series after the per-plane min-max


class GreyLevelOracle(torch.nn.Module):
    """B x 1 x S x S image in [0, 1] -> B x 4 x S x S logits peaking at each label's grey level."""

    def forward(self, x):
        return -200.0 * (x - LEVEL.view(1, 4, 1, 1)) ** 2


def _predictor(spacing=None, spec=CARDIAC):
    p = Predictor.__new__(Predictor)
    overrides = ["data.dataset=mms", "data.image_size=64", "data.normalise=none", "model.name=unet"]
    p.config = build_config({}, overrides + ([f"data.spacing={spacing}"] if spacing else []))
    p.spec, p.model, p.device = spec, GreyLevelOracle().eval(), torch.device("cpu")
    return p


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_cine_series_to_nifti_seg_and_ejection_fraction(tmp_path):
    radii = [5, 7, 3]  # ED is the second phase, ES the third
    labels = cine_labels(radii)  # P x Z x H x W
    written = write_cine(tmp_path / "study" / "cine", labels)
    out = tmp_path / "out"
    files = predict_dicom(_predictor(), [tmp_path / "study" / "cine"], out, fmt="dicom-seg", quiet=True)
    assert sorted(f.name for f in files) == sorted([f"cine_phase0{p}.nii.gz" for p in (1, 2, 3)]
                                                  + [f"cine_phase0{p}.seg.dcm" for p in (1, 2, 3)])
    ras = np.diag([-1.0, -1.0, 1.0])  # DICOM LPS -> NIfTI RAS
    for p in range(3):
        img = nib.load(str(out / f"cine_phase0{p + 1}.nii.gz"))
        data = np.asarray(img.dataobj)
        assert data.dtype == np.uint8 and data.shape == (40, 32, 4)  # columns x rows x slices
        assert np.array_equal(data, labels[p].transpose(2, 1, 0))
        assert img.header.get_qform(coded=True)[1] == 1 and img.header.get_sform(coded=True)[1] == 1
        by_slice = sorted((w for w in written if w["phase"] == p), key=lambda w: w["slice"])
        for c, r in ((0, 0), (39, 31), (7, 20)):
            for w in by_slice:  # voxel (column, row, slice) -> the patient position the header gives
                expected = ras @ (w["position"] + c * 1.25 * ROW + r * 1.5 * COL)
                assert np.allclose(img.affine @ [c, r, w["slice"], 1.0], [*expected, 1.0], atol=1e-4)
        uids = [pydicom.dcmread(w["path"], stop_before_pixels=True).SOPInstanceUID for w in by_slice]
        seg, _ = read_seg(out / f"cine_phase0{p + 1}.seg.dcm", uids)
        assert np.array_equal(seg, labels[p])
    (row,) = _rows(out / "clinical.csv")
    voxel_ml = 8.0 * 1.5 * 1.25 / 1000
    edv, esv = (labels[1] == 1).sum() * voxel_ml, (labels[2] == 1).sum() * voxel_ml
    assert row["subject"] == "cine" and row["domain"] == "TestVendor"
    assert float(row["lv_edv_pred"]) == pytest.approx(edv, abs=1e-4)
    assert float(row["lv_esv_pred"]) == pytest.approx(esv, abs=1e-4)
    assert float(row["lv_ef_pred"]) == pytest.approx(100 * (edv - esv) / edv, abs=1e-3)
    assert float(row["lv_mass_pred"]) == pytest.approx((labels[1] == 2).sum() * voxel_ml * 1.05, abs=1e-4)
    assert float(row["rv_edv_pred"]) == pytest.approx((labels[1] == 3).sum() * voxel_ml, abs=1e-4)
    assert row["lv_edv_true"] == "" and row["lv_ef_true"] == ""  # no reference in a bare study
    # a cylinder of radius 7 px x 4 slices: pi r^2 h within the pixelisation error
    assert edv == pytest.approx(math.pi * 7 ** 2 * 4 * voxel_ml, rel=0.05)
    phases = json.loads((out / "clinical.json").read_text())["subjects"][0]["phases"]
    assert (phases["ed_phase"], phases["es_phase"]) == (2, 3)
    assert phases["ed_trigger_ms"] == pytest.approx(431.5)  # median over slices of 430..433 ms


def test_resampled_to_the_model_spacing_and_back_onto_the_dicom_grid(tmp_path):
    labels = cine_labels([7, 5])
    write_cine(tmp_path / "cine", labels)
    predict_dicom(_predictor(spacing=1.0), [tmp_path / "cine"], tmp_path / "out", quiet=True)
    for p in range(2):
        data = np.asarray(nib.load(str(tmp_path / "out" / f"cine_phase0{p + 1}.nii.gz")).dataobj).transpose(2, 1, 0)
        # bilinear resampling blends grey levels at edges (the oracle reads a blend of RV and
        # background as MYO), so the check is on the LV and the heart as a whole
        for a, b in ((data == 1, labels[p] == 1), (data > 0, labels[p] > 0)):
            assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9, p
    (row,) = _rows(tmp_path / "out" / "clinical.csv")
    truth = (labels[0] == 1).sum() * 8.0 * 1.5 * 1.25 / 1000
    assert float(row["lv_edv_pred"]) == pytest.approx(truth, rel=0.08)


def test_a_single_phase_has_no_ed_es_and_says_so(tmp_path, caplog):
    labels = cine_labels([5])
    write_cine(tmp_path / "one", labels)
    with caplog.at_level(logging.WARNING):
        files = predict_dicom(_predictor(), [tmp_path / "one"], tmp_path / "out", quiet=True)
    assert [f.name for f in files] == ["one.nii.gz"]
    (row,) = _rows(tmp_path / "out" / "clinical.csv")
    assert all(row[k] == "" for k in row if k not in ("subject", "domain"))
    assert "one phase: ED and ES need a cine series" in caplog.text


def test_dicom_inputs_are_recognised_by_their_header_not_their_name(tmp_path):
    written = write_cine(tmp_path / "cine", cine_labels([4], slices=2))
    renamed = written[0]["path"].rename(tmp_path / "IMG0001")  # scanners often write no suffix
    (tmp_path / "notes.txt").write_text("not DICOM")
    assert is_dicom_input(renamed) and is_dicom_input(tmp_path / "cine")
    assert not is_dicom_input(tmp_path / "notes.txt") and not is_dicom_input(tmp_path / "absent")


def test_a_photograph_model_refuses_a_dicom_series_in_one_line(tmp_path):
    write_cine(tmp_path / "cine", cine_labels([4], slices=2))
    with pytest.raises(DataError, match="segments RGB photographs, not DICOM") as err:
        predict_dicom(_predictor(spec=FUNDUS), [tmp_path / "cine"], tmp_path / "out", quiet=True)
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_a_4d_nifti_cine_gets_ed_es_by_lv_volume(tmp_path):
    from vlsa.engine.predict_dicom import nifti_cine_indices

    labels = cine_labels([4, 6, 5])  # t x z x y x x -> written as x, y, z, t
    image = np.asarray([0.0, 1000.0, 500.0, 750.0], np.float32)[labels].transpose(3, 2, 1, 0)
    path = tmp_path / "cine.nii.gz"
    nib.save(nib.Nifti1Image(image, np.diag([1.25, 1.5, 8.0, 1.0])), str(path))
    predicted, _, _ = _predictor().predict_volume(path)
    s = nifti_cine_indices("cine", predicted, (1.25, 1.5, 8.0, 1.0))
    voxel_ml = 1.25 * 1.5 * 8.0 / 1000
    assert (s.phases["ed_phase"], s.phases["es_phase"]) == (2, 1)
    assert s.pred["lv_edv"] == pytest.approx((labels[1] == 1).sum() * voxel_ml)
    assert s.pred["lv_esv"] == pytest.approx((labels[0] == 1).sum() * voxel_ml)


def test_cine_slice_ring_is_applied_before_ed_es_are_chosen():
    from vlsa.engine.predict_dicom import cine_indices

    rows, cols = np.ogrid[:32, :32]
    r2 = (rows - 16) ** 2 + (cols - 16) ** 2

    def phase(radius, open_base):
        vol = np.zeros((4, 32, 32), np.int64)
        for z in range(4):
            vol[z][r2 <= (radius + 3) ** 2] = 2
            vol[z][r2 <= radius ** 2] = 1
        if open_base:  # slice 0: blood pool above the base, no myocardium around it
            vol[0][vol[0] == 2] = 0
            vol[0][r2 <= 14 ** 2] = 1
        return vol

    labels = np.stack([phase(8, False), phase(6, True), phase(5, False)])  # phase 2's open base is the largest LV
    plain = cine_indices("c", labels, (8.0, 1.5, 1.5))
    ringed = cine_indices("c", labels, (8.0, 1.5, 1.5), lv_ring=0.9)
    assert plain.phases["ed_phase"] == 2 and ringed.phases["ed_phase"] == 1
    voxel_ml = 8.0 * 1.5 * 1.5 / 1000
    assert ringed.pred["lv_edv"] == pytest.approx((labels[0] == 1).sum() * voxel_ml)
    assert ringed.pred["lv_esv"] == pytest.approx((labels[2] == 1).sum() * voxel_ml)
    assert ringed.phases["lv_slice_ring"] == 0.9


def test_no_indices_says_whether_the_model_or_the_slice_rule_removed_the_lv(caplog):
    """An LV with no myocardium around it is predicted in every phase, but the slice-inclusion rule
    drops it: the refusal names the rule, not "no LV predicted" (which a user reads as a blank model)."""
    from vlsa.clinical import LV
    from vlsa.engine.predict_dicom import cine_indices

    labels = np.zeros((2, 3, 12, 12), np.int64)  # phases x slices x H x W
    labels[:, :, 3:9, 3:9] = LV
    with caplog.at_level(logging.WARNING):
        kept = cine_indices("s1", labels, (8.0, 1.5, 1.5), lv_ring=0.0)
        dropped = cine_indices("s2", labels, (8.0, 1.5, 1.5), lv_ring=0.8)
        blank = cine_indices("s3", np.zeros_like(labels), (8.0, 1.5, 1.5), lv_ring=0.8)
    assert not kept.refused.get("lv_ef")
    assert "dropped from every slice by the slice-inclusion rule (eval.lv_slice_ring 0.8" in dropped.refused["lv_ef"]
    assert blank.refused["lv_ef"] == "no LV predicted in any phase"
    assert "slice-inclusion rule" in caplog.text
