"""NNUNetReader on small datasets written in nnU-Net v2's raw format (2D PNG, 3D NIfTI, NRRD)."""

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from vlsa.cli import main
from vlsa.data.domains import open_reader
from vlsa.data.integrity import verify
from vlsa.data.nnunet import NNUNetReader
from vlsa.errors import DataError

LABELS = {"background": 0, "lesion": 1, "edge": 2}
CASES = {"siteA_001": "siteA", "siteA_002": "siteA", "siteA_003": "siteA",
         "siteB_001": "siteB", "siteB_002": "siteB", "siteB_003": "siteB"}


def _label(shape, i):
    lab = np.zeros(shape, np.uint8)
    lab[2:6, 3:8] = 1
    lab[6:8, 3:8] = 2
    lab[0, 0] = i % 2  # differs per case
    return lab


def _write_json(root, ending, n, labels=None, channels=None, **extra):
    doc = {"channel_names": channels or {"0": "T1", "1": "T2"}, "labels": labels or LABELS,
           "numTraining": n, "file_ending": ending, **extra}
    (root / "dataset.json").write_text(json.dumps(doc))


def _png_dataset(root, domains_csv=True):
    """2 grey channels per case, one PNG each; labels as class indices."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i, case in enumerate(CASES):
        Image.fromarray(np.full((10, 12), 10 * i, np.uint8)).save(root / "imagesTr" / f"{case}_0000.png")
        Image.fromarray(np.full((10, 12), 200 - i, np.uint8)).save(root / "imagesTr" / f"{case}_0001.png")
        Image.fromarray(_label((10, 12), i)).save(root / "labelsTr" / f"{case}.png")
    _write_json(root, ".png", len(CASES))
    if domains_csv:
        rows = "\n".join(f"{c},{'hospital' + d[-1]}" for c, d in CASES.items())
        (root / "domains.csv").write_text("case,domain\n" + rows + "\n")
    return root


def _nifti_dataset(root, ending=".nii.gz"):
    """2-channel 3D volumes (x, y, z) = (8, 9, 3) with voxel size 0.8 x 0.9 x 5 mm."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    affine = np.diag([0.8, 0.9, 5.0, 1.0])
    rng = np.random.default_rng(0)
    for i, case in enumerate(CASES):
        for c in range(2):
            vol = rng.normal(100 * (c + 1), 20, size=(8, 9, 3)).astype(np.float32)
            _save_volume(root / "imagesTr" / f"{case}_{c:04d}{ending}", vol, affine)
        lab = np.stack([_label((8, 9), i + z) for z in range(3)], axis=-1)
        _save_volume(root / "labelsTr" / f"{case}{ending}", lab, affine)
    _write_json(root, ending, len(CASES))
    return root


def _save_volume(path, data, affine):
    if str(path).endswith(".nii.gz"):
        nib.save(nib.Nifti1Image(data, affine), str(path))
    else:
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(data.transpose(2, 1, 0))  # sitk wants z, y, x
        img.SetSpacing([float(s) for s in np.diag(affine)[:3]])
        sitk.WriteImage(img, str(path))


def test_png_two_channels_with_domains_csv(tmp_path):
    reader = NNUNetReader(_png_dataset(tmp_path), test_fraction=0.34)
    assert reader.domains() == ["hospitalA", "hospitalB"]
    assert reader.spec.label_names == ("background", "lesion", "edge")
    assert reader.spec.regions == {"lesion": (1,), "edge": (2,)} and reader.spec.channels == 2
    train, test = list(reader.samples("hospitalA", "train")), list(reader.samples("hospitalA", "test"))
    assert len(train) == 2 and len(test) == 1
    s = train[0]
    assert s.image.shape == (2, 10, 12) and s.image.dtype == np.float32
    i = list(CASES).index(s.name)
    assert np.allclose(s.image[0], 10 * i / 255) and np.allclose(s.image[1], (200 - i) / 255)
    assert np.array_equal(s.label, _label((10, 12), i)) and s.domain == "hospitalA"
    assert not reader.spec.volumetric and s.volume_id is None


def test_domain_pattern_overrides_csv(tmp_path):
    root = _png_dataset(tmp_path, domains_csv=False)
    reader = open_reader("nnunet", root, domain_pattern=r"^(site\w)_")
    assert reader.domains() == ["siteA", "siteB"]
    assert {c.case for c in reader.cases if c.domain == "siteB"} == {"siteB_001", "siteB_002", "siteB_003"}
    named = NNUNetReader(root, domain_pattern=r"(?P<domain>\d{3})$")  # named group wins
    assert named.domains() == ["001", "002", "003"]


def test_nifti_volumes_become_slices(tmp_path):
    reader = NNUNetReader(_nifti_dataset(tmp_path), test_fraction=0.34, domain_pattern=r"^(site\w)_")
    assert reader.spec.volumetric and reader.spec.channels == 2
    samples = list(reader.samples("siteA", "train"))
    assert len(samples) == 2 * 3  # 2 train volumes x 3 slices
    first = samples[0]
    assert first.image.shape == (2, 8, 9) and first.volume_id == first.name[: -len("_z00")]
    assert [s.slice_index for s in samples[:3]] == [0, 1, 2]
    assert first.spacing == pytest.approx((0.8, 0.9)) and first.slice_thickness == pytest.approx(5.0)
    assert first.affine[0, 0] == pytest.approx(0.8)
    assert 0.0 <= first.image.min() and first.image.max() <= 1.0  # per-slice percentile normalisation
    i = list(CASES).index(first.volume_id)
    assert np.array_equal(samples[1].label, _label((8, 9), i + 1))
    resampled = NNUNetReader(tmp_path, spacing=0.4, domain_pattern=r"^(site\w)_")
    assert next(resampled.samples("siteA", "train")).image.shape == (2, 16, 20)  # 8 x 0.8 / 0.4, 9 x 0.9 / 0.4
    assert all(s.images == 6 for s in verify(reader, ["siteA", "siteB"], splits=("train",)))


def test_nrrd_through_simpleitk(tmp_path):
    pytest.importorskip("SimpleITK")
    reader = NNUNetReader(_nifti_dataset(tmp_path, ending=".nrrd"), domain_pattern=r"^(site\w)_")
    s = next(reader.samples("siteA", "train"))
    assert s.image.shape == (2, 8, 9) and s.spacing == pytest.approx((0.8, 0.9))
    assert s.slice_thickness == pytest.approx(5.0)
    assert np.array_equal(s.label, _label((8, 9), list(CASES).index(s.volume_id)))


def test_rgb_png_one_file_holds_three_channels(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 255, 51
    for case in ("a_1", "a_2", "b_1", "b_2"):
        Image.fromarray(rgb).save(tmp_path / "imagesTr" / f"{case}_0000.png")
        Image.fromarray(np.ones((6, 7), np.uint8)).save(tmp_path / "labelsTr" / f"{case}.png")
    _write_json(tmp_path, ".png", 4, labels={"background": 0, "road": 1}, channels={"0": "R", "1": "G", "2": "B"})
    # test_fraction 0: every case trains (with two cases per domain the per-id rule may hold both out)
    s = next(NNUNetReader(tmp_path, test_fraction=0.0, domain_pattern="^[ab]").samples("a", "train"))
    assert s.image.shape == (3, 6, 7) and s.image[:, 0, 0].tolist() == pytest.approx([1.0, 0.0, 0.2])


# -- bad inputs: one-line errors naming the file ------------------------------------------------

def _one_line(exc_info):
    assert "\n" not in str(exc_info.value)
    return str(exc_info.value)


def test_missing_channel_file(tmp_path):
    _png_dataset(tmp_path)
    (tmp_path / "imagesTr" / "siteB_002_0001.png").unlink()
    with pytest.raises(DataError, match=r"siteB_002_0001\.png: missing channel 1 \(T2\) of case siteB_002") as e:
        NNUNetReader(tmp_path)
    _one_line(e)


def test_case_without_domain(tmp_path):
    _png_dataset(tmp_path)
    csv = tmp_path / "domains.csv"
    csv.write_text("\n".join(line for line in csv.read_text().splitlines() if not line.startswith("siteA_003")))
    with pytest.raises(DataError, match=r"domains\.csv: case siteA_003 has no domain") as e:
        NNUNetReader(tmp_path)
    _one_line(e)
    with pytest.raises(DataError, match=r"siteB_001\.png: case siteB_001 has no domain \(data\.domain_pattern"):
        NNUNetReader(tmp_path, domain_pattern=r"^siteA")
    csv.unlink()
    with pytest.raises(DataError, match=r"no domains\.csv .* and no data\.domain_pattern"):
        NNUNetReader(tmp_path)


def test_label_value_not_in_dataset_json(tmp_path):
    _png_dataset(tmp_path)
    bad = _label((10, 12), 0)
    bad[9, 11] = 7
    Image.fromarray(bad).save(tmp_path / "labelsTr" / "siteA_001.png")
    reader = NNUNetReader(tmp_path)
    with pytest.raises(DataError, match=r"labelsTr/siteA_001\.png: label values \[7\] not in dataset\.json labels") as e:
        verify(reader, ["hospitalA"])
    _one_line(e)


def test_region_based_labels_refused(tmp_path):
    _png_dataset(tmp_path)
    _write_json(tmp_path, ".png", 6, labels={"background": 0, "whole": [1, 2], "core": 2}, regions_class_order=[1, 2])
    with pytest.raises(DataError, match=r"dataset\.json: region-based labels .* not supported") as e:
        NNUNetReader(tmp_path)
    _one_line(e)
    _write_json(tmp_path, ".png", 6, labels={"background": 0, "whole": [1, 2], "core": 2})
    with pytest.raises(DataError, match=r"region-based label 'whole': \[1, 2\] is not supported"):
        NNUNetReader(tmp_path)


def test_other_dataset_json_problems(tmp_path):
    _png_dataset(tmp_path)
    _write_json(tmp_path, ".png", 5)
    with pytest.raises(DataError, match=r"numTraining is 5 but labelsTr holds 6 cases"):
        NNUNetReader(tmp_path)
    _write_json(tmp_path, ".png", 6, labels={"background": 0, "lesion": 2})
    with pytest.raises(DataError, match=r"consecutive integers 0\.\.1, got \[0, 2\]"):
        NNUNetReader(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match=r"dataset\.json: invalid JSON"):
        NNUNetReader(tmp_path)


def test_cli_verify_bad_dataset_exits_2(tmp_path, capsys):
    _png_dataset(tmp_path)
    (tmp_path / "imagesTr" / "siteA_001_0000.png").unlink()
    assert main(["verify", "--dataset", "nnunet", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vlsa: error: ") and "siteA_001_0000.png: missing channel 0" in err and "\n" not in err
