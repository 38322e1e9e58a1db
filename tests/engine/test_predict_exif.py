"""`vlsa predict` on an EXIF-rotated photograph (issue 30, row 6): the label PNG is on the input's
stored pixel grid and carries the same EXIF orientation, so "same size as the input" holds for the
stored pixels and a viewer turns label and image alike."""

import shutil

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.conftest import tiny_overrides
from vlsa.config import build_config
from vlsa.data.io import _orient, load_mask, to_stored_grid
from vlsa.engine.predict import predict_paths
from vlsa.engine.train import train


@pytest.mark.parametrize("orientation", range(1, 9))
def test_to_stored_grid_undoes_every_exif_orientation(orientation):
    a = np.arange(4 * 6).reshape(4, 6)
    assert np.array_equal(to_stored_grid(_orient(a, orientation), orientation), a)


def test_prediction_of_a_rotated_jpeg_is_on_its_stored_grid_with_its_tag(fundus_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(fundus_root, data)
    run = train(build_config({}, tiny_overrides(data, steps=3)), tmp_path / "run", quiet=True)
    photo = Image.open(sorted((data / "Domain2" / "test" / "ROIs" / "image").glob("*.png"))[0]).convert("RGB")
    stored = photo.resize((128, 96))  # stored 128 x 96 (W x H), displayed 96 x 128 (orientation 6)
    exif = stored.getexif()
    exif[0x0112] = 6
    (tmp_path / "rotated").mkdir()
    stored.save(tmp_path / "rotated" / "eye.jpg", exif=exif, quality=95)
    (tmp_path / "upright").mkdir()  # the same pixels as displayed, without a tag
    ImageOps.exif_transpose(Image.open(tmp_path / "rotated" / "eye.jpg")).save(tmp_path / "upright" / "eye.png")

    (out,) = predict_paths(run, [str(tmp_path / "rotated" / "eye.jpg")], tmp_path / "out", quiet=True)
    (ref,) = predict_paths(run, [str(tmp_path / "upright" / "eye.png")], tmp_path / "ref", quiet=True)
    with Image.open(out) as label:
        assert label.size == (128, 96) and label.getexif().get(0x0112) == 6  # the stored grid, the same tag
        stored_labels = np.asarray(label)
    displayed = np.asarray(Image.open(ref))
    assert displayed.shape == (128, 96)
    assert np.array_equal(stored_labels, to_stored_grid(displayed, 6))
    assert np.array_equal(load_mask(out), displayed)  # read back as viewers show it: the displayed map
    assert np.array_equal(np.asarray(ImageOps.exif_transpose(Image.open(out))), displayed)
