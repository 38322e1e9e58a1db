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


# --- partly annotated datasets and cases (issue 24 part 2, issue 25 row 5) -----------------------

CARDIAC_REGIONS = {"lv": (1,), "myo": (2,), "rv": (3,)}


def _heart(shape=(12, 12)):
    """LV disc (1) in a MYO ring (2), RV (3) beside it."""
    lab = np.zeros(shape, int)
    lab[3:9, 2:8] = 2
    lab[4:8, 3:7] = 1
    lab[3:9, 9:11] = 3
    return lab


def test_a_region_the_dataset_does_not_annotate_is_not_scored_and_not_in_the_mean():
    from vlsa.metrics import NOT_ANNOTATED

    truth = _heart()
    truth[truth == 3] = 0  # as a dataset without RV labels stores it
    pred = np.where(truth > 0, truth, 3)  # LV and MYO right, RV predicted everywhere else
    acc = DomainAccumulator(CARDIAC_REGIONS, annotated=("lv", "myo"))
    acc.add("c0", pred, truth, (1, 1))
    agg = acc.aggregate()
    assert agg["dice"]["lv"] == agg["dice"]["myo"] == 1.0
    assert agg["dice"]["rv"] == NOT_ANNOTATED and agg["hd95"]["rv"] == NOT_ANNOTATED
    assert agg["dice"]["mean"] == 1.0  # not (1 + 1 + 0) / 3: RV neither punished ...
    assert agg["hd95"]["mean"] == 0.0 and agg["n_annotated"] == {"lv": 1, "myo": 1, "rv": 0}
    # ... nor rewarded: predicting no RV at all gives the same numbers
    acc2 = DomainAccumulator(CARDIAC_REGIONS, annotated=("lv", "myo"))
    acc2.add("c0", truth, truth, (1, 1))
    assert acc2.aggregate()["dice"] == agg["dice"]


def test_a_case_annotating_only_lv_is_left_out_of_the_myo_mean():
    truth = _heart()
    good = truth.copy()
    bad_myo = truth.copy()
    bad_myo[bad_myo == 2] = 0  # MYO missed
    acc = DomainAccumulator(CARDIAC_REGIONS)
    acc.add("both", good, truth, (1, 1))
    acc.add("endo-only", bad_myo, np.where(truth == 2, 0, truth), (1, 1), annotated=("lv", "rv"))
    agg = acc.aggregate()
    assert agg["n"] == 2 and agg["n_annotated"] == {"lv": 2, "myo": 1, "rv": 2}
    assert agg["dice"]["myo"] == 1.0  # only the case that annotates MYO; Dice 0 had it been scored
    assert agg["dice"]["lv"] == 1.0 and agg["dice_sd"]["myo"] == 0.0
    # a case never annotates what its dataset does not
    only = DomainAccumulator(CARDIAC_REGIONS, annotated=("lv",))
    assert set(only.add("x", good, truth, (1, 1), annotated=("lv", "myo"))["dice"]) == {"lv"}


def test_an_annotated_but_empty_region_keeps_the_empty_mask_rule():
    truth = _heart()
    truth[truth == 3] = 0  # RV annotated (default: all regions) but absent in this case
    pred = _heart()  # ... and predicted: a false positive, Dice 0 and the worst HD95
    m = DomainAccumulator(CARDIAC_REGIONS).add("c", pred, truth, (1, 1))
    assert m["dice"]["rv"] == 0.0 and m["hd95"]["rv"] == pytest.approx(np.hypot(12, 12))


def test_a_volume_scores_a_region_over_the_slices_that_annotate_it():
    from vlsa.metrics import NOT_ANNOTATED

    truth = np.stack([_heart(), _heart(), _heart()])
    truth[1][truth[1] == 2] = 0  # slice 1: endocardial contour only, no MYO label
    pred = np.stack([_heart(), _heart(), _heart()])  # MYO predicted on slice 1 too
    slices = [("lv", "myo", "rv"), ("lv", "rv"), ("lv", "myo", "rv")]
    m = case_metrics(pred, truth, CARDIAC_REGIONS, (10.0, 1.0, 1.0), slices=slices)
    assert m["dice"]["myo"] == 1.0 and m["hd95"]["myo"] == 0.0  # slice 1's MYO neither counted nor missed
    assert case_metrics(pred, truth, CARDIAC_REGIONS, (10.0, 1.0, 1.0))["dice"]["myo"] < 1.0  # scored there: FP
    # the scored slices keep their 3D positions: MYO shifted by one pixel on slice 2 only
    shifted = pred.copy()
    shifted[2] = np.roll(pred[2], 1, axis=1)
    hd = case_metrics(shifted, truth, CARDIAC_REGIONS, (10.0, 1.0, 1.0), slices=slices)["hd95"]["myo"]
    assert hd == pytest.approx(1.0)
    # a volume none of whose slices annotates MYO does not annotate it
    acc = DomainAccumulator(CARDIAC_REGIONS)
    acc.add("v", pred, truth, (10.0, 1.0, 1.0), slices=[("lv",), ("lv",), ("lv",)])
    agg = acc.aggregate()
    assert agg["dice"]["myo"] == NOT_ANNOTATED == agg["dice"]["rv"] and agg["dice"]["mean"] == 1.0
