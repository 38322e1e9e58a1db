import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from vlsa.data.folder import FolderReader
from vlsa.errors import DataError


def _dataset(root, mask_value=255, n=4):
    (root / "classes.yaml").write_text(
        "channels: 1\nclasses:\n  - name: lesion\n    value: 255\n    description: a bright round lesion\n")
    for d in ("siteA", "siteB"):
        (root / d / "images").mkdir(parents=True)
        (root / d / "masks").mkdir(parents=True)
        for i in range(n):
            img = np.full((16, 20), 40 * i, np.uint8)
            mask = np.zeros((16, 20), np.uint8)
            mask[4:9, 5:11] = mask_value
            Image.fromarray(img).save(root / d / "images" / f"im{i}.png")
            Image.fromarray(mask).save(root / d / "masks" / f"im{i}.png")


def test_png_folder_dataset(tmp_path):
    _dataset(tmp_path)
    reader = FolderReader(tmp_path, test_fraction=0.25)
    assert reader.domains() == ["siteA", "siteB"]
    assert reader.spec.label_names == ("background", "lesion")
    assert reader.spec.descriptions["lesion"] == "a bright round lesion"
    train, test = list(reader.samples("siteA", "train")), list(reader.samples("siteA", "test"))
    assert len(train) + len(test) == 4 and train and test
    assert train[0].image.shape == (1, 16, 20) and train[0].label.sum() == 30


def test_unknown_mask_values(tmp_path):
    _dataset(tmp_path, mask_value=200)
    with pytest.raises(DataError, match=r"mask values \[200\] not in classes\.yaml"):
        list(FolderReader(tmp_path).samples("siteA", "train"))


def _volume_dataset(root, lesion_slices=(1,), shape=(12, 10, 3), zooms=(0.8, 0.8, 3.0), n=2):
    (root / "classes.yaml").write_text("channels: 1\nclasses:\n  - name: lesion\n    value: 255\n")
    vol = np.random.default_rng(0).uniform(size=shape).astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    for z in lesion_slices:
        mask[2:5, 2:5, z] = 255
    (root / "siteC" / "images").mkdir(parents=True)
    (root / "siteC" / "masks").mkdir(parents=True)
    for i in range(n):
        nib.save(nib.Nifti1Image(vol, np.diag([*zooms, 1])), str(root / "siteC" / "images" / f"v{i}.nii.gz"))
        nib.save(nib.Nifti1Image(mask, np.diag([*zooms, 1])), str(root / "siteC" / "masks" / f"v{i}.nii.gz"))


def test_nifti_volumes_are_sliced(tmp_path):
    _volume_dataset(tmp_path)
    reader = FolderReader(tmp_path, test_fraction=0.5)
    slices = list(reader.samples("siteC", "train"))
    assert len(slices) == 3 and slices[1].label.sum() == 9
    assert slices[0].spacing == (pytest.approx(0.8), pytest.approx(0.8)) and slices[0].volume_id == slices[2].volume_id


def test_nifti_folder_is_scored_per_volume_in_mm(tmp_path):
    # issue 15 row 2: 12x10x4 volumes at 0.8x0.8x3 mm, a lesion in slices 1-2; an all-background
    # prediction is a miss of the whole lesion: Dice 0 per volume (per slice it would be 0.5)
    from vlsa.engine.data import Prepared
    from vlsa.engine.inference import score

    _volume_dataset(tmp_path, lesion_slices=(1, 2), shape=(12, 10, 4))
    reader = FolderReader(tmp_path, test_fraction=0.5)
    assert reader.spec.volumetric
    samples = list(reader.samples("siteC", "test"))
    acc = score(Prepared(None, None, samples, []), [np.zeros_like(s.label) for s in samples], reader.spec)
    agg = acc.aggregate()
    assert agg["n"] == 1 and agg["dice"]["lesion"] == 0.0
    # a missed structure costs the field of view's diagonal, in mm (4 slices x 3 mm, 12 x 0.8, 10 x 0.8)
    assert agg["hd95"]["lesion"] == pytest.approx(np.sqrt(12.0**2 + 9.6**2 + 8.0**2))


def test_nifti_folder_uses_data_spacing_like_predict(tmp_path):
    # one preprocessing for readers, training and predict: data.spacing resamples the folder's
    # volumes too, and the annotation is kept on its own grid for scoring
    from vlsa.data.domains import open_reader

    _volume_dataset(tmp_path)
    reader = open_reader("folder", tmp_path, spacing=1.6, test_fraction=0.5)
    s = list(reader.samples("siteC", "train"))[1]
    assert s.image.shape == (1, 6, 5) and s.spacing == (1.6, 1.6)
    assert s.original_label.shape == (12, 10) and s.original_label.sum() == 9 and s.original_spacing == (pytest.approx(0.8),) * 2


def test_mixing_volumes_and_pngs_is_refused(tmp_path):
    _dataset(tmp_path)
    _volume_dataset(tmp_path)
    with pytest.raises(DataError, match="mixes NIfTI volumes and 2D images"):
        FolderReader(tmp_path)


def test_missing_classes_yaml(tmp_path):
    (tmp_path / "siteA" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="classes.yaml not found"):
        FolderReader(tmp_path)


# -- subjects (issue 30, row 7): the slices of one patient stay in one split --------------------

def _slices(root, patients=5, per_patient=10, classes_extra=""):
    (root / "classes.yaml").write_text("channels: 1\nclasses:\n  - name: lesion\n    value: 255\n" + classes_extra)
    for d in ("siteA", "siteB"):
        (root / d / "images").mkdir(parents=True)
        (root / d / "masks").mkdir(parents=True)
        for p in range(patients):
            for k in range(per_patient):
                img = np.full((8, 8), 10 * p + k, np.uint8)
                mask = np.zeros((8, 8), np.uint8)
                mask[2:5, 2:6] = 255
                Image.fromarray(img).save(root / d / "images" / f"pat{p}_{k}.png")
                Image.fromarray(mask).save(root / d / "masks" / f"pat{p}_{k}.png")
    return root


def _patients(reader, split):
    return {p.name.split("_")[0] for p, _ in reader.pairs("siteA", split)}


def test_a_subject_pattern_keeps_each_patients_slices_in_one_split(tmp_path):
    reader = FolderReader(_slices(tmp_path, classes_extra="subject_pattern: '^(?P<subject>.+)_\\d+$'\n"), test_fraction=0.4)
    train, test = _patients(reader, "train"), _patients(reader, "test")
    assert train and test and not train & test and train | test == {f"pat{p}" for p in range(5)}
    samples = list(reader.samples("siteA", "train"))
    assert {s.case_id for s in samples} == train  # the validation split holds out whole patients too
    assert "subject" in reader.test_split


def test_subjects_csv_names_the_subject_of_every_image(tmp_path):
    root = _slices(tmp_path)
    rows = [f"pat{p}_{k},patient-{p}" for p in range(5) for k in range(10)]
    (root / "subjects.csv").write_text("image,subject\n" + "\n".join(rows) + "\n")
    reader = FolderReader(root, test_fraction=0.4)
    assert not _patients(reader, "train") & _patients(reader, "test")
    (root / "subjects.csv").write_text("image,subject\n" + "\n".join(rows[1:]) + "\n")
    with pytest.raises(DataError, match=r"subjects\.csv: image siteA/images/pat0_0\.png has no row"):
        FolderReader(root).pairs("siteA", "train")


def test_without_a_subject_key_slices_scatter_and_verify_warns(tmp_path, caplog):
    import logging

    from vlsa.data.integrity import verify

    reader = FolderReader(_slices(tmp_path), test_fraction=0.4)
    assert _patients(reader, "train") & _patients(reader, "test")  # per image: patients on both sides
    with caplog.at_level(logging.WARNING):
        verify(reader, ["siteA"])
    (line,) = [r.getMessage() for r in caplog.records if "look like slices" in r.getMessage()]
    assert "siteA/images: image names look like slices of 5 subjects (e.g. pat0_0, pat0_1 share 'pat0')" in line
    assert "subjects.csv or classes.yaml subject_pattern" in line


def test_numbered_images_of_one_counter_are_not_called_slices(tmp_path, caplog):
    import logging

    from vlsa.data.integrity import verify

    _dataset(tmp_path, n=6)  # im0 ... im5: no separator, one prefix
    (tmp_path / "siteA" / "images" / "im0.png").rename(tmp_path / "siteA" / "images" / "img_000.png")
    (tmp_path / "siteA" / "masks" / "im0.png").rename(tmp_path / "siteA" / "masks" / "img_000.png")
    with caplog.at_level(logging.WARNING):
        verify(FolderReader(tmp_path), ["siteA"])
    assert not [r for r in caplog.records if "look like slices" in r.getMessage()]


def test_verify_says_which_subject_key_splits_the_images(tmp_path, capsys):
    """`vlsa verify` names the subject key in use (subjects.csv, subject_pattern, or none)."""
    from vlsa.cli import main

    (tmp_path / "csv").mkdir()
    (tmp_path / "plain").mkdir()
    root = _slices(tmp_path / "csv")
    (root / "subjects.csv").write_text("image,subject\n" + "\n".join(
        f"pat{p}_{k},patient-{p}" for p in range(5) for k in range(10)) + "\n")
    assert main(["verify", "--dataset", "folder", "--root", str(root)]) == 0
    assert "subject rule: subjects.csv (5 subjects): a subject's images stay in one split" in capsys.readouterr().out
    plain = _slices(tmp_path / "plain")
    assert main(["verify", "--dataset", "folder", "--root", str(plain)]) == 0
    assert "subject rule: none: each image is its own subject" in capsys.readouterr().out
