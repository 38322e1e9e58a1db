import numpy as np
import pytest
from PIL import Image

from vlsa.data.fundus import (
    DoFEReader,
    RigaReader,
    decode_dofe_mask,
    decode_riga_mask,
    encode_dofe_mask,
    encode_riga_mask,
    two_channel,
)
from vlsa.errors import DataError


def _label():
    label = np.zeros((20, 24), dtype=np.int64)
    label[4:16, 5:19] = 1
    label[7:13, 9:15] = 2
    return label


def test_dofe_grey_levels_round_trip_and_thresholds():
    label = _label()
    grey = encode_dofe_mask(label)
    assert set(np.unique(grey)) == {0, 128, 255}
    assert np.array_equal(decode_dofe_mask(grey), label)
    # JPEG-ish intermediate levels decode with the public loaders' thresholds
    assert decode_dofe_mask(np.array([201, 200, 51, 50], dtype=np.uint8)).tolist() == [0, 1, 1, 2]


def test_riga_grey_levels_differ_from_dofe():
    label = _label()
    grey = encode_riga_mask(label)
    assert grey[0, 0] == 0 and grey[8, 10] == 128 and grey[5, 6] == 255
    assert np.array_equal(decode_riga_mask(grey), label)


def test_two_channel_view_disc_includes_cup():
    disc, cup = two_channel(_label())
    assert disc.sum() == 12 * 14 and cup.sum() == 6 * 6
    assert np.all(disc[cup == 1] == 1)


def test_dofe_reader_reads_the_layout(fundus_root):
    reader = DoFEReader(fundus_root)
    assert reader.domains() == ["Domain1", "Domain2", "Domain3", "Domain4"]
    samples = list(reader.samples("Domain3", "train"))
    assert len(samples) == 8  # REFUGE-like 80 % train split of 10
    s = samples[0]
    assert s.image.shape == (3, 64, 64) and s.image.dtype == np.float32
    assert 0.0 <= s.image.min() and s.image.max() <= 1.0
    assert s.label.shape == (64, 64) and set(np.unique(s.label)) == {0, 1, 2}
    assert s.domain == "Domain3" and s.name.startswith(("g", "n"))


def _write_dofe(root, size_img=(16, 16), size_mask=(16, 16), with_mask=True):
    base = root / "Domain1" / "train" / "ROIs"
    (base / "image").mkdir(parents=True)
    (base / "mask").mkdir(parents=True)
    Image.fromarray(np.zeros((*size_img, 3), np.uint8)).save(base / "image" / "a.png")
    if with_mask:
        Image.fromarray(np.full(size_mask, 255, np.uint8)).save(base / "mask" / "a.png")
    return base


def test_mask_of_other_size_is_one_line_error(tmp_path):
    base = _write_dofe(tmp_path, size_mask=(16, 12))
    with pytest.raises(DataError, match=r"mask size 12x16 differs from image size 16x16") as err:
        list(DoFEReader(tmp_path).samples("Domain1", "train"))
    assert str(base / "mask" / "a.png") in str(err.value) and "\n" not in str(err.value)


def test_image_without_mask_and_empty_domain(tmp_path):
    _write_dofe(tmp_path, with_mask=False)
    with pytest.raises(DataError, match="has no mask"):
        DoFEReader(tmp_path).pairs("Domain1", "train")
    (tmp_path / "Domain2" / "train" / "ROIs" / "image").mkdir(parents=True)
    with pytest.raises(DataError, match="empty domain"):
        DoFEReader(tmp_path).pairs("Domain2", "train")


def test_corrupt_png_names_the_file(tmp_path):
    base = _write_dofe(tmp_path)
    (base / "image" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=r"a\.png: cannot read image"):
        list(DoFEReader(tmp_path).samples("Domain1", "train"))


def test_riga_reader_reads_csv_lists(tmp_path):
    label = _label()
    for i in range(3):
        img_dir = tmp_path / "RIGA" / "BinRushed" / "BinRushed1"
        mask_dir = tmp_path / "RIGA-mask" / "BinRushed" / "BinRushed1"
        img_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 24, 3), 100 + i, np.uint8)).save(img_dir / f"image{i}.tif")
        Image.fromarray(encode_riga_mask(label)).save(mask_dir / f"image{i}-1.tif")
    rows = [f"RIGA/BinRushed/BinRushed1/image{i}.tif,RIGA-mask/BinRushed/BinRushed1/image{i}-1.tif" for i in range(3)]
    (tmp_path / "BinRushed_train.csv").write_text("image,mask\n" + "\n".join(rows[:2]) + "\n")
    (tmp_path / "BinRushed_test.csv").write_text("image,mask\n" + rows[2] + "\n")
    reader = RigaReader(tmp_path)
    assert reader.domains() == ["BinRushed"]
    train = list(reader.samples("BinRushed", "train"))
    assert [s.name for s in train] == ["BinRushed1_image0", "BinRushed1_image1"]
    assert np.array_equal(train[0].label, label)
    assert len(list(reader.samples("BinRushed", "test"))) == 1


def test_riga_missing_listed_file(tmp_path):
    (tmp_path / "Magrabia_test.csv").write_text("image,mask\nnope.tif,nope-1.tif\n")
    with pytest.raises(DataError, match=r"nope\.tif: listed in Magrabia_test\.csv but not found"):
        RigaReader(tmp_path).pairs("Magrabia", "test")


def _riga_images(root, domain, n):
    rows = []
    for i in range(n):
        img_dir, mask_dir = root / "RIGA" / domain / f"{domain}1", root / "RIGA-mask" / domain / f"{domain}1"
        img_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 24, 3), 100 + i, np.uint8)).save(img_dir / f"image{i}.tif")
        Image.fromarray(encode_riga_mask(_label())).save(mask_dir / f"image{i}-1.tif")
        rows.append(f"RIGA/{domain}/{domain}1/image{i}.tif,RIGA-mask/{domain}/{domain}1/image{i}-1.tif")
    return rows


def test_riga_single_csv_is_split_by_case_without_overlap(tmp_path):
    # issue 15 row 3: with one Magrabia.csv, train and test were the same 5 images
    rows = _riga_images(tmp_path, "Magrabia", 5)
    (tmp_path / "Magrabia.csv").write_text("image,mask\n" + "\n".join(rows) + "\n")
    reader = RigaReader(tmp_path, test_fraction=0.4)
    train = {s.case_id for s in reader.samples("Magrabia", "train")}
    test = {s.case_id for s in reader.samples("Magrabia", "test")}
    assert len(test) + len(train) == 5 and test and train and not train & test
    assert RigaReader(tmp_path, test_fraction=0.4).pairs("Magrabia", "test") == reader.pairs("Magrabia", "test")


def test_riga_merged_csv_beside_a_train_list_gives_the_rest_to_test(tmp_path):
    rows = _riga_images(tmp_path, "BinRushed", 4)
    (tmp_path / "BinRushed.csv").write_text("image,mask\n" + "\n".join(rows) + "\n")
    (tmp_path / "BinRushed_train.csv").write_text("image,mask\n" + "\n".join(rows[:3]) + "\n")
    reader = RigaReader(tmp_path)
    assert [s.name for s in reader.samples("BinRushed", "test")] == ["BinRushed1_image3"]
