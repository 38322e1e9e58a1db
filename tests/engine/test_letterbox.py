"""The letterbox the disc locator reads a photo through: aspect kept, centred, padded with 0, and
canvas coordinates mapped back to the photo's own pixels."""

import numpy as np
import pytest

from vlsa.engine.letterbox import Letterbox, letterbox, letterbox_mask


def test_a_wide_photo_fills_the_width_and_is_centred_with_zero_rows_above_and_below():
    image = np.ones((3, 60, 100), np.float32)
    canvas, box = letterbox(image, 50)
    assert canvas.shape == (3, 50, 50) and box.inner == (30, 50) and box.offset == (10, 0)
    assert canvas[:, :10].abs().max() == 0 and canvas[:, 40:].abs().max() == 0
    assert canvas[:, 10:40].min() == pytest.approx(1.0)


@pytest.mark.parametrize("shape", [(875, 1024), (800, 800), (300, 120)])
def test_canvas_points_map_back_onto_the_photo(shape):
    box = Letterbox(shape, 128)
    (h, w), (r0, c0) = box.inner, box.offset
    # the canvas's photo corners are the photo's corners, its centre the photo's centre
    assert box.to_photo(r0, c0) == pytest.approx((0, 0))
    assert box.to_photo(r0 + h, c0 + w) == pytest.approx(shape)
    assert box.to_photo(r0 + h / 2, c0 + w / 2) == pytest.approx((shape[0] / 2, shape[1] / 2))
    assert box.photo_px_per_canvas_px() == pytest.approx((shape[0] / h, shape[1] / w))


def test_a_mask_keeps_its_place_and_area_on_the_canvas():
    mask = np.zeros((200, 400), bool)
    mask[80:120, 100:140] = True  # 40 x 40 px at (100, 120)
    small = letterbox_mask(mask, 100).numpy()  # scale 1/4: 10 x 10 at canvas (25 + 25, 30)
    rows, cols = np.nonzero(small)
    assert small.sum() == 100 and (rows.min(), rows.max(), cols.min(), cols.max()) == (45, 54, 25, 34)
