"""Issue 25, row 6: training records what its images looked like (run.json `training_inputs`) and
`vlsa predict` warns, one line per image, when an input's size, aspect or predicted cover is far from
it (a whole fundus photograph given to a model trained on disc-centred ROIs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tiny_overrides
from vlsa.cli import main
from vlsa.config import build_config
from vlsa.data.spec import FUNDUS
from vlsa.engine.training_inputs import far_from_training

PROFILE = {"images": 10, "height": [60, 80], "width": [60, 80], "aspect": [1.0, 1.0],
           "cover": {"disc": [0.10, 0.30], "cup": [0.02, 0.10]}}


def _labels(h, w, disc=0.2, cup=0.05):
    """An H x W fundus label map (0 background, 1 rim, 2 cup) with the given region covers."""
    flat = np.zeros(h * w, np.int64)
    flat[: round(disc * h * w)] = 1
    flat[: round(cup * h * w)] = 2
    return flat.reshape(h, w)


def test_an_input_like_the_training_images_is_close():
    assert far_from_training(_labels(70, 70), PROFILE, FUNDUS) == []
    assert far_from_training(_labels(40, 150), None, FUNDUS) == []  # a run made before the profile existed
    assert far_from_training(_labels(160, 160), PROFILE, FUNDUS) == []  # twice the largest side: not yet far


@pytest.mark.parametrize("h,w,disc,cup,expected", [
    (1944, 1944, 0.2, 0.05, ["1944 x 1944 px (height x width), trained on 60-80 x 60-80 px"]),
    (25, 25, 0.2, 0.05, ["25 x 25 px (height x width), trained on 60-80 x 60-80 px"]),
    (64, 96, 0.2, 0.05, ["aspect ratio 1.50 (width / height), trained on 1.00-1.00"]),
    (70, 70, 0.65, 0.05, ["predicted disc covers 65.0% of the image, 10.0-30.0% in training"]),  # glare as disc
    (70, 70, 0.03, 0.005, ["predicted disc covers 3.0% of the image, 10.0-30.0% in training",
                           "predicted cup covers 0.5% of the image, 2.0-10.0% in training"]),  # a small disc
])
def test_far_inputs_say_why(h, w, disc, cup, expected):
    assert far_from_training(_labels(h, w, disc, cup), PROFILE, FUNDUS) == expected


def test_a_region_absent_from_training_has_no_range_to_compare_with():
    unannotated = {**PROFILE, "cover": {"disc": [0.10, 0.30], "cup": [0.0, 0.0]}}
    assert far_from_training(_labels(70, 70, 0.25, 0.25), unannotated, FUNDUS) == []
    assert far_from_training(_labels(70, 70, 0.25, 0.25), PROFILE, FUNDUS) == [
        "predicted cup covers 25.0% of the image, 2.0-10.0% in training"]


@pytest.fixture(scope="module")
def run(fundus_root, tmp_path_factory):
    from vlsa.engine.train import train

    return train(build_config({}, tiny_overrides(fundus_root, steps=2) + ["train.threads=1"]),
                 tmp_path_factory.mktemp("runs") / "roi", quiet=True)


def test_training_records_its_inputs(run):
    from vlsa.engine.train import prepare_data

    recorded = json.loads((run / "run.json").read_text())["training_inputs"]
    train_set = prepare_data(build_config({}, tiny_overrides(json.loads((run / "run.json").read_text())
                                                                   ["dataset_root"], steps=2))).train_set
    labels = train_set.labels.numpy()
    assert recorded["images"] == len(labels) == json.loads((run / "run.json").read_text())["train_samples"]
    assert recorded["height"] == recorded["width"] == [64, 64] and recorded["aspect"] == [1.0, 1.0]
    for region, indices in FUNDUS.regions.items():
        cover = np.isin(labels, indices).mean(axis=(1, 2))
        assert recorded["cover"][region] == pytest.approx([cover.min(), cover.max()], abs=1e-5)
    assert 0 < recorded["cover"]["cup"][0] < recorded["cover"]["disc"][1] < 1


def _photo(path, h, w):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def test_predict_warns_about_a_whole_photo_one_line_per_image(run, fundus_root, tmp_path, capsys):
    photos = tmp_path / "in"
    photos.mkdir()
    _photo(photos / "whole.png", 192, 288)  # 3:2, three times the ROI side
    roi = next((fundus_root / "Domain2" / "test" / "ROIs" / "image").iterdir())
    (photos / f"roi{roi.suffix}").write_bytes(roi.read_bytes())
    assert main(["predict", "--run", str(run), "--input", str(photos), "--output", str(tmp_path / "out")]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vlsa: warning:")]
    whole = [line for line in lines if "whole.png" in line]
    assert len(whole) == 1 and "192 x 288 px (height x width), trained on 64 x 64 px" in whole[0]
    assert "aspect ratio 1.50 (width / height), trained on 1.00-1.00" in whole[0]
    # the training site's own kind of image: whatever the barely trained model predicts, its size is familiar
    assert not any("roi" in line and "px (height x width)" in line for line in lines)
    assert (tmp_path / "out" / "whole.png").is_file()  # a warning, never a refusal


def test_many_far_inputs_are_summarised(run, tmp_path, capsys):
    photos = tmp_path / "in"
    photos.mkdir()
    for i in range(7):
        _photo(photos / f"p{i}.png", 200, 300)
    assert main(["predict", "--run", str(run), "--input", str(photos), "--output", str(tmp_path / "out")]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vlsa: warning:")]
    assert len(lines) == 6 and lines[-1] == ("vlsa: warning: 7 of 7 images are far from the training images "
                                            "(5 named above)")


def test_real_whole_drishti_photos_are_flagged_for_a_model_trained_on_dofe_crops(realdata, tmp_path, capsys):
    """The issue's case on the real data: a model trained on the DoFE disc-centred crops (800 x 800)
    given Drishti-GS1 whole photographs (about 1024 x 876)."""
    from vlsa.engine.train import train

    crops = realdata / "dofe-samples"
    overrides = tiny_overrides(crops, source="[Domain2,Domain3,Domain4]", steps=1) + ["train.threads=1",
                                                                                      "data.val_fraction=0.0"]
    run = train(build_config({}, overrides), tmp_path / "run", quiet=True)
    assert json.loads((run / "run.json").read_text())["training_inputs"]["height"] == [800, 800]
    photos = sorted((realdata / "drishti-gs1" / "Training" / "Images").glob("*.jpg"))[:2]
    crop = next((crops / "Domain1" / "test" / "ROIs" / "image").glob("*.png"))
    assert main(["predict", "--run", str(run), "--input", *map(str, photos), str(crop),
                 "--output", str(tmp_path / "out")]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vlsa: warning:")]
    for photo in photos:
        (line,) = [line for line in lines if photo.name in line]
        h, w = np.asarray(Image.open(photo)).shape[:2]
        assert f"aspect ratio {w / h:.2f} (width / height), trained on 1.00-1.00" in line
    assert not any(crop.name in line and ("px (height x width)" in line or "aspect" in line) for line in lines)


def test_a_colour_photo_given_to_a_grey_model_is_named_a_grey_one_saved_as_rgb_is_not(cardiac_root, tmp_path, capsys):
    """A fundus photograph into a cardiac MRI model is converted to luma and segmented as a grey image it
    never saw: warned, naming the file; an MRI slice saved as RGB (R = G = B) or through JPEG is grey."""
    from vlsa.engine.train import train

    run = train(build_config({}, tiny_overrides(cardiac_root, dataset="mms", source="A", steps=1) + ["train.threads=1"]),
                tmp_path / "grey", quiet=True)
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(1)
    photo = np.stack([rng.integers(120, 255, (64, 64)), rng.integers(30, 90, (64, 64)), rng.integers(0, 40, (64, 64))], -1)
    Image.fromarray(photo.astype(np.uint8)).save(inputs / "fundus.png")
    grey = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    Image.fromarray(np.stack([grey] * 3, -1)).save(inputs / "slice_rgb.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(inputs / "slice.jpg", quality=75)
    assert main(["predict", "--run", str(run), "--input", str(inputs), "--output", str(tmp_path / "out")]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "colour picture" in line]
    assert len(lines) == 1 and "fundus.png" in lines[0] and "trained on single-channel (grey) images" in lines[0]
    assert (tmp_path / "out" / "fundus.png").is_file()  # a warning, never a refusal
    assert far_from_training(_labels(64, 64), None, FUNDUS, colour=True) == []  # an RGB model takes colour
