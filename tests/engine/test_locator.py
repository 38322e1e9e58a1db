"""The whole-photo disc locator as a training mode: its config, its zoomed training views, the run
folder `vlsa train` leaves in RUN/locator (resumable), and a locator trained on synthetic whole
photos finding discs placed at known positions and sizes, whole and in crops of other scales."""

import json

import numpy as np
import torch
import yaml

from tests.conftest import tiny_overrides
from tests.engine.synthetic_photos import draw_photo, ellipse
from vlsa import roi
from vlsa.config import build_config, load_config
from vlsa.data.sample import Sample
from vlsa.engine.locate import DiscLocator
from vlsa.engine.locator import (
    CROPS,
    SPAN,
    UNET_CHANNELS,
    has_locator,
    locator_config,
    locator_dir,
    photo_views,
    train_after_segmentation,
)
from vlsa.engine.run_folder import finished_steps
from vlsa.engine.train import train


def test_the_locator_config_is_the_runs_data_at_the_locator_size_with_a_unet():
    # consistency needs the views unzoomed (the packaged bank zooms them: config refuses both)
    config = load_config("drishti_sdg", ["data.root=/data", "train.locator.steps=77", "train.locator.size=96",
                                         "data.augment.view_zoom=false", "data.augment.consistency=0.5"])
    own = locator_config(config)
    assert own.train.mode == "locator" and not own.train.locator.enabled and own.train.steps == 77
    assert own.model.name == "unet" and own.model.unet.channels == UNET_CHANNELS and own.data.image_size == 96
    assert own.data.root == "/data" and own.data.roi_scale == config.data.roi_scale and own.seed == config.seed
    assert own.data.augment.consistency == 0 and own.data.augment.colour == config.data.augment.colour
    assert own.digest() != config.digest()


def test_train_locator_true_is_short_for_enabled_and_the_new_keys_keep_old_digests():
    assert build_config({"train": {"locator": True}}).train.locator.enabled
    assert build_config({}, ["train.locator=false"]).digest() == build_config({}).digest()
    assert load_config("drishti_sdg").train.locator.enabled  # the packaged fundus config trains one


def test_each_photo_is_seen_whole_and_zoomed_with_the_disc_inside_at_spans_from_0_1_to_0_7():
    shape, centre, radii = (150, 180), (50.0, 120.0), (15.0, 13.0)
    from tests.engine.synthetic_photos import Disc

    image = draw_photo(Disc(centre, radii, 0.5), shape).transpose(2, 0, 1).astype(np.float32) / 255
    label = ellipse(shape, centre, radii).astype(np.int64)
    views = photo_views(Sample(image, label, "d", "c", "c"), 64, CROPS, np.random.default_rng(0))
    assert len(views) == 1 + CROPS and all(v[0].shape == (3, 64, 64) and v[1].shape == (64, 64) for v in views)
    spans = []
    for _, mask in views[1:]:
        m = mask.numpy()
        top, left, bottom, right = roi.bounding_box(m)
        assert top > 0 and left > 0 and bottom < 64 and right < 64  # the whole disc inside the crop
        spans.append(max(bottom - top, right - left) / 64)
    assert SPAN[0] - 0.03 <= min(spans) and max(spans) <= SPAN[1] + 0.03 and max(spans) - min(spans) > 0.2


def test_an_interrupted_locator_is_finished_by_the_next_call(fundus_root, tmp_path):
    config = build_config({}, tiny_overrides(fundus_root, steps=3) + ["train.locator.enabled=true", "train.locator.size=32",
                                                                      "train.locator.steps=4"])
    out = tmp_path / "run"
    train(locator_config(config), locator_dir(out), stop_at=2, quiet=True)  # as an interruption leaves it
    assert finished_steps(locator_dir(out)) == 2 and not has_locator(out)
    train_after_segmentation(config, out, quiet=True)
    assert finished_steps(locator_dir(out)) == 4 and has_locator(out)
    info = json.loads((locator_dir(out) / "run.json").read_text())
    assert info["mask_values"] == [0, 1] and info["sources"] == ["Domain1"]  # the DoFE crops serve as photos


def _error(loc, centre, diameter):
    return np.hypot(loc.centre[0] - centre[0], loc.centre[1] - centre[1]) / diameter


def test_the_trained_locator_finds_discs_at_known_places_and_sizes(photo_run, photo_release):
    root, discs = photo_release
    saved = yaml.safe_load((locator_dir(photo_run) / "config.yaml").read_text())
    assert saved["train"]["mode"] == "locator" and has_locator(photo_run)
    locator = DiscLocator(locator_dir(photo_run))
    for name in [n for n in discs if int(n[-3:]) < 100]:  # the Test photos
        disc = discs[name]
        image = draw_photo(disc, seed=int(name[-3:])).transpose(2, 0, 1).astype(np.float32) / 255
        truth = roi.bounding_box(ellipse(image.shape[1:], disc.centre, disc.radii))
        diameter = max(truth[2] - truth[0], truth[3] - truth[1])
        centre = ((truth[0] + truth[2]) / 2, (truth[1] + truth[3]) / 2)
        loc = locator.locate(image)
        assert loc.found and _error(loc, centre, diameter) < 0.25 and 0.6 < loc.diameter / diameter < 1.6
        # the same disc in a crop where it spans half the side, enlarged 2 x
        box = roi.square_box(centre, 2 * diameter, 1.0)
        crop = torch.nn.functional.interpolate(torch.from_numpy(roi.crop(image, box))[None], scale_factor=2,
                                               mode="bilinear")[0].numpy()
        inner = ((centre[0] - box[0]) * 2, (centre[1] - box[1]) * 2)
        zoomed = locator.locate(crop)
        assert zoomed.found and _error(zoomed, inner, 2 * diameter) < 0.25



def test_the_next_command_is_printed_once_the_locator_has_trained_not_before(fundus_root, tmp_path, capsys):
    """A new user ran `vlsa evaluate` on the 'next:' line the segmenter printed, while the locator
    was still training: with a locator to follow, the segmenter says so and the locator says next."""
    config = build_config({}, tiny_overrides(fundus_root, steps=2) + ["train.locator.enabled=true", "train.locator.size=32",
                                                                      "train.locator.steps=2"])
    out = tmp_path / "run"
    train(config, out)
    lines = capsys.readouterr().out.splitlines()
    ahead = [i for i, line in enumerate(lines) if "disc locator trains next" in line]
    located = [i for i, line in enumerate(lines) if line.startswith("locator: best validation disc Dice")]
    assert len(ahead) == 1 and len(located) == 1 and ahead[0] < located[0]
    assert [line for line in lines if line.startswith("next: ")] == [f"next: vlsa evaluate --run {out} --report"]
    assert lines[located[0] + 1] == f"next: vlsa evaluate --run {out} --report"
