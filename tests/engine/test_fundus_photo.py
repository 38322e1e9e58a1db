"""The whole-photo pipeline (locate -> canonical ROI -> segment -> paste back -> measure) with
oracle models that read the drawn disc and cup from the image's colour, so what is asserted is the
geometry: the map comes back on the photo's own grid, in the canonical ROI, with the drawn ratio,
from a whole photo and from a crop of another scale alike."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from tests.engine.synthetic_photos import SHAPE, Disc, draw_photo, ellipse
from vlsa import roi
from vlsa.config import build_config
from vlsa.data.spec import FUNDUS
from vlsa.engine.fundus_photo import MEASURES, PhotoSegmenter, measures, measures_csv
from vlsa.engine.locate import DiscLocator, Location


class DiscOracle(torch.nn.Module):
    """B x 3 x S x S images in [0, 1] -> logits: disc where the green channel is bright (> 0.5),
    and with `cup`, cup where it is brighter still (> 0.85), as the synthetic photos draw them."""

    def __init__(self, cup: bool):
        super().__init__()
        self.cup = cup

    def forward(self, x):
        g = x[:, 1:2]
        disc = 40 * (g - 0.5)
        parts = [torch.zeros_like(g), disc] + ([disc + 60 * (g - 0.85)] if self.cup else [])
        return torch.cat(parts, dim=1)


def _segmenter(size=64, locator_size=64, scale=2.5):
    seg = PhotoSegmenter.__new__(PhotoSegmenter)
    seg.config = build_config({}, ["data.dataset=drishti", f"data.image_size={size}", "data.normalise=none",
                                   "model.name=unet", f"data.roi_scale={scale}"])
    seg.spec, seg.model, seg.device, seg.scale = FUNDUS, DiscOracle(cup=True).eval(), torch.device("cpu"), scale
    loc = DiscLocator.__new__(DiscLocator)
    loc.config = build_config({}, [f"data.image_size={locator_size}", "data.normalise=none"])
    loc.model, loc.device, loc.size = DiscOracle(cup=False).eval(), torch.device("cpu"), locator_size
    seg.locator = loc
    return seg


def _photo(disc, shape=SHAPE):
    return draw_photo(disc, shape).transpose(2, 0, 1).astype(np.float32) / 255


def _truth(disc, shape=SHAPE):
    d = ellipse(shape, disc.centre, disc.radii)
    c = ellipse(shape, disc.centre, tuple(disc.cdr * r for r in disc.radii))
    return d, c


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


DISCS = [Disc((60, 50), (14, 13), 0.5), Disc((90, 130), (11, 10), 0.65), Disc((75, 95), (16, 15), 0.35)]


@pytest.mark.parametrize("disc", DISCS)
def test_a_whole_photo_comes_back_on_its_own_grid_in_the_canonical_roi_with_the_drawn_ratio(disc):
    result = _segmenter().segment(_photo(disc))
    disc_true, cup_true = _truth(disc)
    assert result.labels.shape == SHAPE and result.location.found
    assert _dice(result.labels >= 1, disc_true) > 0.93 and _dice(result.labels == 2, cup_true) > 0.85
    # the refined ROI is the one the reader cuts around the reference disc (within a pixel)
    assert max(abs(a - b) for a, b in zip(result.box, roi.disc_box(disc_true, 2.5))) <= 1
    m = measures(result.labels, result.location)
    assert m["vcdr"] == pytest.approx(disc.cdr, abs=0.06)
    assert m["disc_y"] == pytest.approx(disc.centre[0], abs=1) and m["disc_x"] == pytest.approx(disc.centre[1], abs=1)


def test_a_crop_of_another_scale_is_brought_to_the_same_roi_and_ratio():
    disc = DISCS[0]
    photo = _photo(disc)
    # a DoFE-like crop: the disc spans 0.6 of the side, enlarged 3 x
    box = roi.disc_box(_truth(disc)[0], 1 / 0.6)
    cut = torch.nn.functional.interpolate(torch.from_numpy(roi.crop(photo, box))[None], scale_factor=3,
                                          mode="bilinear")[0].numpy()
    whole, crop = _segmenter().segment(photo), _segmenter().segment(cut)
    assert crop.labels.shape == cut.shape[-2:]
    v_whole, v_crop = (measures(r.labels, r.location)["vcdr"] for r in (whole, crop))
    assert v_crop == pytest.approx(v_whole, abs=0.04) and v_crop == pytest.approx(disc.cdr, abs=0.06)
    # the ROI is 2.5 disc diameters whatever the input's scale (it leaves the crop: padded)
    side = crop.box[2] - crop.box[0]
    assert side == pytest.approx(2.5 * 3 * 2 * disc.radii[0], rel=0.08) and side > cut.shape[-1]


@pytest.mark.parametrize("disc", [*DISCS, Disc((20, 30), (14, 13), 0.5)])  # the last one at the photo's edge
def test_the_mapped_back_map_has_one_disc_with_the_cup_inside_and_nothing_outside_the_roi(disc):
    photo = _photo(disc)
    # a bright exudate-like spot beside the disc, inside its ROI: the oracle reads it as disc and cup
    spot = ellipse(SHAPE, (disc.centre[0], disc.centre[1] + 1.6 * disc.radii[1]), (3, 3))
    photo[:, spot] = 1.0
    labels, box = (lambda r: (r.labels, r.box))(_segmenter().segment(photo))
    disc_mask, cup = labels >= 1, labels == 2
    assert ndimage.label(disc_mask)[1] == 1 and ndimage.label(cup)[1] == 1
    assert not (cup & ~disc_mask).any()
    outside = np.ones(SHAPE, bool)
    outside[max(box[0], 0):box[2], max(box[1], 0):box[3]] = False
    assert not labels[outside].any()


def test_no_disc_gives_an_empty_map_and_empty_measures():
    black = np.zeros((3, *SHAPE), np.float32)
    result = _segmenter().segment(black)
    assert not result.location.found and result.box is None and not result.labels.any()
    row = {"image": "black.png", **measures(result.labels, result.location)}
    assert math.isnan(row["vcdr"]) and row["disc_area_px"] == 0 and row["locator_confidence"] == 0
    assert measures_csv([row]).splitlines()[1] == "black.png,,,0,0,,,,0.0000"


def test_measures_of_drawn_ellipses_pasted_into_a_photo():
    # a disc 41 rows x 31 cols with a cup 21 x 11: vCDR 21/41, hCDR 11/31
    labels = np.zeros((60, 60), np.uint8)
    labels[ellipse((60, 60), (30, 30), (20.5, 15.5))] = 1
    labels[ellipse((60, 60), (30, 30), (10.5, 5.5))] = 2
    photo = roi.paste(labels, (100, 200, 160, 260), (300, 400))
    m = measures(photo, Location(True, (130, 230), 41, 0.9))
    assert m["vcdr"] == pytest.approx(21 / 41) and m["hcdr"] == pytest.approx(11 / 31)
    assert (m["disc_y"], m["disc_x"]) == (130, 230) and m["disc_area_px"] == int((labels >= 1).sum())
    assert m["acdr"] == pytest.approx((labels == 2).sum() / (labels >= 1).sum())
    header = measures_csv([{"image": "a.png", **m}]).splitlines()[0]
    assert header.split(",") == list(MEASURES) == ["image", "disc_x", "disc_y", "disc_area_px", "cup_area_px",
                                                   "vcdr", "hcdr", "acdr", "locator_confidence"]
