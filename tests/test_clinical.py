"""Clinical indices on drawn shapes of known size, and Bland-Altman numbers on a hand-computed case."""

import math

import numpy as np
import pytest

from vlsa.clinical import (
    agreement,
    cardiac_indices,
    choose_ed_es,
    cup_to_disc,
    inter_expert_reference,
    lv_ring_fraction,
    lv_slices_included,
    volume_ml,
)


def ellipse(shape, centre, radii):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1


def test_vcdr_of_drawn_ellipses_is_their_height_ratio():
    disc = ellipse((200, 200), (100, 100), (40.5, 30.5))  # 81 rows, 61 columns
    cup = ellipse((200, 200), (100, 100), (20.5, 24.5))  # 41 rows, 49 columns
    r = cup_to_disc(disc, cup)
    assert r["vcdr"] == pytest.approx(41 / 81)
    assert r["hcdr"] == pytest.approx(49 / 61)
    assert r["acdr"] == pytest.approx(cup.sum() / disc.sum())


def test_cdr_without_a_disc_is_missing_and_without_a_cup_is_zero():
    empty = np.zeros((10, 10), bool)
    assert all(math.isnan(v) for v in cup_to_disc(empty, empty).values())
    disc = ellipse((10, 10), (5, 5), (3, 3))
    assert cup_to_disc(disc, empty) == {"vcdr": 0.0, "hcdr": 0.0, "acdr": 0.0}


def cylinder(z, radius, shape=(64, 64)):
    return np.repeat(ellipse(shape, (32, 32), (radius, radius))[None], z, axis=0)


def test_cardiac_indices_of_drawn_cylinders_with_known_spacing():
    spacing = (10.0, 1.5, 1.5)  # mm: slice, row, col
    ed = np.zeros((8, 64, 64), np.int64)
    es = np.zeros_like(ed)
    ed[cylinder(8, 20)] = 2  # myocardium ring: disc r=20 minus the LV disc r=14
    ed[cylinder(8, 14)] = 1
    es[cylinder(8, 10)] = 1
    ed[:, :5, :5] = 3
    es[:, :5, :3] = 3
    voxel_ml = 10 * 1.5 * 1.5 / 1000
    lv_ed, lv_es = (ed == 1).sum() * voxel_ml, (es == 1).sum() * voxel_ml
    out = cardiac_indices(ed, es, spacing).values
    assert out["lv_edv"] == pytest.approx(lv_ed) and out["lv_esv"] == pytest.approx(lv_es)
    assert out["lv_sv"] == pytest.approx(lv_ed - lv_es)
    assert out["lv_ef"] == pytest.approx(100 * (lv_ed - lv_es) / lv_ed)
    assert out["lv_mass"] == pytest.approx((ed == 2).sum() * voxel_ml * 1.05)
    assert out["rv_ef"] == pytest.approx(100 * (25 - 15) / 25)
    # a cylinder's volume: pi r^2 h within the pixelisation error
    assert volume_ml(cylinder(8, 14), spacing) == pytest.approx(math.pi * (14 * 1.5) ** 2 * 80 / 1000, rel=0.03)


def test_without_spacing_only_the_ejection_fraction_is_given():
    ed = np.zeros((2, 16, 16), np.int64)
    ed[:, 4:12, 4:12] = 1
    es = np.zeros_like(ed)
    es[:, 6:10, 6:10] = 1
    res = cardiac_indices(ed, es, None, rv=False)
    assert res.values["lv_ef"] == pytest.approx(75.0)
    assert math.isnan(res.values["lv_edv"]) and "spacing unknown" in res.refused["lv_edv"]
    assert res.refused["rv_ef"] == "RV not annotated" and math.isnan(res.values["rv_ef"])
    assert "lv_ef" not in res.refused


def test_ed_es_are_the_phases_of_largest_and_smallest_lv():
    assert choose_ed_es([90.0, 120.0, 80.0, 50.0, 70.0]) == (1, 3)
    with pytest.raises(ValueError, match="two phases"):
        choose_ed_es([0.0, 0.0])


def test_bland_altman_numbers_on_a_hand_computed_case():
    pred, true = [52.0, 60.0, 45.0, 70.0], [50.0, 61.0, 40.0, 70.0]
    # differences 2, -1, 5, 0: bias 1.5, SD sqrt(((.5)^2 + 2.5^2 + 3.5^2 + 1.5^2) / 3) = sqrt(7)
    out = agreement(pred, true)
    assert out["n"] == 4 and out["bias"] == pytest.approx(1.5) and out["mae"] == pytest.approx(2.0)
    assert out["sd"] == pytest.approx(math.sqrt(7))
    assert out["loa_low"] == pytest.approx(1.5 - 1.96 * math.sqrt(7))
    assert out["r"] == pytest.approx(np.corrcoef(pred, true)[0, 1])
    assert agreement([1.0, float("nan")], [1.0, 2.0])["n"] == 1


def test_inter_expert_reference_is_each_expert_against_the_others():
    readings = [[0.4, 0.5, 0.6, 0.5], [0.7, 0.7, 0.7, 0.7]]
    # image 1: |0.4-0.5333|, |0.5-0.5|, |0.6-0.4667|, |0.5-0.5| = 0.1333, 0, 0.1333, 0; image 2: all 0
    assert inter_expert_reference(readings)["mae"] == pytest.approx(2 * (0.4 / 3) / 8)


def test_inter_expert_reference_on_drishti_gs1_is_the_published_0_064(realdata):
    files = sorted((realdata / "drishti-gs1").glob("*/GT/*/*_cdrValues.txt"))
    readings = [[float(v) for v in f.read_text().split()] for f in files]
    assert len(readings) == 101
    assert inter_expert_reference(readings)["mae"] == pytest.approx(0.064, abs=0.0015)


def test_bland_altman_png_is_written(tmp_path):
    from PIL import Image

    from vlsa.report.agreement import bland_altman_png

    png = bland_altman_png({"lv_ef": ([50, 60, 55], [52, 58, 56])}, tmp_path / "ba.png", {"lv_ef": "%"})
    assert Image.open(png).size[0] > 100


def ringed_slice(shape=(32, 32), lv_radius=6, open_quadrants=0):
    """One short-axis slice: an LV disc inside a myocardial ring, with `open_quadrants` quarter(s)
    of the ring removed (the basal slice opening into the atrium / outflow tract)."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    r2 = (rows - 16) ** 2 + (cols - 16) ** 2
    lab = np.zeros(shape, np.int64)
    lab[r2 <= (lv_radius + 3) ** 2] = 2
    lab[r2 <= lv_radius ** 2] = 1
    if open_quadrants >= 1:
        lab[(lab == 2) & (rows < 16) & (cols >= 16)] = 0
    if open_quadrants >= 2:
        lab[(lab == 2) & (rows < 16) & (cols < 16)] = 0
    return lab


def test_lv_ring_fraction_of_a_closed_and_a_half_open_ring():
    assert lv_ring_fraction(ringed_slice()) == pytest.approx(1.0)
    half = lv_ring_fraction(ringed_slice(open_quadrants=2))
    assert 0.4 < half < 0.65  # half of the LV border has no myocardium beside it
    assert 0.65 < lv_ring_fraction(ringed_slice(open_quadrants=1)) < 0.85
    assert lv_ring_fraction(np.zeros((8, 8), np.int64)) == 1.0


def test_lv_slices_included_drops_unringed_end_slices_only():
    # base: two open slices (half, then a quarter open); middle: one open slice between ringed ones
    stack = np.stack([ringed_slice(open_quadrants=2), ringed_slice(open_quadrants=1), ringed_slice(),
                      ringed_slice(open_quadrants=2), ringed_slice(), ringed_slice(lv_radius=3, open_quadrants=2)])
    out = lv_slices_included(stack, 0.9)
    lv_per_slice = [(s == 1).sum() for s in out]
    assert lv_per_slice[0] == lv_per_slice[1] == 0  # the base, up to the first ringed slice
    assert lv_per_slice[5] == 0  # the apex end
    assert lv_per_slice[3] == (stack[3] == 1).sum() > 0  # an inner slice is never touched
    assert np.array_equal(out[out != 0], stack[out != 0]) and ((out == 0) | (out == stack)).all()
    assert ((stack == 1) & (out == 0)).sum() == sum((stack[z] == 1).sum() for z in (0, 1, 5))
    assert (out == 2).sum() == (stack == 2).sum()  # the myocardium (mass) is kept
    # a looser ring keeps the quarter-open slice; 0 is off
    assert (lv_slices_included(stack, 0.6)[1] == 1).sum() > 0 and (lv_slices_included(stack, 0.6)[0] == 1).sum() == 0
    assert np.array_equal(lv_slices_included(stack, 0.0), stack)
