"""Drishti-GS1 as released: small files in the real format (whole photos, 4-expert soft maps,
cdrValues), the agreement rule, the disc-centred ROI rule and the one-line errors."""

import numpy as np
import pytest
from PIL import Image

from tests.data.verify_output import problems
from vlsa import roi
from vlsa.cli import main
from vlsa.config import build_config, digest_tree
from vlsa.data.drishti import DOMAIN, DrishtiReader, decode_soft_maps
from vlsa.engine.data import open_configured
from vlsa.errors import DataError

PHOTO = (120, 160)  # H x W of the small "whole photographs"
# nested squares (half-sizes) marked by >= 1, 2, 3, 4 of the 4 experts, centred at CENTRE
DISC_HALF = (14, 12, 10, 8)
CUP_HALF = (6, 5, 4, 3)
CENTRE = (60, 70)
LEVELS = (64, 128, 191, 255)  # soft-map values of 1..4 experts


def _soft(shape, centre, halves):
    soft = np.zeros(shape, np.uint8)
    for half, value in zip(halves, LEVELS):
        soft[centre[0] - half:centre[0] + half, centre[1] - half:centre[1] + half] = value
    return soft


def _photo(shape=PHOTO):
    # each pixel's colour encodes its position, so a crop can be traced back to the photo
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return np.stack([rows % 251 + 1, cols % 251 + 1, np.full(shape, 200)], axis=-1).astype(np.uint8)


def write_case(root, split, name, suffix=".png", centre=CENTRE, disc=None, cup=None, cdr="0.61 0.55 0.70 0.58",
               photo_shape=PHOTO, gt="GT"):
    base = root / split
    (base / "Images").mkdir(parents=True, exist_ok=True)
    Image.fromarray(_photo(photo_shape)).save(base / "Images" / f"{name}{suffix}", quality=95)
    case = base / gt / name
    (case / "SoftMap").mkdir(parents=True, exist_ok=True)
    disc = _soft(photo_shape, centre, DISC_HALF) if disc is None else disc
    cup = _soft(photo_shape, centre, CUP_HALF) if cup is None else cup
    Image.fromarray(disc).save(case / "SoftMap" / f"{name}_ODsegSoftmap.png")
    Image.fromarray(cup).save(case / "SoftMap" / f"{name}_cupsegSoftmap.png")
    if cdr is not None:
        (case / f"{name}_cdrValues.txt").write_text(cdr)
    return case


def _release(root):
    write_case(root, "Training", "drishtiGS_002", ".png")
    write_case(root, "Training", "drishtiGS_004", ".jpg")
    write_case(root, "Test", "drishtiGS_001", ".png", gt="Test_GT")  # the official Test GT folder name
    return root


def _one(reader, split="train"):
    return list(reader.samples(DOMAIN, split))[0]


@pytest.mark.parametrize("agreement", [1, 2, 3, 4])
def test_label_counts_per_agreement_level(tmp_path, agreement):
    _release(tmp_path)
    sample = _one(DrishtiReader(tmp_path, agreement=agreement))
    disc = (2 * DISC_HALF[agreement - 1]) ** 2
    cup = (2 * CUP_HALF[agreement - 1]) ** 2
    counts = np.bincount(sample.label.ravel(), minlength=3)
    assert counts[2] == cup and counts[1] == disc - cup  # rim = disc minus cup
    assert sample.meta["agreement"] == agreement


def test_soft_values_decode_by_expert_count_robust_to_rounding():
    # 191 = 3 x 63.75 rounded; 64 = 63.75 rounded; 127/129 still read as 2 experts
    soft = np.array([[0, 64, 127, 128, 129, 191, 255]])
    none = np.zeros_like(soft)
    assert decode_soft_maps(soft, none, 2).tolist() == [[0, 0, 1, 1, 1, 1, 1]]
    assert decode_soft_maps(soft, none, 3).tolist() == [[0, 0, 0, 0, 0, 1, 1]]
    assert decode_soft_maps(soft, none, 1).tolist() == [[0, 1, 1, 1, 1, 1, 1]]


def test_cup_outside_the_disc_counts_as_disc(tmp_path):
    cup = _soft(PHOTO, CENTRE, CUP_HALF)
    cup[CENTRE[0], CENTRE[1] + 20] = 64  # one expert marked cup beyond every expert's disc
    write_case(tmp_path, "Training", "drishtiGS_002", cup=cup)
    low = _one(DrishtiReader(tmp_path, agreement=1))
    assert np.bincount(low.label.ravel(), minlength=3)[2] == (2 * CUP_HALF[0]) ** 2 + 1
    # the disc (rim ∪ cup) holds it: the label never has cup outside disc by construction
    assert (low.label >= 1).sum() == (2 * DISC_HALF[0]) ** 2 + 1
    assert np.bincount(_one(DrishtiReader(tmp_path, agreement=2)).label.ravel())[2] == (2 * CUP_HALF[1]) ** 2


def test_roi_is_disc_centred_with_side_k_times_the_diameter(tmp_path):
    _release(tmp_path)
    for k in (2.5, 3.0):
        sample = _one(DrishtiReader(tmp_path, roi_scale=k))
        diameter = 2 * DISC_HALF[1]  # the >= 2-expert disc places the ROI
        side = round(k * diameter)
        assert sample.label.shape == (side, side) and sample.image.shape == (3, side, side)
        top, left, bottom, right = sample.meta["roi_box"]
        assert (bottom - top, right - left) == (side, side)
        assert sample.meta["photo_shape"] == list(PHOTO)
        rows, cols = np.nonzero(sample.label >= 1)
        assert abs((rows.min() + rows.max() + 1) / 2 - side / 2) <= 0.5
        assert abs((cols.min() + cols.max() + 1) / 2 - side / 2) <= 0.5
        # the crop is the photo's pixels at roi_box: pixel (0, 0) of the ROI is photo pixel (top, left)
        assert round(sample.image[0, 0, 0] * 255) == top % 251 + 1 and round(sample.image[1, 0, 0] * 255) == left % 251 + 1
    # the box does not depend on the agreement level: labels of every level stay pixel-aligned
    boxes = {tuple(_one(DrishtiReader(tmp_path, agreement=a)).meta["roi_box"]) for a in (1, 2, 3, 4)}
    assert len(boxes) == 1


def test_photos_are_the_whole_photographs_the_rois_are_cut_from(tmp_path):
    _release(tmp_path)
    reader = DrishtiReader(tmp_path, roi_scale=3.0)
    photo, sample = next(iter(reader.photos(DOMAIN, "train"))), _one(reader)
    assert photo.image.shape == (3, *PHOTO) and photo.label.shape == PHOTO and photo.name == sample.name
    half = DISC_HALF[1]  # the >= 2-expert disc
    assert photo.meta["disc_box"] == [CENTRE[0] - half, CENTRE[1] - half, CENTRE[0] + half, CENTRE[1] + half]
    box = tuple(photo.meta["roi_box"])
    assert box == tuple(sample.meta["roi_box"]) and photo.meta["cdr_experts"] == sample.meta["cdr_experts"]
    assert np.array_equal(roi.crop(photo.label, box), sample.label)
    assert np.array_equal(roi.crop(photo.image, box), sample.image)


def test_roi_past_the_photo_edge_is_padded(tmp_path):
    centre = (10, 12)  # disc near the top-left corner: the ROI reaches past the photo
    write_case(tmp_path, "Training", "drishtiGS_002", centre=centre,
               disc=_soft(PHOTO, centre, (9, 8, 7, 6)), cup=_soft(PHOTO, centre, (3, 3, 2, 2)))
    sample = _one(DrishtiReader(tmp_path))
    top, left, bottom, right = sample.meta["roi_box"]
    assert (top, left) == (10 - 20, 12 - 20) and bottom - top == 40  # side 2.5 x 16
    assert np.all(sample.image[:, : -top] == 0) and np.all(sample.image[:, :, : -left] == 0)
    assert np.all(sample.label[: -top] == 0)
    assert sample.image[:, -top:, -left:].min() > 0  # the photo's own pixels after the padding


def test_release_layout_split_and_cdr_metadata(tmp_path):
    _release(tmp_path / "Drishti-GS1_files")  # the release's top folder under the root
    reader = DrishtiReader(tmp_path)
    assert reader.domains() == [DOMAIN]
    train = list(reader.samples(DOMAIN, "train"))
    test = list(reader.samples(DOMAIN, "test"))
    assert [s.name for s in train] == ["drishtiGS_002", "drishtiGS_004"]  # PNG and JPEG photos
    assert [s.name for s in test] == ["drishtiGS_001"]
    assert train[0].meta["cdr_experts"] == [0.61, 0.55, 0.70, 0.58]
    assert train[0].meta["cdr_mean"] == pytest.approx(0.61)
    assert "of 4 experts (soft map >= 128)" in reader.label_rule
    # the JPEG photo gives the same labels as the PNG one (labels come from the PNG soft maps)
    assert np.array_equal(train[0].label, train[1].label)
    assert np.abs(train[0].image - train[1].image).mean() < 0.02  # the JPEG decodes to the same photo


def test_agreement_and_roi_scale_come_from_the_config(tmp_path):
    _release(tmp_path)
    config = build_config({}, [f"data.root={tmp_path}", "data.dataset=drishti", "data.agreement=3",
                               "data.roi_scale=3", "data.source=DrishtiGS1"])
    reader = open_configured(config)
    assert (reader.agreement, reader.roi_scale) == (3, 3.0)
    assert "agreement" not in digest_tree(build_config({}).to_dict())["data"]  # defaults leave old digests alone
    from vlsa.errors import ConfigError

    with pytest.raises(ConfigError, match="data.agreement"):
        build_config({}, ["data.agreement=5"])


def _line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vlsa: error: ") and "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("kind", ["OD", "cup"])
def test_soft_map_of_another_size_is_one_line_exit_2(tmp_path, capsys, kind):
    small = np.zeros((60, 80), np.uint8)
    case = write_case(tmp_path, "Training", "drishtiGS_002", **{"disc" if kind == "OD" else "cup": small})
    assert main(["verify", "--dataset", "drishti", "--root", str(tmp_path)]) == 2
    # verify goes on past the bad file: the (here absent) Test folder is a second problem, then a count
    err, missing = problems(capsys.readouterr().err)
    assert missing == f"vlsa: error: {tmp_path / 'Test' / 'Images'}: folder not found"
    assert str(case / "SoftMap" / f"drishtiGS_002_{kind}segSoftmap.png") in err
    assert "80x60 differs from image size 160x120" in err


@pytest.mark.parametrize("bad, fragment", [
    (np.where(_soft(PHOTO, CENTRE, DISC_HALF) > 0, 1, 0).astype(np.uint8), "look like class indices"),
    (np.where(_soft(PHOTO, CENTRE, DISC_HALF) > 0, 100, 0).astype(np.uint8), "not Drishti-GS1 soft-map grey levels"),
])
def test_values_not_soft_map_levels(tmp_path, bad, fragment):
    case = write_case(tmp_path, "Training", "drishtiGS_002", disc=bad)
    with pytest.raises(DataError, match=fragment) as err:
        list(DrishtiReader(tmp_path).samples(DOMAIN, "train"))
    assert err.value.path == str(case / "SoftMap" / "drishtiGS_002_ODsegSoftmap.png") and "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["0.6 0.5 0.7", "0.6 0.5 0.7 0.6 0.5", "cdr: high", "0.6 0.5 0.7 1.6", ""])
def test_cdr_values_file_that_is_not_4_ratios(tmp_path, text):
    case = write_case(tmp_path, "Training", "drishtiGS_002", cdr=text)
    with pytest.raises(DataError) as err:
        list(DrishtiReader(tmp_path).samples(DOMAIN, "train"))
    assert err.value.path == str(case / "drishtiGS_002_cdrValues.txt") and "\n" not in str(err.value)


def test_missing_soft_map_cdr_file_and_empty_disc(tmp_path):
    case = write_case(tmp_path, "Training", "drishtiGS_002")
    (case / "SoftMap" / "drishtiGS_002_cupsegSoftmap.png").unlink()
    with pytest.raises(DataError, match="optic cup soft map not found") as err:
        list(DrishtiReader(tmp_path).samples(DOMAIN, "train"))
    assert err.value.path.endswith("drishtiGS_002_cupsegSoftmap.png")
    case = write_case(tmp_path / "b", "Training", "drishtiGS_002", cdr=None)
    with pytest.raises(DataError, match="cdrValues file not found"):
        list(DrishtiReader(tmp_path / "b").samples(DOMAIN, "train"))
    # only one expert marked a disc: no reference (>= 2 experts) disc to centre the ROI on
    write_case(tmp_path / "c", "Training", "drishtiGS_002", disc=np.where(_soft(PHOTO, CENTRE, DISC_HALF) > 0, 64, 0)
               .astype(np.uint8), cup=np.zeros(PHOTO, np.uint8))
    with pytest.raises(DataError, match="cannot place the disc-centred ROI"):
        list(DrishtiReader(tmp_path / "c").samples(DOMAIN, "train"))
    with pytest.raises(DataError, match="no Training/ or Test/ folder"):
        DrishtiReader(tmp_path / "c" / "Training")


def test_verify_on_the_real_release(realdata, capsys):
    root = realdata / "drishti-gs1"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    assert main(["verify", "--dataset", "drishti", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    lines = {tuple(line.split()[:4]) for line in out.splitlines()}
    assert (DOMAIN, "train", "50", "images") in lines and (DOMAIN, "test", "51", "images") in lines
    assert "label rule: disc/cup: pixels marked by >= 2 of 4 experts (soft map >= 128)" in out
    assert out.strip().endswith("ok: dataset passed the integrity check")


def test_real_whole_photos_hold_their_rois_exactly(realdata):
    root = realdata / "drishti-gs1"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    reader = DrishtiReader(root)
    for photo, sample, _ in zip(reader.photos(DOMAIN, "test"), reader.samples(DOMAIN, "test"), range(3)):
        assert photo.image.shape[1:] == tuple(photo.meta["photo_shape"]) == photo.label.shape
        box = tuple(sample.meta["roi_box"])
        assert np.array_equal(roi.crop(photo.label, box), sample.label)
        top, left, bottom, right = photo.meta["disc_box"]
        assert roi.square_box(((top + bottom) / 2, (left + right) / 2), max(bottom - top, right - left), 2.5) == box
