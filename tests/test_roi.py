import numpy as np
import pytest

from vlsa.roi import bounding_box, crop, disc_box, disc_diameter, paste, square_box


def _ellipse(shape, centre, radii):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1


def test_disc_box_is_centred_and_scaled_by_the_longer_extent():
    mask = _ellipse((200, 300), (80, 150), (30, 20))  # taller than wide: 61 x 41 px
    assert bounding_box(mask) == (50, 130, 111, 171)
    assert disc_diameter(mask) == 61
    top, left, bottom, right = disc_box(mask, 2.5)
    assert bottom - top == right - left == round(2.5 * 61)
    # the disc's bounding-box centre is the crop's centre to within half a pixel
    assert abs((top + bottom) / 2 - (50 + 111) / 2) <= 0.5
    assert abs((left + right) / 2 - (130 + 171) / 2) <= 0.5


def test_crop_then_paste_back_is_exact_also_past_the_edges():
    rng = np.random.default_rng(0)
    photo = rng.integers(1, 255, size=(3, 40, 50), dtype=np.uint8)
    for box in [(5, 6, 25, 26), (-7, -3, 13, 17), (30, 40, 52, 62), (-10, -10, 60, 70)]:
        cut = crop(photo, box)
        assert cut.shape == (3, box[2] - box[0], box[3] - box[1])
        back = paste(cut, box, photo.shape[-2:])
        inside = np.zeros((40, 50), bool)
        inside[max(box[0], 0):box[2], max(box[1], 0):box[3]] = True
        assert np.array_equal(back[:, inside], photo[:, inside])
        assert not back[:, ~inside].any()  # fill outside the box
    # padding where the box leaves the photo, with the fill value
    cut = crop(photo[0], (-2, -2, 3, 3), fill=7)
    assert np.all(cut[:2] == 7) and np.all(cut[:, :2] == 7) and np.array_equal(cut[2:, 2:], photo[0, :3, :3])


def test_paste_refuses_a_crop_of_another_size_and_boxes_off_the_photo():
    with pytest.raises(ValueError, match="does not fit the box"):
        paste(np.zeros((4, 5)), (0, 0, 4, 4), (10, 10))
    with pytest.raises(ValueError, match="does not overlap"):
        crop(np.zeros((10, 10)), (20, 20, 30, 30))
    with pytest.raises(ValueError, match="empty mask"):
        disc_box(np.zeros((10, 10), bool), 2.5)


def test_square_box_around_a_found_centre_is_the_rule_disc_box_applies_to_a_mask():
    mask = _ellipse((200, 300), (80, 150), (30, 20))
    top, left, bottom, right = bounding_box(mask)
    found = ((top + bottom) / 2, (left + right) / 2)
    assert square_box(found, disc_diameter(mask), 2.5) == disc_box(mask, 2.5)
    # a centre between pixels: the box's first pixel is the nearest one to centre - side / 2
    assert square_box((10.3, 20.7), 4, 2.5) == (5, 16, 15, 26)
    with pytest.raises(ValueError, match="diameter must be > 0"):
        square_box((10, 10), 0, 2.5)
