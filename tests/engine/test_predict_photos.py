"""`vlsa predict` on whole photographs with a run that holds a disc locator: a label map of each
photo's size and name, the overlay, measures.csv with the documented columns and a summary line;
volumes refused before anything is written; a run without a locator predicts as before."""

import csv
import shutil

import numpy as np
from PIL import Image
from scipy import ndimage

from tests.engine.synthetic_photos import SHAPE
from vlsa.cli import main
from vlsa.engine.fundus_photo import MEASURES


def test_whole_photos_give_label_maps_overlays_and_measures_csv(photo_run, photo_release, tmp_path, capsys):
    root, _ = photo_release
    out = tmp_path / "out"
    assert main(["predict", "--run", str(photo_run), "--input", str(root / "Test" / "Images"), "--output", str(out),
                 "--overlay"]) == 0
    printed = capsys.readouterr().out
    names = sorted(p.name for p in (root / "Test" / "Images").iterdir())
    with open(out / "measures.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert tuple(reader.fieldnames) == MEASURES and [r["image"] for r in rows] == names
    for row in rows:
        labels = np.asarray(Image.open(out / row["image"]))  # same name (PNG in, PNG out)
        assert labels.shape == SHAPE and set(np.unique(labels)) <= {0, 1, 2}
        assert int(row["disc_area_px"]) == int((labels >= 1).sum()) and int(row["cup_area_px"]) == int((labels == 2).sum())
        disc = labels >= 1
        if disc.any():  # post-processed on the photo's grid: one disc, the cup inside it
            assert ndimage.label(disc)[1] == 1 and not ((labels == 2) & ~disc).any()
            assert 0 <= float(row["vcdr"]) <= 1 and 0 < float(row["locator_confidence"]) <= 1
        overlay = np.asarray(Image.open(out / row["image"].replace(".png", "_overlay.png")))
        assert overlay.ndim == 3 and overlay.shape[1] >= SHAPE[1]
    assert f"measures: {out / 'measures.csv'} (6 image(s), disc found on" in printed


def test_a_volume_is_refused_before_anything_is_written(photo_run, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(inputs / "a.png")
    (inputs / "b.nii.gz").write_bytes(b"not read")
    assert main(["predict", "--run", str(photo_run), "--input", str(inputs), "--output", str(tmp_path / "out")]) == 2
    assert "b.nii.gz: this run segments fundus photographs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_dicom_series_given_to_a_photo_run_is_an_error_not_zero_predictions(photo_run, tmp_path, capsys):
    """The whole-photo pipeline reads photographs: a DICOM folder was a silent rc 0, "wrote 0 prediction(s)"."""
    from tests.data.dicom_files import write_mr

    series = tmp_path / "dicom"
    for k in range(2):
        write_mr(series / f"IM{k}.dcm", np.full((16, 16), 100 * k, np.uint16), position=(0.0, 0.0, 8.0 * k), number=k + 1)
    assert main(["predict", "--run", str(photo_run), "--input", str(series), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "this run segments fundus photographs (PNG/JPEG/TIFF), not DICOM series" in err and str(series) in err
    assert not (tmp_path / "out").exists()


def test_a_run_without_a_locator_predicts_as_before(photo_run, photo_release, tmp_path):
    root, _ = photo_release
    plain = tmp_path / "plain"
    shutil.copytree(photo_run, plain, ignore=shutil.ignore_patterns("locator"))
    out = tmp_path / "out"
    photo = sorted((root / "Test" / "Images").iterdir())[0]
    assert main(["predict", "--run", str(plain), "--input", str(photo), "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [photo.name]
    assert np.asarray(Image.open(out / photo.name)).shape == SHAPE



def test_a_disc_over_half_the_image_is_flagged_not_reported_silently():
    """An undertrained run can "find" a disc that spans the whole retina: its vCDR is no measurement."""
    from vlsa.engine.fundus_photo import implausible_discs

    rows = [{"image": "a.jpg", "disc_area_px": 500}, {"image": "b.jpg", "disc_area_px": 7900},
            {"image": "c.jpg", "disc_area_px": 6000}]
    assert implausible_discs(rows[:1], [10_000]) is None
    line = implausible_discs(rows, [10_000] * 3)
    assert line.startswith("vlsa: warning: 2 of 3 image(s) (e.g. b.jpg; up to 79% in b.jpg)")
    assert implausible_discs(rows, [20_000] * 3) is None  # the same discs in larger photos are plausible
