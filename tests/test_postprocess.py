"""Post-processing invariants: one component per structure, cup ⊂ disc, LV inside the MYO ring,
idempotence; and the metrics recorded both with and without it."""

import numpy as np
from scipy import ndimage

from vlsa.data.spec import CARDIAC, FUNDUS
from vlsa.postprocess import postprocess


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _messy_fundus():
    lab = np.zeros((48, 48), np.uint8)
    lab[_disc(lab.shape, (24, 24), 12)] = 1
    lab[_disc(lab.shape, (24, 24), 6)] = 2
    lab[22:25, 14:17] = 0                      # a hole in the rim
    lab[_disc(lab.shape, (5, 5), 3)] = 1       # a stray disc blob
    lab[_disc(lab.shape, (42, 42), 2)] = 2     # a stray cup blob outside any disc
    lab[30, 30] = 2                            # a stray cup pixel inside the disc, off the cup
    return lab


def test_fundus_one_disc_one_cup_cup_inside_disc():
    out = postprocess(_messy_fundus(), FUNDUS)
    disc, cup = out >= 1, out == 2
    assert ndimage.label(disc)[1] == 1 and ndimage.label(cup)[1] == 1
    assert not (cup & ~disc).any()
    assert (ndimage.binary_fill_holes(disc) == disc).all()  # no holes
    assert out[23, 15] == 1 and out[5, 5] == 0 and out[42, 42] == 0 and out[30, 30] == 1


def test_cardiac_lv_fills_the_myocardial_ring_and_each_structure_is_one_volume_component():
    vol = np.zeros((3, 40, 40), np.uint8)
    for z in range(3):
        vol[z][_disc((40, 40), (20, 16), 9)] = 2
        vol[z][_disc((40, 40), (20, 16), 6)] = 1
        vol[z][20:30, 30:36] = 3
    vol[1][18:21, 15:18] = 0          # background inside the ring: must become LV
    vol[2][2:5, 2:5] = 1              # a stray LV blob far away
    vol[0][36:39, 36:39] = 2          # a stray myocardium blob
    out = postprocess(vol, CARDIAC)
    for c in (1, 2, 3):
        assert ndimage.label(out == c)[1] == 1, c
    for z in range(3):
        ring = out[z] == 2
        inside = ndimage.binary_fill_holes(ring) & ~ring
        assert (out[z][inside] == 1).all()
    assert out[1, 19, 16] == 1 and out[2, 3, 3] == 0 and out[0, 37, 37] == 0


def test_postprocess_is_idempotent_and_keeps_shape_and_dtype():
    rng = np.random.default_rng(0)
    fundus = _messy_fundus()
    noisy = np.where(rng.random((3, 40, 40)) < 0.1, rng.integers(0, 4, (3, 40, 40)), 0).astype(np.uint8)
    for lab, spec in ((fundus, FUNDUS), (noisy, CARDIAC)):
        once = postprocess(lab, spec)
        assert once.shape == lab.shape and once.dtype == lab.dtype
        assert np.array_equal(postprocess(once, spec), once)


def test_evaluation_records_both_and_applies_the_source_validation_choice(fundus_root, tmp_path):
    import json

    from tests.conftest import tiny_overrides
    from vlsa.config import build_config
    from vlsa.engine.evaluate import evaluate_run
    from vlsa.engine.train import train

    for mode in ("auto", "off"):
        run = train(build_config({}, tiny_overrides(fundus_root, steps=3) + [f"eval.postprocess={mode}"]),
                    tmp_path / mode, quiet=True)
        result = evaluate_run(run, domains=["Domain1", "Domain2"], quiet=True)
        pp = result["postprocess"]
        if mode == "auto":
            assert pp["applied"] == (pp["val_dice_on"] >= pp["val_dice_off"])
            assert json.loads((run / "postprocess.json").read_text()) == pp
        else:
            assert pp["applied"] is False
        chosen = result["domains_postprocess_on" if pp["applied"] else "domains_postprocess_off"]
        assert result["domains"] == chosen
        assert set(result["domains_postprocess_on"]) == set(result["domains_postprocess_off"]) == {"Domain1", "Domain2"}
        saved = json.loads((run / result["file"]).read_text())
        assert saved["domains_postprocess_off"]["Domain2"]["dice"] == result["domains_postprocess_off"]["Domain2"]["dice"]
