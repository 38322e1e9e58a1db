"""From a cardiac study to EF with a trained (tiny) run: `vlsa evaluate` writes clinical.csv whose
reference values are the ground truth's own volumes, with the agreement in metrics.json/md and a
Bland-Altman plot in the report; `vlsa predict --format dicom-seg` on a DICOM cine series written
with pydicom (oblique, files out of order, rescale slope, two phases) writes NIfTI and SEG that
agree frame by frame; bad inputs are one line, exit 2."""

import csv
import json

import nibabel as nib
import numpy as np
import pydicom
import pytest

from tests.conftest import tiny_overrides
from tests.data.dicom_files import write_mr
from vlsa.cli import main
from vlsa.config import build_config
from vlsa.data.dicom import read_dicom
from vlsa.data.dicom_seg import read_seg
from vlsa.data.domains import open_reader
from vlsa.engine.evaluate import evaluate_run
from vlsa.engine.train import train


@pytest.fixture(scope="module")
def cardiac_run(cardiac_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "cardiac"
    overrides = tiny_overrides(cardiac_root, dataset="mms", source="A") + ["data.spacing=2.0"]
    train(build_config({}, overrides), run, quiet=True)
    return run


def _truth(cardiac_root, code):
    """LV EDV, ESV (mL) and EF (%) of one synthetic subject, from its ground-truth NIfTI and csv."""
    with open(next(cardiac_root.glob("*.csv"))) as f:
        row = next(r for r in csv.DictReader(f) if r["External code"] == code)
    gt = nib.load(str(next(cardiac_root.rglob(f"{code}_sa_gt.nii.gz"))))
    labels, voxel = np.asarray(gt.dataobj), float(np.prod(gt.header.get_zooms()[:3])) / 1000
    edv, esv = ((labels[..., int(row[k])] == 1).sum() * voxel for k in ("ED", "ES"))
    return edv, esv, 100 * (edv - esv) / edv


def test_evaluate_writes_clinical_indices_against_the_ground_truth(cardiac_run, cardiac_root):
    metrics = evaluate_run(cardiac_run, quiet=True)
    with open(cardiac_run / "clinical.csv") as f:
        rows = list(csv.DictReader(f))
    # one row per test subject of every vendor (the per-id split rule gives each vendor its own count)
    tested = {d: {s.case_id for s in open_reader("mms", cardiac_root).samples(d, "test")} for d in "ABCD"}
    assert sorted((r["domain"], r["subject"]) for r in rows) == sorted((d, c) for d, ids in tested.items() for c in ids)
    for r in rows:
        edv, esv, ef = _truth(cardiac_root, r["subject"])
        assert float(r["lv_edv_true"]) == pytest.approx(edv, abs=1e-3)
        assert float(r["lv_esv_true"]) == pytest.approx(esv, abs=1e-3)
        assert float(r["lv_ef_true"]) == pytest.approx(ef, abs=1e-3)
        assert r["lv_edv_pred"] != "" and r["rv_ef_true"] != ""
    stats = metrics["clinical"]["B"]["indices"]["lv_ef"]
    vendor_b = [float(r["lv_ef_pred"]) - float(r["lv_ef_true"]) for r in rows if r["domain"] == "B"]
    assert stats["n"] == len(vendor_b) and stats["bias"] == pytest.approx(sum(vendor_b) / len(vendor_b), abs=1e-3)
    assert json.loads((cardiac_run / "metrics.json").read_text())["clinical"]["B"]["indices"]["lv_ef"]["n"] == len(vendor_b)
    md = (cardiac_run / "metrics.md").read_text()
    assert "## Clinical indices" in md and f"| B | LV EF | % | {len(vendor_b)} |" in md
    assert main(["evaluate", "--run", str(cardiac_run), "--domains", "C", "--report"]) == 0
    assert (cardiac_run / "clinical_C.csv").is_file()  # a subset: beside metrics_C.json, never over clinical.csv
    assert len((cardiac_run / "clinical.csv").read_text().splitlines()) == 1 + len(rows)  # header + the full evaluation's subjects, unchanged
    page = (cardiac_run / "report_C.html").read_text()
    assert "Bland-Altman: C" in page and 'src="bland_altman_C/C.png"' in page
    assert (cardiac_run / "bland_altman_C" / "C.png").is_file()


def _write_study(cardiac_root, folder):
    """A synthetic subject's ED and ES frames as a DICOM cine series: oblique orientation, shuffled
    file names and instance numbers, a rescale slope."""
    code_dir = next((cardiac_root / "Training" / "Labeled").glob("B*"))
    img = nib.load(str(code_dir / f"{code_dir.name}_sa.nii.gz"))
    data = np.asarray(img.dataobj, dtype=np.float32)  # x, y, z, t
    zooms = img.header.get_zooms()
    row, col = np.array([0.0, 1.0, 0.0]), np.array([0.6, 0.0, -0.8])  # oblique
    normal = np.cross(row, col)
    slope, intercept = 0.5, -100.0
    rng = np.random.default_rng(3)
    frames = [(z, t) for t in (0, data.shape[3] // 2) for z in range(data.shape[2])]
    for number, k in enumerate(rng.permutation(len(frames))):
        z, t = frames[k]
        stored = np.round((data[:, :, z, t].T - intercept) / slope).clip(0, 65535)  # rows = y, columns = x
        write_mr(folder / f"{rng.integers(10**6)}.dcm", stored.astype(np.uint16), position=z * zooms[2] * normal,
                 orientation=(*row, *col), spacing=(float(zooms[1]), float(zooms[0])), trigger=10.0 + 300 * t,
                 slope=slope, intercept=intercept, number=number + 1,
                 extra={"FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.5", "PatientID": "P1"})
    return folder


def test_predict_dicom_seg_agrees_with_its_nifti_frame_by_frame(cardiac_run, cardiac_root, tmp_path, capsys):
    study = _write_study(cardiac_root, tmp_path / "study")
    out = tmp_path / "out"
    assert main(["predict", "--run", str(cardiac_run), "--input", str(study), "--output", str(out),
                 "--format", "dicom-seg"]) == 0
    assert "study: ED phase" in capsys.readouterr().out
    vol = read_dicom(study)
    for p in (0, 1):
        img = nib.load(str(out / f"study_phase0{p + 1}.nii.gz"))
        assert np.allclose(img.affine, vol.affine) and img.shape == vol.nifti_array(p).shape
        uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f, _ in vol.sources[p]]
        seg, names = read_seg(out / f"study_phase0{p + 1}.seg.dcm", uids)
        assert np.array_equal(seg, np.asarray(img.dataobj).transpose(2, 1, 0))
        assert names == ["LV blood pool", "LV myocardium", "RV blood pool"]
    with open(out / "clinical.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["subject"] == "study" and row["lv_ef_true"] == ""


def test_bad_dicom_inputs_are_one_line_exit_2(cardiac_run, cardiac_root, tmp_path, capsys):
    nifti = next((cardiac_root / "Training" / "Labeled").glob("B*/B*_sa.nii.gz"))
    assert main(["predict", "--run", str(cardiac_run), "--input", str(nifti), "--output", str(tmp_path / "o1"),
                 "--format", "dicom-seg"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--format dicom-seg needs DICOM input" in err
    study = _write_study(cardiac_root, tmp_path / "mixed")
    write_mr(study / "other.dcm", np.zeros((8, 8), np.uint16), series="1.2.826.0.1.3680043.8.498.99", description="scout")
    assert main(["predict", "--run", str(cardiac_run), "--input", str(study), "--output", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds 2 series" in err and "scout" in err
    assert not (tmp_path / "o2").exists()
    uid = pydicom.dcmread(next(study.glob("[0-9]*.dcm")), stop_before_pixels=True).SeriesInstanceUID
    assert main(["predict", "--run", str(cardiac_run), "--input", str(study), "--output", str(tmp_path / "o3"),
                 "--series", uid]) == 0
    assert (tmp_path / "o3" / "mixed_phase02.nii.gz").is_file()


def test_evaluate_data_of_another_dataset_read_from_dicom(cardiac_run, tmp_path, capsys):
    from tests.data.test_sunnybrook import _link, _patient

    _patient(tmp_path / "sb")  # 2 slices 10 mm apart at 1.5 x 1.25 mm; ED cavity 20 px, ES 6 px a slice
    _link(tmp_path / "sb")
    assert main(["evaluate", "--run", str(cardiac_run), "--data", str(tmp_path / "sb"), "--dataset", "sunnybrook"]) == 0
    name = "data-sb"
    with open(cardiac_run / f"clinical_{name}.csv") as f:
        (row,) = list(csv.DictReader(f))
    voxel_ml = 10.0 * 1.5 * 1.25 / 1000
    assert float(row["lv_edv_true"]) == pytest.approx(2 * 20 * voxel_ml)
    assert float(row["lv_esv_true"]) == pytest.approx(2 * 6 * voxel_ml)
    assert float(row["lv_ef_true"]) == pytest.approx(70.0) and row["rv_edv_true"] == row["rv_edv_pred"] == ""
    metrics = json.loads((cardiac_run / f"metrics_{name}.json").read_text())
    assert metrics["domains"]["Sunnybrook"]["role"] == "target"
    assert main(["evaluate", "--run", str(cardiac_run), "--dataset", "sunnybrook"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "vlsa: error: --dataset sunnybrook: names the reader of --data; give the folder with --data"


def test_predict_4d_nifti_writes_indices_that_match_its_label_file(cardiac_run, cardiac_root, tmp_path):
    src = next((cardiac_root / "Training" / "Labeled").glob("C*/C*_sa.nii.gz"))
    assert main(["predict", "--run", str(cardiac_run), "--input", str(src), "--output", str(tmp_path)]) == 0
    out = nib.load(str(tmp_path / src.name))
    labels, voxel = np.asarray(out.dataobj), float(np.prod(out.header.get_zooms()[:3])) / 1000
    lv = [(labels[..., t] == 1).sum() * voxel for t in range(labels.shape[3])]
    with open(tmp_path / "clinical.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["subject"] == src.name.removesuffix(".nii.gz")
    assert float(row["lv_edv_pred"]) == pytest.approx(max(lv), abs=1e-3)
    assert float(row["lv_esv_pred"]) == pytest.approx(min(lv), abs=1e-3)
