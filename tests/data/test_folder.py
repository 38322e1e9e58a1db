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
    assert len(train) == 3 and len(test) == 1
    assert train[0].image.shape == (1, 16, 20) and train[0].label.sum() == 30


def test_unknown_mask_values(tmp_path):
    _dataset(tmp_path, mask_value=200)
    with pytest.raises(DataError, match=r"mask values \[200\] not in classes\.yaml"):
        list(FolderReader(tmp_path).samples("siteA", "train"))


def test_nifti_volumes_are_sliced(tmp_path):
    _dataset(tmp_path)
    vol = np.random.default_rng(0).uniform(size=(12, 10, 3)).astype(np.float32)
    mask = np.zeros((12, 10, 3), np.uint8)
    mask[2:5, 2:5, 1] = 255
    for d in ("siteC",):
        (tmp_path / d / "images").mkdir(parents=True)
        (tmp_path / d / "masks").mkdir(parents=True)
        for i in range(2):
            nib.save(nib.Nifti1Image(vol, np.diag([0.8, 0.8, 3.0, 1])), str(tmp_path / d / "images" / f"v{i}.nii.gz"))
            nib.save(nib.Nifti1Image(mask, np.diag([0.8, 0.8, 3.0, 1])), str(tmp_path / d / "masks" / f"v{i}.nii.gz"))
    reader = FolderReader(tmp_path, test_fraction=0.5)
    slices = list(reader.samples("siteC", "train"))
    assert len(slices) == 3 and slices[1].label.sum() == 9
    assert slices[0].spacing == (pytest.approx(0.8), pytest.approx(0.8)) and slices[0].volume_id == slices[2].volume_id


def test_missing_classes_yaml(tmp_path):
    (tmp_path / "siteA" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="classes.yaml not found"):
        FolderReader(tmp_path)
