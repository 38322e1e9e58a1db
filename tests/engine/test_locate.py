"""From the locator's disc probability map to the disc on the photo: the component with the most
probability mass, its bounding box mapped back through the letterbox, and the confidence."""

import numpy as np
import pytest

from vlsa.engine.letterbox import Letterbox
from vlsa.engine.locate import find_disc


def _blob(prob, top, left, side, value):
    prob[top : top + side, left : left + side] = value


def test_one_disc_maps_back_to_the_photo_with_its_diameter():
    box = Letterbox((400, 800), 100)  # scale 1/8, photo rows 25..75 on the canvas
    prob = np.zeros((100, 100))
    _blob(prob, 40, 60, 6, 0.9)  # canvas rows 40-46, cols 60-66
    loc = find_disc(prob, box)
    assert loc.found
    assert loc.centre == pytest.approx(((43 - 25) * 8, 63 * 8))
    assert loc.diameter == pytest.approx(48)
    assert loc.confidence == pytest.approx(0.9)


def test_the_larger_candidate_wins_and_two_candidates_halve_the_confidence():
    box = Letterbox((100, 100), 100)
    prob = np.zeros((100, 100))
    _blob(prob, 10, 10, 8, 1.0)
    _blob(prob, 60, 60, 4, 1.0)  # a quarter of the mass
    loc = find_disc(prob, box)
    assert loc.centre == pytest.approx((14, 14)) and loc.confidence == pytest.approx(64 / 80)
    _blob(prob, 60, 60, 8, 1.0)  # now as large as the first
    assert find_disc(prob, box).confidence == pytest.approx(0.5)


def test_a_faint_disc_is_found_with_a_low_confidence_and_nothing_is_not_found():
    box = Letterbox((100, 100), 100)
    prob = np.full((100, 100), 0.01)
    _blob(prob, 20, 30, 10, 0.3)  # below 0.5 everywhere: thresholded at half the peak
    loc = find_disc(prob, box)
    assert loc.found and loc.centre == pytest.approx((25, 35)) and loc.diameter == pytest.approx(10)
    assert loc.confidence == pytest.approx(0.3)
    empty = find_disc(np.full((100, 100), 0.01), box)
    assert not empty.found and empty.confidence == 0 and np.isnan(empty.diameter)
