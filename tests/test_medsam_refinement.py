"""The refinement probe (benchmarks/medsam_refinement.py) boxes the right structures at the right place."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import medsam_refinement  # noqa: E402

from vlsa.data.spec import CARDIAC, FUNDUS  # noqa: E402


def test_box_is_the_structure_extent_in_encoder_pixels_and_none_when_empty():
    mask = torch.zeros(32, 32, dtype=torch.bool)
    assert medsam_refinement.box_of(mask, 8.0) is None
    mask[10:14, 4:20] = True  # rows 10-13, columns 4-19
    box = medsam_refinement.box_of(mask, 8.0, pad=2)
    assert box.tolist() == [[4 * 8 - 2, 10 * 8 - 2, 20 * 8 + 2, 14 * 8 + 2]]


def test_structures_are_the_label_unions_a_box_describes():
    assert medsam_refinement.STRUCTURES["fundus"]["optic disc"] == FUNDUS.regions["disc"]
    assert medsam_refinement.STRUCTURES["fundus"]["optic cup"] == FUNDUS.regions["cup"]
    cardiac = medsam_refinement.STRUCTURES["mms"]
    assert cardiac["LV"] == CARDIAC.regions["lv"] and cardiac["RV"] == CARDIAC.regions["rv"]
    assert set(cardiac["epicardium (LV + MYO)"]) == {*CARDIAC.regions["lv"], *CARDIAC.regions["myo"]}


def test_dice_of_masks():
    a = torch.zeros(4, 4, dtype=torch.bool)
    b = a.clone()
    assert medsam_refinement.dice(a, b) == 1.0  # both empty
    a[0, :2], b[0, 1:3] = True, True
    assert medsam_refinement.dice(a, b) == 0.5
