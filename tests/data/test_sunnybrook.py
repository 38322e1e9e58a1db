import logging

import numpy as np
import pytest

from tests.data.dicom_files import write_mr
from vlsa.cli import main
from vlsa.data.integrity import verify
from vlsa.data.spec import CARDIAC
from vlsa.data.sunnybrook import SunnybrookReader
from vlsa.errors import DataError

SIZE = 32
# image numbers: the slice at 10 mm has the smaller numbers, so name order is not slice order
FRAMES = {(10.0, "ES"): 8, (10.0, "ED"): 19, (0.0, "ES"): 28, (0.0, "ED"): 39}
TRIGGER = {"ES": 290.0, "ED": 710.0}


def _rectangle(x0, x1, y0, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _circle(cx, cy, r, n=40):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return list(zip(cx + r * np.cos(t), cy + r * np.sin(t)))


def _contour(path, points):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{x:.2f} {y:.2f}\n" for x, y in points))


def _patient(root, patient="SCD0000101", original="SC-HF-I-1", epicardium=True, spacing=(1.5, 1.25)):
    for (z, phase), n in FRAMES.items():
        image = np.full((SIZE, SIZE), 100, dtype=np.uint16)
        image[12:16, 10:15] = 600 if phase == "ED" else 500
        write_mr(root / "dicoms" / patient / f"{n}.dcm", image, position=(0.0, 0.0, z), spacing=spacing,
                 trigger=TRIGGER[phase] + z / 10, number=n)
        # ED cavity: columns 10..14 (x), rows 12..15 (y), 20 pixel centres; ES: 3 x 2 = 6
        cavity = _rectangle(9.5, 14.5, 11.5, 15.5) if phase == "ED" else _rectangle(10.5, 13.5, 12.5, 14.5)
        contours = root / "contourfiles" / original
        _contour(contours / "i-contours" / f"IM-0001-{n:04d}-icontour-manual.txt", cavity)
        if epicardium and phase == "ED":
            _contour(contours / "o-contours" / f"IM-0001-{n:04d}-ocontour-manual.txt", _rectangle(7.5, 16.5, 9.5, 17.5))


def _link(root, rows=(("SCD0000101", "SC-HF-I-1"),)):
    (root / "link.csv").write_text("patient_id,original_id\n" + "".join(f"{a},{b}\n" for a, b in rows))


def test_contours_become_lv_and_myo_on_ed_and_es_volumes(tmp_path):
    _patient(tmp_path)
    _link(tmp_path)
    reader = SunnybrookReader(tmp_path)
    assert reader.spec.annotated_regions == ("lv", "myo")
    assert reader.spec.label_names == CARDIAC.label_names and reader.spec.regions == CARDIAC.regions
    samples = list(reader.samples("Sunnybrook", "test"))
    assert [s.volume_id for s in samples] == ["SCD0000101_ED"] * 2 + ["SCD0000101_ES"] * 2
    ed, es = samples[0], samples[2]
    # pixel centres inside the polygon, x = column, y = row
    rows, cols = np.nonzero(ed.label == 1)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (12, 15, 10, 14) and len(rows) == 20
    assert int((ed.label == 2).sum()) == 9 * 8 - 20  # myocardium = inside o minus inside i
    assert int((es.label == 1).sum()) == 6 and not (es.label == 2).any()
    assert ed.annotated == ("lv", "myo") and es.annotated == ("lv",)
    # slices ordered by position: z 0 mm (images 39/28) first, though their numbers are larger
    assert ed.meta["dicom"].endswith("39.dcm") and samples[1].meta["dicom"].endswith("19.dcm")
    assert es.meta["dicom"].endswith("28.dcm")
    assert ed.original_spacing == (1.5, 1.25) and ed.slice_thickness == pytest.approx(10.0)
    assert ed.meta["ed_es"]["ED"] == pytest.approx(710.5) and ed.meta["spacing_known"] is True
    assert "1 patients, 4 contoured frames (2 ED/ES volumes), 2 with an epicardial contour, myocardium " \
           "annotated on 2" in reader.summary()


def test_ed_is_the_phase_of_larger_cavity_whatever_the_trigger_order(tmp_path, caplog):
    _patient(tmp_path)
    _link(tmp_path)
    # swap the trigger times: the larger cavity is now the earlier phase, still ED
    for (z, phase), n in FRAMES.items():
        write_mr(tmp_path / "dicoms" / "SCD0000101" / f"{n}.dcm", np.full((SIZE, SIZE), 100, dtype=np.uint16),
                 position=(0.0, 0.0, z), trigger=TRIGGER["ES" if phase == "ED" else "ED"], number=n)
    samples = list(SunnybrookReader(tmp_path).samples("Sunnybrook", "test"))
    ed = [s for s in samples if s.meta["phase"] == "ED"]
    assert all(int((s.label == 1).sum()) == 20 for s in ed) and ed[0].meta["trigger_time_ms"] == 290.0


def test_target_only_train_split_is_refused(tmp_path):
    _patient(tmp_path)
    _link(tmp_path)
    with pytest.raises(DataError, match="target-only dataset .* no train split"):
        list(SunnybrookReader(tmp_path).samples("Sunnybrook", "train"))


def test_an_epicardium_that_misses_the_cavity_is_not_scored_as_myocardium(tmp_path, caplog):
    _patient(tmp_path)
    _link(tmp_path)
    n = FRAMES[(0.0, "ED")]
    _contour(tmp_path / "contourfiles/SC-HF-I-1/o-contours" / f"IM-0001-{n:04d}-ocontour-manual.txt",
             _circle(25, 25, 4))  # another heart's epicardium
    with caplog.at_level(logging.WARNING):
        samples = list(SunnybrookReader(tmp_path).samples("Sunnybrook", "test"))
    bad = next(s for s in samples if s.meta["dicom"].endswith(f"{n}.dcm"))
    assert bad.annotated == ("lv",) and not (bad.label == 2).any()
    assert "1 epicardial contour(s) leave 100%-100% of the LV cavity outside" in caplog.text


def _cli_fails(tmp_path, capsys, expected):
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert main(["verify", "--dataset", "sunnybrook", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vlsa: error: ") and "\n" not in err
    assert expected in err, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written


def test_contour_point_outside_the_image(tmp_path, capsys):
    _patient(tmp_path)
    _link(tmp_path)
    _contour(tmp_path / "contourfiles/SC-HF-I-1/i-contours/IM-0001-0019-icontour-manual.txt",
             _rectangle(20.0, 33.0, 5.0, 9.0))
    _cli_fails(tmp_path, capsys, "IM-0001-0019-icontour-manual.txt: point (x 33, y 5) lies outside the 32x32 image 19.dcm")


def test_dicom_without_pixel_spacing(tmp_path, capsys):
    _patient(tmp_path)
    _link(tmp_path)
    write_mr(tmp_path / "dicoms/SCD0000101/28.dcm", np.zeros((SIZE, SIZE), np.uint16), trigger=290.0, spacing=None)
    _cli_fails(tmp_path, capsys, "SCD0000101/28.dcm: no PixelSpacing")


def test_contour_whose_dicom_is_missing(tmp_path, capsys):
    _patient(tmp_path)
    _link(tmp_path)
    (tmp_path / "dicoms/SCD0000101/8.dcm").unlink()
    _cli_fails(tmp_path, capsys, "IM-0001-0008-icontour-manual.txt: no DICOM for this contour (expected")


def test_frames_of_two_series_are_refused_naming_them(tmp_path, capsys):
    _patient(tmp_path)
    _link(tmp_path)
    write_mr(tmp_path / "dicoms/SCD0000101/8.dcm", np.zeros((SIZE, SIZE), np.uint16), position=(0, 0, 10.0),
             trigger=291.0, series="1.2.826.0.1.3680043.8.498.99")
    _cli_fails(tmp_path, capsys, "belong to 2 series (1.2.826.0.1.3680043.8.498.2, 1.2.826.0.1.3680043.8.498.99)")


def test_real_sunnybrook_counts(realdata):
    root = realdata / "sunnybrook-scd"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    reader = SunnybrookReader(root)
    samples = list(reader.samples("Sunnybrook", "test"))
    assert len(reader.cases) == 5 and len(samples) == 96
    assert len({s.volume_id for s in samples}) == 10
    assert sum(len(c.o_contours) for c in reader.cases) == 46
    # the epicardium is drawn at ED (the larger cavity) in every patient
    for case in reader.cases:
        drawn = {s.meta["phase"] for s in samples if s.case_id == case.patient
                 and any(s.meta["dicom"].endswith(f"/{n}.dcm") for n in case.o_contours)}
        assert drawn == {"ED"}
    # SC-HF-I-6's o-contours are copies of SC-HF-I-1's and miss its cavity: 46 - 9 frames with MYO
    assert sum(s.annotated == ("lv", "myo") for s in samples) == 37
    assert sorted({round(s.original_spacing[0], 4) for s in samples}) == [1.2891, 1.3672]  # from the headers
    assert "5 patients, 96 contoured frames (10 ED/ES volumes), 46 with an epicardial contour" in reader.summary()
    summaries = verify(reader, ["Sunnybrook"], splits=("test",))
    assert summaries[0].images == 96 and summaries[0].label_fraction["rv"] == 0.0


def test_resampled_frames_are_scored_on_the_dicom_grid(tmp_path):
    _patient(tmp_path)
    _link(tmp_path)
    s = next(SunnybrookReader(tmp_path, spacing=2.5).samples("Sunnybrook", "test"))
    assert s.image.shape == (1, 19, 16) and s.spacing == (2.5, 2.5)  # 32 x 1.5 / 2.5, 32 x 1.25 / 2.5
    truth, spacing = s.scoring()
    assert truth.shape == (SIZE, SIZE) and spacing == (1.5, 1.25) and int((truth == 1).sum()) == 20
