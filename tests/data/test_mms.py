import gzip

import nibabel as nib
import numpy as np
import pytest

from vlsa.data.integrity import verify
from vlsa.data.mms import MMSReader
from vlsa.errors import DataError


def _case(root, code, shape=(20, 24, 3, 5), zooms=(1.25, 1.25, 10.0, 1.0), gt_values=(1, 2, 3), folder="Training/Labeled"):
    case = root / folder / code
    case.mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 500, size=shape).astype(np.float32)
    gt = np.zeros(shape, dtype=np.uint8)
    for i, v in enumerate(gt_values):
        if gt.ndim == 4:
            gt[4 + 3 * i : 7 + 3 * i, 5:15, :, 1] = v
            gt[4 + 3 * i : 6 + 3 * i, 5:12, :, 3] = v
        else:
            gt[4 + 3 * i : 7 + 3 * i, 5:15, :] = v
    affine = np.diag([*zooms[:3], 1.0])
    for data, name in ((img, "sa"), (gt, "sa_gt")):
        nii = nib.Nifti1Image(data, affine)
        nii.header.set_zooms(zooms[: data.ndim])
        nib.save(nii, str(case / f"{code}_{name}.nii.gz"))
    return case


def _csv(root, rows):
    # the real file carries a leading unnamed index column
    lines = [",External code,VendorName,Vendor,Centre,ED,ES"]
    lines += [f"{i},{code},{name},{v},{c},{ed},{es}" for i, (code, name, v, c, ed, es) in enumerate(rows)]
    (root / "211230_M&Ms_Dataset_information_diagnosis_opendataset.csv").write_text("\n".join(lines) + "\n")


def test_reads_ed_es_slices_with_vendor_and_volume_ids(tmp_path):
    # two codes the per-id split rule puts on either side at test_fraction 0.5 (hashes 0.41, 0.95)
    _case(tmp_path, "A1B2C3")
    _case(tmp_path, "A2B3C4")
    _csv(tmp_path, [("A1B2C3", "Siemens", "A", 1, 1, 3), ("A2B3C4", "Siemens", "A", 1, 1, 3)])
    reader = MMSReader(tmp_path, test_fraction=0.5)
    assert reader.domains() == ["A"]
    train = list(reader.samples("A", "train"))
    test = list(reader.samples("A", "test"))
    assert len(train) == len(test) == 2 * 3  # ED + ES frames x 3 slices
    assert {s.case_id for s in train}.isdisjoint({s.case_id for s in test})
    s = train[0]
    assert s.image.shape == (1, 20, 24) and s.label.shape == (20, 24)
    assert s.volume_id.endswith("_ED") and s.slice_index == 0 and s.slice_thickness == 10.0
    assert set(np.unique(s.label)) == {0, 1, 2, 3}
    assert 0.0 <= s.image.min() and s.image.max() <= 1.0


def test_resamples_in_plane_to_the_requested_spacing(tmp_path):
    _case(tmp_path, "A1B2C3")
    _case(tmp_path, "A2B2C3")
    _csv(tmp_path, [("A1B2C3", "Siemens", "A", 1, 1, 3), ("A2B2C3", "Siemens", "A", 1, 1, 3)])
    s = next(MMSReader(tmp_path, spacing=2.5).samples("A", "train"))
    assert s.image.shape == (1, 10, 12) and s.spacing == (2.5, 2.5)
    assert s.meta["original_spacing"] == (1.25, 1.25)


def test_3d_volume_where_4d_expected(tmp_path):
    _case(tmp_path, "A1B2C3", shape=(20, 24, 3), zooms=(1.25, 1.25, 10.0))
    _case(tmp_path, "A2B2C3", shape=(20, 24, 3), zooms=(1.25, 1.25, 10.0))
    _csv(tmp_path, [("A1B2C3", "Siemens", "A", 1, 0, 1), ("A2B2C3", "Siemens", "A", 1, 0, 1)])
    with pytest.raises(DataError, match=r"_sa\.nii\.gz: expected a 4D \(x, y, z, t\) volume, got 3D"):
        list(MMSReader(tmp_path).samples("A", "train"))


def test_label_values_outside_the_classes(tmp_path):
    _case(tmp_path, "A1B2C3", gt_values=(1, 7))
    _case(tmp_path, "A2B2C3")
    _csv(tmp_path, [("A1B2C3", "Siemens", "A", 1, 1, 3), ("A2B2C3", "Siemens", "A", 1, 1, 3)])
    reader = MMSReader(tmp_path)
    with pytest.raises(DataError, match=r"A1B2C3_sa_gt\.nii\.gz: label values \[7\] outside 0\.\.3"):
        verify(reader, ["A"])


def test_truncated_nifti_is_reported(tmp_path):
    case = _case(tmp_path, "A1B2C3")
    _case(tmp_path, "A2B2C3")
    _csv(tmp_path, [("A1B2C3", "Siemens", "A", 1, 1, 3), ("A2B2C3", "Siemens", "A", 1, 1, 3)])
    path = case / "A1B2C3_sa.nii.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"A1B2C3_sa\.nii\.gz: corrupt or truncated NIfTI"):
        verify(MMSReader(tmp_path), ["A"])


def test_nan_voxels_are_reported(tmp_path):
    case = _case(tmp_path, "A1B2C3")
    _case(tmp_path, "A2B2C3")
    _csv(tmp_path, [("A1B2C3", "Siemens", "A", 1, 1, 3), ("A2B2C3", "Siemens", "A", 1, 1, 3)])
    path = case / "A1B2C3_sa.nii.gz"
    data = np.full((20, 24, 3, 5), np.nan, dtype=np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    with pytest.raises(DataError, match="NaN or Inf"):
        verify(MMSReader(tmp_path), ["A"])
    assert gzip.open(path).read(4)  # still a readable gzip: the error came from the values


def test_missing_csv_row_and_broken_ed_es(tmp_path, caplog):
    _case(tmp_path, "A1B2C3")
    _case(tmp_path, "A2B2C3")
    _csv(tmp_path, [("A1B2C3", "Siemens", "A", 1, 2, 2)])
    with pytest.raises(DataError, match="case A2B2C3 .* has no row"):
        MMSReader(tmp_path)
    _csv(tmp_path, [("A1B2C3", "Siemens", "A", 1, 2, 2), ("A2B2C3", "Siemens", "A", 1, 0, 3)])
    reader = MMSReader(tmp_path)
    assert [c.code for c in reader.cases] == ["A2B2C3"]  # ED == ES rows are skipped with a warning
    assert "ED == ES" in caplog.text


def test_synthetic_cardiac_reads_through_the_real_reader(cardiac_root):
    reader = MMSReader(cardiac_root, spacing=2.0)
    assert reader.domains() == ["A", "B", "C", "D"]
    summaries = verify(reader, reader.domains())
    assert all(s.images > 0 for s in summaries)
    for s in summaries:
        assert all(s.label_fraction[c] > 0.005 for c in ("lv", "myo", "rv"))


def test_adding_cases_never_moves_a_training_case_into_test(cardiac_root, tmp_path):
    """Issue 30 row 2: M&Ms' Validation/ folder (or any new case) added beside a run's data must not
    turn a case the run trained on into a test case: each case's split depends on its code alone."""
    import csv
    import shutil

    root = tmp_path / "mms"
    shutil.copytree(cardiac_root, root)
    before = MMSReader(root, test_fraction=0.3)
    train_before = {c.code for c in before.cases_of("A", "train")}
    info = next(root.glob("*.csv"))
    rows = list(csv.reader(info.open()))
    template = next(r for r in rows[1:] if r[3] == "A")
    source = root / "Training" / "Labeled" / template[1]
    for k in range(3):  # three more vendor-A cases, as M&Ms ships them in Validation/
        code = f"AV{k}X{k}Y"
        case = root / "Validation" / code
        case.mkdir(parents=True)
        for suffix in ("sa", "sa_gt"):
            shutil.copy(source / f"{template[1]}_{suffix}.nii.gz", case / f"{code}_{suffix}.nii.gz")
        rows.append([str(len(rows) - 1), code, *template[2:]])
    with info.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    after = MMSReader(root, test_fraction=0.3)
    assert len(after.cases_of("A", "train")) + len(after.cases_of("A", "test")) == len(train_before) + 3 + len(
        before.cases_of("A", "test"))
    moved = train_before & {c.code for c in after.cases_of("A", "test")}
    assert not moved, f"training cases {sorted(moved)} moved into the test split"
