import numpy as np
import pytest

from vlsa.metrics import DomainAccumulator, case_metrics, group_slices, region_metrics


def test_dice_against_hand_computed_value():
    pred = np.zeros((10, 10), bool)
    truth = np.zeros((10, 10), bool)
    pred[0:4, 0:5] = True  # 20 px
    truth[2:6, 0:5] = True  # 20 px, overlap 10 px
    assert region_metrics(pred, truth, (1, 1))["dice"] == pytest.approx(2 * 10 / 40)


def test_hd95_and_asd_of_a_shifted_square_in_mm():
    pred = np.zeros((40, 40), bool)
    truth = np.zeros((40, 40), bool)
    truth[10:20, 10:20] = True
    pred[10:20, 13:23] = True  # shifted 3 columns
    m = region_metrics(pred, truth, (1.0, 2.0))  # columns are 2 mm apart
    assert m["hd95"] == pytest.approx(6.0)
    assert 0 < m["asd"] < 6.0
    identical = region_metrics(truth, truth, (1, 1))
    assert identical["dice"] == 1.0 and identical["hd95"] == 0.0 and identical["asd"] == 0.0


def test_empty_masks_policy():
    empty = np.zeros((8, 6), bool)
    full = np.zeros((8, 6), bool)
    full[2:4, 2:4] = True
    assert region_metrics(empty, empty, (1, 1)) == {"dice": 1.0, "hd95": 0.0, "asd": 0.0}
    missed = region_metrics(empty, full, (1, 1))
    assert missed["dice"] == 0.0 and missed["hd95"] == pytest.approx(10.0)  # diagonal of 8 x 6


def test_overlapping_fundus_regions():
    truth = np.zeros((10, 10), int)
    truth[2:8, 2:8] = 1
    truth[4:6, 4:6] = 2
    pred = truth.copy()
    pred[4:6, 4:6] = 1  # cup missed, disc still perfect
    m = case_metrics(pred, truth, {"disc": (1, 2), "cup": (2,)}, (1, 1))
    assert m["dice"]["disc"] == 1.0 and m["dice"]["cup"] == 0.0


def test_per_volume_stacking_and_aggregation():
    a = np.zeros((6, 6), int)
    a[1:3, 1:3] = 1
    items = [("v1", 1, a, a), ("v1", 0, a * 0, a), ("v2", 0, a, a)]
    stacked = group_slices(items)
    pred, truth = stacked["v1"]
    assert pred.shape == (2, 6, 6) and pred[0].sum() == 0  # slice 0 first
    acc = DomainAccumulator({"lv": (1,)})
    for vid, (p, t) in stacked.items():
        acc.add(vid, p, t, (10.0, 1.0, 1.0))
    agg = acc.aggregate()
    # v1: volume Dice 2*4/(4+8) = 0.667 (not the mean of slice Dices 0 and 1); v2: 1.0
    assert agg["n"] == 2
    assert agg["dice"]["lv"] == pytest.approx((2 * 4 / 12 + 1.0) / 2)
