"""Issue 13's table: inputs that were read silently wrong, each with the right labels or the exact
one-line message (exit status 2 through the command line). Inputs are made on the fly."""

import contextlib
import io
import logging

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from tests.conftest import tiny_overrides
from tests.data.test_mms import _case
from tests.data.verify_output import problems
from vlsa.cli import main
from vlsa.data.folder import FolderReader
from vlsa.data.fundus import DoFEReader, encode_dofe_mask
from vlsa.data.mms import MMSReader


def vlsa(*args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, err.getvalue().strip()


def first_problem(err: str) -> str:
    """-> the first problem's line of `vlsa verify`'s stderr, after checking its shape."""
    return problems(err)[0]


def _label(h=16, w=16):
    label = np.zeros((h, w), dtype=np.int64)
    label[3:13, 3:13] = 1
    label[6:10, 6:10] = 2
    return label


def _dofe(root, mask_for, names=("a0", "a1"), image_ext=".png", mask_ext=".png", domains=("Domain1", "Domain2")):
    """DoFE layout; `mask_for(label) -> PIL image` writes each mask."""
    for domain in domains:
        for split in ("train", "test"):
            base = root / domain / split / "ROIs"
            (base / "image").mkdir(parents=True, exist_ok=True)
            (base / "mask").mkdir(parents=True, exist_ok=True)
            for name in names:
                Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(base / "image" / f"{name}{image_ext}")
                mask_for(_label()).save(base / "mask" / f"{name}{mask_ext}")
    return root


def _folder(root, values=(1, 2), channels=1, n=6):
    root.mkdir(parents=True, exist_ok=True)
    classes = "\n".join(f"  - {{name: c{v}, value: {v}}}" for v in values)
    (root / "classes.yaml").write_text(f"channels: {channels}\nclasses:\n{classes}\n")
    for d in ("s1", "s2"):
        (root / d / "images").mkdir(parents=True, exist_ok=True)
        (root / d / "masks").mkdir(parents=True, exist_ok=True)
    return root


def _palette_mask(indices):
    im = Image.fromarray(indices.astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 220, 40, 40, 40, 220, 40] + [0] * (253 * 3))
    return im


# row 1 ------------------------------------------------------------------------------------------
def test_row1_dofe_masks_with_class_indices_are_refused(tmp_path):
    root = _dofe(tmp_path / "d", lambda label: Image.fromarray(label.astype(np.uint8)))
    code, err = vlsa("verify", "--dataset", "fundus", "--root", root)
    mask = root / "Domain1" / "train" / "ROIs" / "mask" / "a0.png"
    assert code == 2
    assert first_problem(err) == (f"vlsa: error: {mask}: mask values [0, 1, 2] are not DoFE grey levels (255 background, "
                   "128 rim, 0 cup); they look like class indices")


# row 2 ------------------------------------------------------------------------------------------
def test_row2_palette_masks_read_their_indices_in_a_folder_dataset(tmp_path):
    root = _folder(tmp_path / "f", values=(1, 2))
    for d in ("s1", "s2"):
        for i in range(6):
            Image.fromarray(np.full((16, 16), 30 * i, np.uint8)).save(root / d / "images" / f"i{i}.png")
            _palette_mask(_label()).save(root / d / "masks" / f"i{i}.png")
    samples = list(FolderReader(root).samples("s1", "train"))
    assert samples and all(np.array_equal(s.label, _label()) for s in samples)


def test_row2_palette_masks_in_the_dofe_layout_are_refused(tmp_path):
    root = _dofe(tmp_path / "d", _palette_mask)
    code, err = vlsa("verify", "--dataset", "fundus", "--root", root)
    assert code == 2
    assert first_problem(err).endswith("a0.png: mask values [0, 1, 2] are not DoFE grey levels (255 background, 128 rim, 0 cup); "
                        "they look like class indices")


# row 3 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_row3_label_in_the_alpha_channel(tmp_path, mode):
    root = _folder(tmp_path / "f", values=(255,))
    lesion = np.zeros((16, 16), np.uint8)
    lesion[4:8, 4:12] = 255
    white = np.full((16, 16, 1 if mode == "LA" else 3), 255, np.uint8)
    for d in ("s1", "s2"):
        for i in range(6):
            Image.fromarray(np.full((16, 16), 30 * i, np.uint8)).save(root / d / "images" / f"i{i}.png")
            Image.fromarray(np.concatenate([white, lesion[..., None]], axis=2), mode).save(root / d / "masks" / f"i{i}.png")
    for s in FolderReader(root).samples("s1", "train"):
        assert s.label.mean() == pytest.approx(32 / 256)  # the lesion, not 100 %
    code, err = vlsa("verify", "--dataset", "folder", "--root", root)
    assert code == 0, err


# row 4 ------------------------------------------------------------------------------------------
def _sixteen_bit(shape=(16, 16)):
    values = np.linspace(0, 4100, shape[0] * shape[1]).reshape(shape).astype(np.uint16)
    return values, values / 4100.0


def test_row4_sixteen_bit_images_in_a_three_channel_folder_dataset(tmp_path):
    root = _folder(tmp_path / "f", values=(255,), channels=3)
    values, expected = _sixteen_bit()
    mask = np.zeros((16, 16), np.uint8)
    mask[2:6, 2:6] = 255
    for d in ("s1", "s2"):
        for i in range(6):
            Image.fromarray(values).save(root / d / "images" / f"i{i}.png")
            Image.fromarray(mask).save(root / d / "masks" / f"i{i}.png")
    (sample, *_) = list(FolderReader(root).samples("s1", "train"))
    assert sample.image.shape == (3, 16, 16)
    assert np.allclose(sample.image, expected[None], atol=1e-6)
    assert (sample.image >= 1.0).mean() < 0.01  # was 93 % saturated


def test_row4_sixteen_bit_image_given_to_predict(fundus_root, tmp_path):
    from vlsa.engine.predict import Predictor

    args = [a for o in tiny_overrides(fundus_root, steps=1) for a in ("--set", o)]
    code, err = vlsa("train", *args, "--out", tmp_path / "run")
    assert code == 0, err
    values, expected = _sixteen_bit((20, 24))
    Image.fromarray(values).save(tmp_path / "x16.png")
    chw, labels = Predictor(tmp_path / "run").predict_image(tmp_path / "x16.png")
    assert np.allclose(chw, expected[None], atol=1e-6) and labels.shape == (20, 24)
    code, err = vlsa("predict", "--run", tmp_path / "run", "--input", tmp_path / "x16.png", "--output", tmp_path / "out")
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "out" / "x16.png")).shape == (20, 24)


# row 5 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("image_ext, mask_ext", [(".PNG", ".png"), (".JPG", ".PNG"), (".tif", ".TIF"),
                                                 (".png", ".jpeg"), (".jpeg", ".bmp")])
def test_row5_dofe_pairs_by_name_case_insensitively_over_all_extensions(tmp_path, image_ext, mask_ext):
    def mask_for(label):
        return Image.fromarray(encode_dofe_mask(label))

    root = _dofe(tmp_path / "d", mask_for, names=("n0001", "g0002"), image_ext=image_ext, mask_ext=mask_ext)
    samples = list(DoFEReader(root).samples("Domain1", "train"))
    assert [s.name for s in samples] == ["g0002", "n0001"]
    for s in samples:  # JPEG masks too: the public loaders' thresholds absorb the compression noise
        assert np.array_equal(s.label, _label())


def test_row5_no_mask_lists_same_stem_files(tmp_path):
    root = _dofe(tmp_path / "d", lambda label: Image.fromarray(encode_dofe_mask(label)), names=("a0",))
    mask_dir = root / "Domain1" / "train" / "ROIs" / "mask"
    (mask_dir / "a0.png").rename(mask_dir / "a0.png.bak")
    code, err = vlsa("verify", "--dataset", "fundus", "--root", root)
    image = root / "Domain1" / "train" / "ROIs" / "image" / "a0.png"
    assert code == 2
    assert err == f"vlsa: error: {image}: image has no mask in {mask_dir} (same-stem files there are not images/NIfTI: a0.png.bak)"


# row 6 ------------------------------------------------------------------------------------------
def test_row6_names_are_compared_literally_and_json_is_not_a_mask(tmp_path):
    root = _folder(tmp_path / "f", values=(1, 2))
    names = ["case[2]", "a*b", "q?", "plain", "x[0-9]", "y"]
    for d in ("s1", "s2"):
        for i, name in enumerate(names):
            Image.fromarray(np.full((16, 16), 30 * i, np.uint8)).save(root / d / "images" / f"{name}.png")
            Image.fromarray(_label().astype(np.uint8)).save(root / d / "masks" / f"{name}.png")
            (root / d / "masks" / f"{name}.json").write_text('{"shapes": []}')  # labelme annotation
    reader = FolderReader(root, test_fraction=0.3)
    got = list(reader.samples("s1", "train")) + list(reader.samples("s1", "test"))
    assert sorted(s.name for s in got) == sorted(names)
    assert all(np.array_equal(s.label, _label()) for s in got)


# row 7 ------------------------------------------------------------------------------------------
def _mms_csv(root, rows, sep=","):
    lines = [sep.join(["", "External code", "VendorName", "Vendor", "Centre", "ED", "ES"])]
    lines += [sep.join(map(str, [i, *row])) for i, row in enumerate(rows)]
    (root / "211230_M&Ms_Dataset_information_diagnosis_opendataset.csv").write_text("\n".join(lines) + "\n")


def test_row7_one_based_ed_es_stop_with_the_case_and_the_labelled_frames(tmp_path):
    _case(tmp_path, "A1B2C3")  # labels on frames 1 and 3
    _case(tmp_path, "A2B2C3")
    _mms_csv(tmp_path, [("A1B2C3", "Siemens", "A", 1, 2, 4), ("A2B2C3", "Siemens", "A", 1, 2, 4)])
    code, err = vlsa("verify", "--dataset", "mms", "--root", tmp_path)
    first = MMSReader(tmp_path).cases_of("A", "train")[0]
    assert code == 2
    assert first_problem(err) == (f"vlsa: error: {first.label}: case {first.code}: the csv names frame(s) ED=2, ES=4 but they carry no labels; "
                   "frames with labels: [1, 3] (the csv's ED/ES look 1-based)")


# row 8 ------------------------------------------------------------------------------------------
def test_row8_semicolon_csv_with_float_ed_es(tmp_path):
    _case(tmp_path, "A1B2C3")
    _case(tmp_path, "A2B2C3")
    _mms_csv(tmp_path, [("A1B2C3", "Siemens", "A", 1, "1.0", "3.0"), ("A2B2C3", "Siemens", "A", 1, "1.0", "3.0")],
             sep=";")
    reader = MMSReader(tmp_path)
    assert [(c.code, c.ed, c.es) for c in reader.cases] == [("A1B2C3", 1, 3), ("A2B2C3", 1, 3)]
    slices = list(reader.case_samples(reader.cases[0]))
    assert all(s.label.any() for s in slices)


# row 9 ------------------------------------------------------------------------------------------
def _nifti_pixdim0(path, data):
    img = nib.Nifti1Image(data, np.diag([1.3, 1.3, 4.0, 1.0]))
    img.header["pixdim"][1] = 0.0
    nib.save(img, str(path))


def test_row9_pixdim_zero_takes_the_spacing_from_the_affine(tmp_path, caplog):
    root = _folder(tmp_path / "f", values=(1,))
    rng = np.random.default_rng(0)
    mask = np.zeros((12, 10, 2), np.uint8)
    mask[2:6, 2:6] = 1
    for d in ("s1", "s2"):
        for i in range(4):
            _nifti_pixdim0(root / d / "images" / f"v{i}.nii.gz", rng.uniform(size=(12, 10, 2)).astype(np.float32))
            _nifti_pixdim0(root / d / "masks" / f"v{i}.nii.gz", mask)
    with caplog.at_level(logging.DEBUG):
        slices = list(FolderReader(root).samples("s1", "train"))
    assert slices and all(s.spacing == (pytest.approx(1.3), pytest.approx(1.3)) for s in slices)
    assert all(s.slice_thickness == pytest.approx(4.0) for s in slices)
    assert not [r for r in caplog.records if r.name.startswith("nibabel")]
    code, err = vlsa("verify", "--dataset", "folder", "--root", root)
    assert code == 0 and "pixdim" not in err


# row 10 -----------------------------------------------------------------------------------------
def test_row10_jpeg_masks_are_called_lossy_with_a_few_values(tmp_path):
    root = _folder(tmp_path / "f", values=(255,))
    mask = np.zeros((32, 32), np.uint8)
    mask[5:20, 7:25] = 255
    for d in ("s1", "s2"):
        for i in range(6):
            Image.fromarray(np.full((32, 32), 30 * i, np.uint8)).save(root / d / "images" / f"i{i}.png")
            Image.fromarray(mask).save(root / d / "masks" / f"i{i}.jpg", quality=70)
    code, err = vlsa("verify", "--dataset", "folder", "--root", root)
    first = sorted(FolderReader(root).pairs("s1", "train"))[0][1]
    found = np.unique(np.asarray(Image.open(first)))
    unknown = [int(v) for v in found if v not in (0, 255)]
    shown = ", ".join(map(str, unknown[:4]))
    assert len(unknown) > 4 and code == 2
    assert first_problem(err) == (f"vlsa: error: {first}: mask is JPEG (lossy): {len(found)} distinct values, e.g. [{shown}, ...] "
                   f"({len(unknown)} values) not in the encoding [0, 255]; save masks losslessly (PNG)")


# beyond the table -------------------------------------------------------------------------------
def test_a_class_covering_every_pixel_of_a_domain_is_refused(tmp_path):
    root = _folder(tmp_path / "f", values=(255,))
    for d in ("s1", "s2"):
        for i in range(6):
            Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(root / d / "images" / f"i{i}.png")
            Image.fromarray(np.full((8, 8), 255, np.uint8)).save(root / d / "masks" / f"i{i}.png")
    code, err = vlsa("verify", "--dataset", "folder", "--root", root)
    train = FolderReader(root).pairs("s1", "train")  # the per-id split rule decides how many
    first, n = train[0][0].stem, len(train)
    assert code == 2
    assert first_problem(err) == (f"vlsa: error: {root}: class 'c255' covers every pixel of all {n} images of s1/train (first: {first}); "
                   "the masks are not in this dataset's label encoding")


def test_a_domain_without_any_label_is_a_warning_naming_it(tmp_path, caplog):
    root = _folder(tmp_path / "f", values=(255,))
    for i in range(6):
        Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(root / "s1" / "images" / f"i{i}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "s1" / "masks" / f"i{i}.png")
    train = FolderReader(root).pairs("s1", "train")  # the per-id split rule decides how many
    with caplog.at_level(logging.WARNING):
        assert len(list(FolderReader(root).samples("s1", "train"))) == len(train) >= 4
    first = train[0][0].stem
    assert [r.getMessage() for r in caplog.records] == [
        f"{root}: no image of s1/train has any foreground label ({len(train)} images, first: {first})"]


def test_sixteen_bit_masks_and_hidden_files_in_the_dofe_layout(tmp_path):
    root = _dofe(tmp_path / "d", lambda label: Image.fromarray(encode_dofe_mask(label).astype(np.uint16)))
    image_dir = root / "Domain1" / "train" / "ROIs" / "image"
    (image_dir / "._a0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS resource fork
    assert Image.open(root / "Domain1" / "train" / "ROIs" / "mask" / "a0.png").mode == "I;16"
    samples = list(DoFEReader(root).samples("Domain1", "train"))
    assert [s.name for s in samples] == ["a0", "a1"] and all(np.array_equal(s.label, _label()) for s in samples)


def test_non_integer_nifti_labels_are_refused(tmp_path):
    root = _folder(tmp_path / "f", values=(1,))
    for d in ("s1",):
        for i in range(4):
            nib.save(nib.Nifti1Image(np.ones((6, 6, 2), np.float32), np.eye(4)), str(root / d / "images" / f"v{i}.nii.gz"))
            nib.save(nib.Nifti1Image(np.full((6, 6, 2), 0.5, np.float32), np.eye(4)), str(root / d / "masks" / f"v{i}.nii.gz"))
    code, err = vlsa("verify", "--dataset", "folder", "--root", root, "--domains", "s1")
    assert code == 2
    assert first_problem(err).endswith("masks/v0.nii.gz: label volume holds non-integer values (e.g. 0.5); "
                                       "was it resampled with linear interpolation?")
