"""Decoding every image mode and the metadata that changes what pixels mean (vlsa.data.io)."""

import logging
import struct
import zlib

import nibabel as nib
import numpy as np
import pytest
from PIL import Image, ImageOps

from vlsa.data.files import find_mask, parse_index, read_csv
from vlsa.data.io import load_image, load_mask, load_pair, read_nifti
from vlsa.errors import DataError

LABEL = np.array([[0, 0, 1, 1], [0, 2, 2, 1], [0, 0, 2, 0]], dtype=np.uint8)  # 3 x 4


def png16_colour(path, array):
    """Write a 16-bit RGB (H x W x 3) or RGBA (x 4) PNG by hand (PIL cannot write them)."""
    h, w, c = array.shape
    data = array.astype(">u2")
    raw = b"".join(b"\x00" + data[r].tobytes() for r in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    colour_type = {3: 2, 4: 6}[c]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def _palette(indices, path):
    im = Image.fromarray(indices, mode="P")
    im.putpalette([0, 0, 0, 200, 30, 30, 30, 200, 30] + [0] * (256 * 3 - 9))
    im.save(path)
    return path


# ---------------------------------------------------------------------------------------- masks

def test_palette_mask_reads_the_stored_indices_not_the_colours(tmp_path):
    path = _palette(LABEL, tmp_path / "m.png")
    assert Image.open(path).mode == "P"
    assert np.array_equal(load_mask(path), LABEL)


def test_bilevel_mask_reads_black_and_white_as_0_and_255(tmp_path):
    Image.fromarray(LABEL > 0).convert("1").save(tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode == "1"
    assert np.array_equal(load_mask(tmp_path / "m.png"), (LABEL > 0) * 255)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_deep_integer_masks_keep_their_values(tmp_path, dtype):
    values = (LABEL.astype(np.int64) * 1000).astype(dtype)  # 0 / 1000 / 2000: above 8 bits
    Image.fromarray(values).save(tmp_path / "m.tif")
    assert Image.open(tmp_path / "m.tif").mode in ("I;16", "I")
    assert np.array_equal(load_mask(tmp_path / "m.tif"), values)


def test_float_mask_must_hold_integers(tmp_path):
    Image.fromarray(LABEL.astype(np.float32)).save(tmp_path / "ok.tif")
    assert np.array_equal(load_mask(tmp_path / "ok.tif"), LABEL)
    Image.fromarray(LABEL.astype(np.float32) / 2).save(tmp_path / "half.tif")
    with pytest.raises(DataError, match=r"half\.tif: mask holds non-integer values \(e\.g\. 0\.5\)"):
        load_mask(tmp_path / "half.tif")


def test_grey_rgb_mask_is_read_and_colour_mask_refused(tmp_path):
    grey = np.repeat((LABEL * 100)[..., None], 3, axis=2)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert np.array_equal(load_mask(tmp_path / "grey.png"), LABEL * 100)
    colour = np.zeros((3, 4, 3), np.uint8)
    colour[0, 2] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(DataError) as err:
        load_mask(tmp_path / "colour.png")
    assert str(err.value) == (f"{tmp_path / 'colour.png'}: mask is in colour (e.g. RGB (255, 0, 0) at row 0, column 2); "
                              "save label values in one channel (greyscale or palette PNG)")


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_label_in_alpha_is_used(tmp_path, mode):
    alpha = LABEL * 100
    colour = np.full((3, 4, 1 if mode == "LA" else 3), 255, np.uint8)
    Image.fromarray(np.concatenate([colour, alpha[..., None]], axis=2), mode).save(tmp_path / "m.png")
    assert np.array_equal(load_mask(tmp_path / "m.png"), alpha)


def test_alpha_constant_or_only_marking_background_uses_the_colour(tmp_path):
    opaque = np.stack([LABEL * 100, np.full((3, 4), 255, np.uint8)], axis=2)
    Image.fromarray(opaque, "LA").save(tmp_path / "opaque.png")
    assert np.array_equal(load_mask(tmp_path / "opaque.png"), LABEL * 100)
    # transparent uniform (white) background, labels in the grey level where opaque
    grey = np.where(LABEL > 0, LABEL * 100, 255).astype(np.uint8)
    cut = np.stack([grey, np.where(LABEL > 0, 255, 0).astype(np.uint8)], axis=2)
    Image.fromarray(cut, "LA").save(tmp_path / "cut.png")
    assert np.array_equal(load_mask(tmp_path / "cut.png"), grey)


def test_colour_and_alpha_both_carrying_values_is_refused_naming_alpha(tmp_path):
    la = np.stack([LABEL * 100, (LABEL[::-1, ::-1] * 100)], axis=2).astype(np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "m.png")
    with pytest.raises(DataError, match=r"m\.png: mask has both varying colour and varying alpha \(transparency\)"):
        load_mask(tmp_path / "m.png")


# ---------------------------------------------------------------------------------------- images

def test_sixteen_bit_grey_image_is_scaled_by_its_range(tmp_path):
    values = np.array([[0, 1000], [2050, 4100]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "x.png")
    assert Image.open(tmp_path / "x.png").mode == "I;16"
    image = load_image(tmp_path / "x.png", 3)
    assert image.shape == (3, 2, 2)
    assert np.allclose(image[0], values / 4100.0) and np.array_equal(image[0], image[2])


def test_sixteen_bit_colour_png_keeps_all_16_bits(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    values[0, 0] = 0
    values[0, 1] = 65535
    path = png16_colour(tmp_path / "x.png", values)
    assert Image.open(path).mode == "RGB"  # PIL itself would keep only the high byte
    assert np.allclose(load_image(path, 3), values.transpose(2, 0, 1) / 65535.0, atol=1e-6)


def test_sixteen_bit_rgba_png_with_low_range_does_not_go_black(tmp_path):
    values = np.zeros((2, 3, 4), np.uint16)
    values[..., 0] = [[0, 100, 200], [300, 400, 4100]]
    values[..., 3] = 65535
    image = load_image(png16_colour(tmp_path / "x.png", values), 3)
    assert image[0].max() == 1.0 and np.isclose(image[0, 0, 1], 100 / 4100)


def test_float_and_int32_images(tmp_path):
    values = np.array([[-1000.0, 0.0], [500.0, 3000.0]], dtype=np.float32)  # CT-like
    Image.fromarray(values).save(tmp_path / "f.tif")
    assert np.allclose(load_image(tmp_path / "f.tif", 1)[0], (values + 1000) / 4000)
    Image.fromarray(values.astype(np.int32)).save(tmp_path / "i.tif")
    assert np.allclose(load_image(tmp_path / "i.tif", 1)[0], (values + 1000) / 4000)
    values[0, 0] = np.nan
    Image.fromarray(values).save(tmp_path / "nan.tif")
    with pytest.raises(DataError, match=r"nan\.tif: image contains NaN or Inf values"):
        load_image(tmp_path / "nan.tif", 1)


def test_palette_image_reads_its_colours(tmp_path):
    path = _palette(LABEL, tmp_path / "p.png")
    image = load_image(path, 3)
    assert np.allclose(image[:, 1, 1] * 255, [30, 200, 30])


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # pure red in CMYK
    image = load_image(tmp_path / "c.jpg", 3)
    assert image.shape == (3, 8, 8)
    assert image[0].mean() > 0.9 and image[1].mean() < 0.1 and image[2].mean() < 0.1


def test_rgb_to_grey_uses_luma_and_alpha_is_dropped(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[..., 3] = 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "g.png")
    assert np.allclose(load_image(tmp_path / "g.png", 1), 0.587)
    assert np.allclose(load_image(tmp_path / "g.png", 3)[1], 1.0)


def test_multi_page_tiff_is_refused(tmp_path):
    pages = [Image.new("L", (4, 4), v) for v in (0, 9)]
    pages[0].save(tmp_path / "m.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(DataError) as err:
        load_image(tmp_path / "m.tif", 1)
    assert str(err.value) == f"{tmp_path / 'm.tif'}: has 2 pages/frames; expected a single 2D image"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_viewers_do(tmp_path, orientation):
    rgb = np.random.default_rng(orientation).integers(0, 255, (4, 6, 3)).astype(np.uint8)
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "x.png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "x.png")))
    assert np.allclose(load_image(tmp_path / "x.png", 3).transpose(1, 2, 0) * 255, expected)


def test_mask_matching_the_unrotated_pixels_is_explained(tmp_path):
    im = Image.fromarray(np.zeros((4, 6, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "x.jpg", exif=exif)
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(DataError) as err:
        load_pair(tmp_path / "x.jpg", tmp_path / "x.png", 3)
    assert str(err.value) == (f"{tmp_path / 'x.png'}: mask size 6x4 differs from image size 4x6 (x.jpg); the image's "
                              "EXIF orientation 6 turns it, the mask matches the stored pixels")


# ---------------------------------------------------------------------------------------- pairing, csv

def test_find_mask_is_literal_and_case_insensitive(tmp_path):
    (tmp_path / "m").mkdir()
    for name in ("N0001.png", "case[2].png", "a*b.tif", "q?.PNG", "x.json", ".y.png", "y.txt"):
        (tmp_path / "m" / name).write_bytes(b"")
    assert find_mask(tmp_path / "m", tmp_path / "n0001.JPG").name == "N0001.png"
    assert find_mask(tmp_path / "m", tmp_path / "case[2].png").name == "case[2].png"
    assert find_mask(tmp_path / "m", tmp_path / "a*b.png").name == "a*b.tif"
    assert find_mask(tmp_path / "m", tmp_path / "q?.jpeg").name == "q?.PNG"
    with pytest.raises(DataError) as err:
        find_mask(tmp_path / "m", tmp_path / "x.png")
    assert str(err.value) == (f"{tmp_path / 'x.png'}: image has no mask in {tmp_path / 'm'} "
                              "(same-stem files there are not images/NIfTI: x.json)")
    (tmp_path / "m" / "case[2].tif").write_bytes(b"")
    with pytest.raises(DataError, match=r"several masks in .*: case\[2\]\.png, case\[2\]\.tif"):
        find_mask(tmp_path / "m", tmp_path / "case[2].jpg")


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_read_csv_detects_the_delimiter(tmp_path, sep):
    (tmp_path / "x.csv").write_text("\ufeff" + sep.join(["", "External code", "ED"]) + "\n"
                                    + sep.join(["0", " A1 ", "1.0"]) + "\n\n")
    header, rows = read_csv(tmp_path / "x.csv")
    assert header == ["", "External code", "ED"] and rows == [{"": "0", "External code": "A1", "ED": "1.0"}]


def test_parse_index_accepts_integral_floats_only():
    assert [parse_index(t) for t in ("3", "3.0", " 3 ", "3.5", "x", "nan", "")] == [3, 3, 3, None, None, None, None]


# ---------------------------------------------------------------------------------------- NIfTI

def _nifti(path, pixdim_x, sform=True):
    affine = np.diag([1.3, 1.3, 5.0, 1.0])
    img = nib.Nifti1Image(np.zeros((4, 4, 2), np.float32), affine if sform else None)
    if not sform:  # only a qform, which is built from pixdim: nothing else says the voxel size
        img.header.set_qform(affine, code=1)
        img.header.set_sform(None, code=0)
    img.header["pixdim"][1] = pixdim_x
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("pixdim_x", [0.0, -1.3, float("nan")])
def test_nifti_invalid_pixdim_takes_spacing_from_the_sform_without_anonymous_warnings(tmp_path, pixdim_x, caplog,
                                                                                      capfd):
    with caplog.at_level(logging.DEBUG):
        _, _, zooms = read_nifti(_nifti(tmp_path / "x.nii.gz", pixdim_x))
    assert np.allclose(zooms, (1.3, 1.3, 5.0))
    assert not [r for r in caplog.records if r.name.startswith("nibabel")]
    assert "pixdim" not in capfd.readouterr().err


def test_nifti_invalid_pixdim_without_sform_is_a_one_line_error(tmp_path):
    path = _nifti(tmp_path / "x.nii.gz", 0.0, sform=False)
    with pytest.raises(DataError) as err:
        read_nifti(path)
    assert str(err.value) == (f"{path}: voxel size (pixdim 0, 1.3, 5) is zero, negative or not a "
                              "number, and the header has no valid sform affine to take it from")


def test_nifti_header_for_writing_states_the_spacing_that_was_used(tmp_path, caplog):
    from vlsa.data.io import read_nifti_header

    with caplog.at_level(logging.DEBUG):
        header = read_nifti_header(_nifti(tmp_path / "x.nii.gz", 0.0))
    assert np.allclose(header.get_zooms(), (1.3, 1.3, 5.0))
    assert not [r for r in caplog.records if r.name.startswith("nibabel")]


def test_nearly_grey_rgb_mask_reads_as_grey(tmp_path):
    rgb = np.repeat((LABEL * 100)[..., None], 3, axis=2).astype(np.int64)
    rgb[..., 2] += 3  # a colour profile's tint, as after JPEG or a screenshot tool
    Image.fromarray(rgb.astype(np.uint8)).save(tmp_path / "m.png")
    assert np.abs(load_mask(tmp_path / "m.png") - LABEL * 100).max() <= 1


def test_nan_in_a_nifti_label_volume_is_refused(tmp_path):
    mask = np.zeros((4, 4, 2), np.float32)
    mask[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(mask, np.eye(4)), str(tmp_path / "m.nii.gz"))
    with pytest.raises(DataError) as err:
        read_nifti(tmp_path / "m.nii.gz")
    assert str(err.value) == f"{tmp_path / 'm.nii.gz'}: NIfTI contains NaN or Inf values"


def test_big_endian_sixteen_bit_tiff(tmp_path):
    values = np.array([[0, 300], [2000, 4100]], dtype=">u2")
    Image.frombytes("I;16B", (2, 2), values.tobytes()).save(tmp_path / "b.tif")
    assert Image.open(tmp_path / "b.tif").mode == "I;16B"
    assert np.allclose(load_image(tmp_path / "b.tif", 1)[0], values / 4100.0)
    assert np.array_equal(load_mask(tmp_path / "b.tif"), values.astype(np.int64))


def test_read_csv_keeps_quoted_cells_whole(tmp_path):
    (tmp_path / "x.csv").write_text('image;mask\n"a;1.png";"two\nlines.png"\n')
    assert read_csv(tmp_path / "x.csv") == (["image", "mask"], [{"image": "a;1.png", "mask": "two\nlines.png"}])
