import logging
import time

import h5py
import nibabel as nib
import numpy as np
import pytest

from vlsa.cli import main
from vlsa.data.acdc import NOMINAL_SPACING_MM, ACDCReader
from vlsa.data.integrity import verify
from vlsa.errors import DataError

ROWS, COLS, SLICES = 24, 20, 3


def _phantom(scale: float = 1.0, slices: int = SLICES):
    """rows x cols x slices image and ACDC labels: a bright round LV cavity (ACDC 3) in a dark
    myocardial ring (2), a smaller bright RV crescent (1) to the left (as scanners display it)."""
    r, c = np.mgrid[:ROWS, :COLS]
    d_lv = np.hypot(r - 12, c - 12)
    lv, myo = d_lv <= 4 * scale, (d_lv > 4 * scale) & (d_lv <= 6 * scale)
    rv = (np.hypot(r - 12, c - 4) <= 3) & ~lv & ~myo
    plane = np.where(lv, 3, np.where(myo, 2, np.where(rv, 1, 0))).astype(np.uint8)
    image = np.where(lv | rv, 400.0, np.where(myo, 80.0, 150.0)).astype(np.float32)
    image = image + np.arange(COLS, dtype=np.float32)  # a ramp, so a transposed plane is told apart
    labels = np.repeat(plane[..., None], slices, axis=2)
    for z in range(slices):
        labels[0, : z + 1, z] = 2  # a marker of z + 1 pixels tells the slices apart
    images = np.stack([image + 10 * z for z in range(slices)], axis=-1)
    return images, labels


def _nifti_patient(root, patient, folder="training", ed=1, es=12, zooms=(1.6, 1.4, 10.0), empty_es=False):
    case = root / folder / patient
    case.mkdir(parents=True)
    (case / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: DCM\nHeight: 184.0\nNbFrame: 30\nWeight: 95.0\n")
    for frame, scale in ((ed, 1.0), (es, 0.6)):
        images, labels = _phantom(scale)
        if empty_es and frame == es:
            labels[:] = 0
        # NIfTI i x j x k = columns x rows x slices (as the ACDC files and SimpleITK have it)
        for data, suffix in ((images, ""), (labels, "_gt")):
            nii = nib.Nifti1Image(data.transpose(1, 0, 2), np.diag([*zooms, 1.0]))
            nii.header.set_zooms(zooms)
            nib.save(nii, str(case / f"{patient}_frame{frame:02d}{suffix}.nii.gz"))
    return case


def _h5(path, image, label):
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=image)
        f.create_dataset("label", data=label)


def _h5_patient(root, patient, as_slices: bool, slices: int = SLICES):
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    for frame, scale in ((1, 1.0), (2, 0.6)):
        images, labels = _phantom(scale, slices)
        images = (images - images.min()) / (images.max() - images.min())  # SSL4MIS: min-max per volume
        if as_slices:
            for k in reversed(range(slices)):  # written out of order; K counts from 1
                _h5(data / f"{patient}_frame{frame:02d}_slice_{k + 1}.h5", images[..., k], labels[..., k])
        else:
            _h5(data / f"{patient}_frame{frame:02d}.h5", images.transpose(2, 0, 1), labels.transpose(2, 0, 1))


def _lists(root, train=(), val=(), test=()):
    for name, patients in (("train", train), ("val", val), ("test", test)):
        (root / f"{name}.list").write_text("".join(f"{p}_frame01\n{p}_frame02\n" for p in patients))


def test_nifti_release_maps_acdc_labels_so_lv_stays_lv(tmp_path):
    _nifti_patient(tmp_path, "patient001")
    _nifti_patient(tmp_path, "patient002", ed=3, es=9)
    _nifti_patient(tmp_path, "patient101", folder="testing")
    reader = ACDCReader(tmp_path)
    assert reader.layout == "nifti" and reader.domains() == ["ACDC"]
    train = list(reader.samples("ACDC", "train"))
    assert {s.case_id for s in train} == {"patient001", "patient002"}
    assert {s.case_id for s in reader.samples("ACDC", "test")} == {"patient101"}
    ed = next(s for s in train if s.volume_id == "patient001_ED")
    # the largest bright cavity (ACDC label 3) is vlsa's LV (1); the crescent (ACDC 1) is RV (3)
    assert ed.label[12, 12] == 1 and ed.label[12, 3] == 3 and ed.label[12, 17] == 2
    assert ed.image[0, 12, 12] > ed.image[0, 12, 17]  # bright cavity, dark myocardium
    assert ed.original_spacing == pytest.approx((1.4, 1.6))  # (row, col) = NIfTI (j, i) voxel sizes
    assert ed.slice_thickness == 10.0 and ed.image.shape == (1, ROWS, COLS)
    assert ed.meta["spacing_known"] is True and ed.meta["group"] == "DCM" and ed.meta["height"] == 184.0
    assert ed.meta["ed_es"] == {"ED": 1, "ES": 12} and ed.meta["frame"] == 1
    es = next(s for s in train if s.volume_id == "patient002_ES")
    assert es.meta["frame"] == 9 and es.meta["phase"] == "ES"
    assert "3 patients, 6 annotated phases" in reader.summary()


def test_h5_layout_reassembles_slices_in_order_of_k_and_splits_by_the_lists(tmp_path, caplog):
    _h5_patient(tmp_path, "patient003", as_slices=True, slices=11)  # K 1..11: 10 sorts after 9, not 1
    _h5_patient(tmp_path, "patient001", as_slices=False)
    _h5_patient(tmp_path, "patient002", as_slices=False)
    _lists(tmp_path, train=["patient003"], val=["patient002"], test=["patient001"])
    with caplog.at_level(logging.WARNING):
        reader = ACDCReader(tmp_path)
    assert caplog.text.count("stores no voxel spacing") == 1
    train = [s for s in reader.samples("ACDC", "train")]
    assert {s.case_id for s in train} == {"patient002", "patient003"}
    assert {s.case_id for s in reader.samples("ACDC", "test")} == {"patient001"}
    p3 = [s for s in train if s.volume_id == "patient003_ED"]
    assert [s.slice_index for s in p3] == list(range(11))
    assert [int((s.label[0] == 2).sum()) for s in p3] == list(range(1, 12))  # slice K is z = K - 1
    assert p3[9].meta["source"].endswith("patient003_frame01_slice_10.h5")
    s = p3[0]
    assert s.label[12, 12] == 1 and s.label[12, 3] == 3  # ACDC 3 -> LV 1, ACDC 1 -> RV 3
    assert s.meta["spacing_known"] is False and s.original_spacing == (1.0, 1.0) and s.slice_thickness == 1.0
    assert s.meta["ed_es"] == {"ED": 1, "ES": 2}
    assert "voxel spacing unknown" in reader.summary()


def test_the_same_patient_reads_the_same_from_nifti_and_h5(tmp_path):
    _nifti_patient(tmp_path / "nifti", "patient001", ed=1, es=2, zooms=(1.5, 1.5, 10.0))
    _nifti_patient(tmp_path / "nifti", "patient002", ed=1, es=2, zooms=(1.5, 1.5, 10.0))
    _h5_patient(tmp_path / "h5", "patient001", as_slices=False)
    _h5_patient(tmp_path / "h5", "patient002", as_slices=True)
    nifti = {s.name: s for s in ACDCReader(tmp_path / "nifti", test_fraction=0.01).samples("ACDC", "train")}
    h5 = ACDCReader(tmp_path / "h5", test_fraction=0.01)
    assert "salted hash" in h5.split_rule
    for s in h5.samples("ACDC", "train"):
        n = nifti[s.name]
        assert np.array_equal(s.label, n.label)
        assert np.allclose(s.image, n.image, atol=1e-5)


def test_h5_resampled_from_the_nominal_spacing_is_scored_on_the_stored_grid(tmp_path):
    _h5_patient(tmp_path, "patient001", as_slices=False)
    _h5_patient(tmp_path, "patient002", as_slices=False)
    _lists(tmp_path, train=["patient001"], test=["patient002"])
    s = next(ACDCReader(tmp_path, spacing=2 * NOMINAL_SPACING_MM).samples("ACDC", "train"))
    assert s.image.shape == (1, ROWS // 2, COLS // 2) and s.spacing == (3.0, 3.0)
    assert s.meta["assumed_spacing"] == NOMINAL_SPACING_MM
    # metrics compare with the annotation as stored, in voxels of that grid
    assert s.original_label.shape == (ROWS, COLS) and s.original_spacing == (1.0, 1.0)
    assert s.scoring()[0][12, 12] == 1


def test_info_cfg_frame_without_labels_is_one_line_exit_2(tmp_path, capsys):
    _nifti_patient(tmp_path, "patient001", empty_es=True)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["verify", "--dataset", "acdc", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "patient001/Info.cfg: names ES frame 12 but patient001_frame12_gt.nii.gz has no labels" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_info_cfg_frame_whose_ground_truth_is_missing(tmp_path):
    case = _nifti_patient(tmp_path, "patient001")
    (case / "patient001_frame12_gt.nii.gz").unlink()
    with pytest.raises(DataError, match=r"Info.cfg: names ES frame 12 but patient001_frame12_gt.nii.gz is missing "
                                        r"\(ground truth of: frame01\)"):
        ACDCReader(tmp_path)


def test_h5_bad_inputs(tmp_path):
    _h5_patient(tmp_path, "patient001", as_slices=True)
    (tmp_path / "data" / "patient001_frame01_slice_2.h5").unlink()
    with pytest.raises(DataError, match=r"patient001_frame01: slice file\(s\) \[2\] missing"):
        ACDCReader(tmp_path)
    (tmp_path / "data" / "patient001_frame01_slice_2.h5").touch()  # zero bytes: not an h5 file
    with pytest.raises(DataError, match="slice_2.h5: corrupt or truncated h5 file"):
        verify(ACDCReader(tmp_path, test_fraction=0.5), ["ACDC"], splits=("train",))
    images, labels = _phantom()
    labels[0, 0] = 5
    _h5(tmp_path / "data" / "patient001_frame01_slice_2.h5", images[..., 1], labels[..., 1])
    with pytest.raises(DataError, match=r"slice_2.h5: label values \[5\] outside ACDC's 0..3"):
        verify(ACDCReader(tmp_path, test_fraction=0.5), ["ACDC"], splits=("train",))


def test_real_acdc_h5_counts(realdata):
    root = realdata / "acdc-ssl4mis"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    reader = ACDCReader(root)
    assert len(reader.patients()) == 100 and len(reader.volumes) == 200
    assert len({v.patient for v in reader.volumes if v.split == "test"}) == 20
    assert "100 patients, 200 annotated phases" in reader.summary()
    start = time.perf_counter()
    # the test split only (40 volumes, ~2 s); `vlsa verify` reads all 200 in ~11 s
    test = list(reader.samples("ACDC", "test"))
    assert len({s.volume_id for s in test}) == 40 and time.perf_counter() - start < 20
    # LV stays LV on the real labels: the LV (1) is walled by myocardium (2), the RV (3) is not
    from scipy import ndimage

    ring = {1: [], 3: []}
    volumes = {}
    for s in test:
        volumes.setdefault(s.volume_id, []).append(s.label)
    for labels in volumes.values():
        lab = np.stack(labels)
        for c in ring:
            mask = lab == c
            edge = ndimage.binary_dilation(mask, structure=ndimage.generate_binary_structure(3, 1)) & ~mask
            ring[c].append(float((lab[edge] == 2).mean()))
    assert np.median(ring[1]) > 0.8 and np.median(ring[3]) < 0.3


def test_nifti_resampled_to_spacing_keeps_the_annotation_on_its_own_grid(tmp_path):
    _nifti_patient(tmp_path, "patient001", zooms=(1.6, 1.4, 10.0))
    _nifti_patient(tmp_path, "patient101", folder="testing", zooms=(1.6, 1.4, 10.0))
    s = next(ACDCReader(tmp_path, spacing=2.8).samples("ACDC", "test"))
    assert s.image.shape == (1, 12, 11) and s.spacing == (2.8, 2.8)  # 24 x 1.4 / 2.8, 20 x 1.6 / 2.8
    truth, spacing = s.scoring()
    assert truth.shape == (ROWS, COLS) and spacing == pytest.approx((1.4, 1.6)) and truth[12, 12] == 1


def test_packaged_acdc_sdg_config_trains_and_scores_acdc_test_volumes(tmp_path):
    import json

    from tests.conftest import tiny_overrides

    for p in ("patient001", "patient002", "patient003", "patient004"):
        _h5_patient(tmp_path / "acdc", p, as_slices=p != "patient004")
    _lists(tmp_path / "acdc", train=["patient001", "patient002"], val=["patient003"], test=["patient004"])
    run = tmp_path / "run"
    sets = [a for o in tiny_overrides(tmp_path / "acdc", dataset="acdc", source="ACDC", steps=4) for a in ("--set", o)]
    sets += ["--set", "data.target_datasets={}"]  # the packaged Sunnybrook target lives in ../shared/realdata
    assert main(["train", "--config", "acdc_sdg", *sets, "--out", str(run)]) == 0
    assert main(["evaluate", "--run", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["dataset"] == "acdc" and metrics["domains"]["ACDC"]["n"] == 2  # patient004 ED + ES volumes


def test_h5_export_to_nnunet_writes_slices_thicker_than_their_pixels(tmp_path, caplog):
    """ACDC's h5 copy has no slice thickness (the reader records 1.0 mm): `vlsa export nnunet`
    writes twice the in-plane spacing instead, so nnU-Net's 2d configuration, which cuts along the
    axis of largest spacing, cuts along the short-axis planes; it says so once."""
    root = tmp_path / "acdc"
    for p in ("patient001", "patient002"):
        _h5_patient(root, p, as_slices=False)
    _lists(root, train=["patient001"], test=["patient002"])
    out = tmp_path / "Dataset510_ACDC"
    with caplog.at_level(logging.WARNING):
        assert main(["export", "nnunet", "--dataset", "acdc", "--root", str(root), "--out", str(out),
                     "--spacing", "1.5"]) == 0
    assert caplog.text.count("slice thickness unknown; written as 3.00 mm") == 1
    images = sorted((out / "imagesTr").glob("*.nii.gz"))
    assert len(images) == 4  # 2 patients x ED, ES
    for path in images:
        zooms = nib.load(str(path)).header.get_zooms()
        assert zooms[2] == pytest.approx(3.0) and max(zooms[:2]) == pytest.approx(1.5)
        assert np.argmax(zooms) == 2  # the slice axis has the largest spacing
