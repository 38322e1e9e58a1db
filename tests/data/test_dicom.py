import numpy as np
import pydicom
import pydicom.encaps
import pytest
from pydicom.uid import RLELossless

from tests.data.dicom_files import write_mr, write_multiframe
from vlsa.data.dicom import list_series, read_dicom
from vlsa.errors import DataError


def _plane(value, shape=(6, 8)):
    return np.full(shape, value, dtype=np.uint16)


def test_slices_are_ordered_by_position_not_by_file_name_or_instance_number(tmp_path):
    # name order a, b, c and instance numbers 1, 2, 3 put the slices at 20, 0, 10 mm
    for name, z, number in (("a", 20.0, 1), ("b", 0.0, 2), ("c", 10.0, 3)):
        write_mr(tmp_path / f"{name}.dcm", _plane(100 + int(z)), position=(-10.0, 5.0, z), number=number)
    (tmp_path / "notes.txt").write_text("not a DICOM file")  # ignored
    vol = read_dicom(tmp_path)
    assert vol.pixels.shape == (1, 3, 6, 8)
    assert vol.pixels[0, :, 0, 0].tolist() == [100.0, 110.0, 120.0]
    assert [p.name for p, _ in vol.sources[0]] == ["b.dcm", "c.dcm", "a.dcm"]
    assert vol.spacing == pytest.approx((10.0, 1.5, 1.25))  # (slice, row, col) mm
    assert vol.slice_positions.tolist() == pytest.approx([0.0, 10.0, 20.0])


def test_oblique_stack_is_ordered_along_the_normal_with_a_matching_affine(tmp_path):
    a = np.deg2rad(30)
    row, col = np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(a), np.sin(a)])
    normal = np.cross(row, col)
    # each slice is also shifted along the column direction, so that sorting by the z coordinate
    # alone would reverse the stack: only the position along the normal orders it
    positions = [k * 7.0 * normal - 30.0 * k * col + np.array([3.0, -2.0, 1.0]) for k in range(3)]
    assert positions[0][2] > positions[1][2] > positions[2][2]
    for name, k in (("x", 2), ("y", 0), ("z", 1)):
        write_mr(tmp_path / f"{name}.dcm", _plane(10 * k), position=positions[k], orientation=(*row, *col))
    vol = read_dicom(tmp_path)
    assert vol.pixels[0, :, 0, 0].tolist() == [0.0, 10.0, 20.0]
    assert vol.spacing[0] == pytest.approx(7.0)  # between the planes, not between the (shifted) corners
    assert np.allclose(vol.normal, normal)
    ras = np.diag([-1.0, -1.0, 1.0])  # DICOM LPS -> NIfTI RAS
    for c, r, k in ((0, 0, 0), (7, 5, 2), (3, 1, 1)):
        expected = ras @ (positions[k] + c * 1.25 * row + r * 1.5 * col)  # PixelSpacing = (row 1.5, col 1.25)
        assert np.allclose(vol.affine @ [c, r, k, 1.0], [*expected, 1.0])
    assert vol.nifti_array(0).shape == (8, 6, 3) and vol.planes(0).shape == (6, 8, 3)


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    write_mr(tmp_path / "1.dcm", np.array([[40, 41], [0, 1000]], dtype=np.uint16), slope=2.5, intercept=-100.0)
    vol = read_dicom(tmp_path / "1.dcm")
    assert vol.pixels.dtype == np.float32
    assert vol.pixels[0, 0].tolist() == [[0.0, 2.5], [-100.0, 2400.0]]


def test_two_phases_by_trigger_time(tmp_path):
    # value = 10 x slice + phase; names shuffled against both
    frames = [("p", 0.0, 700.0, 1), ("q", 8.0, 290.0, 10), ("r", 8.0, 712.0, 11), ("s", 0.0, 285.0, 0)]
    for name, z, trigger, value in frames:
        write_mr(tmp_path / f"{name}.dcm", _plane(value), position=(0.0, 0.0, z), trigger=trigger)
    vol = read_dicom(tmp_path)
    assert vol.pixels.shape == (2, 2, 6, 8)
    assert vol.pixels[:, :, 0, 0].tolist() == [[0.0, 10.0], [1.0, 11.0]]  # phases x slices
    assert vol.trigger_times == pytest.approx([287.5, 706.0])


def test_several_series_are_refused_naming_them_or_picked_by_uid(tmp_path):
    write_mr(tmp_path / "1.dcm", _plane(1), series="1.2.3.1", description="cine SAX")
    write_mr(tmp_path / "2.dcm", _plane(2), position=(0, 0, 8), series="1.2.3.1", description="cine SAX")
    write_mr(tmp_path / "3.dcm", _plane(3), series="1.2.3.2", description="localizer")
    with pytest.raises(DataError) as err:
        read_dicom(tmp_path)
    message = str(err.value)
    assert "\n" not in message and "holds 2 series" in message
    assert "1.2.3.1 (cine SAX, 2 files)" in message and "1.2.3.2 (localizer, 1 files)" in message
    assert read_dicom(tmp_path, series_uid="1.2.3.2").pixels[0, 0, 0, 0] == 3.0
    assert {s.uid: len(s.files) for s in list_series(tmp_path)} == {"1.2.3.1": 2, "1.2.3.2": 1}


def test_missing_pixel_spacing_names_the_file(tmp_path):
    write_mr(tmp_path / "1.dcm", _plane(1))
    write_mr(tmp_path / "2.dcm", _plane(1), position=(0, 0, 8), spacing=None)
    with pytest.raises(DataError, match=r"2\.dcm: no PixelSpacing"):
        read_dicom(tmp_path)


def test_frames_at_one_position_need_distinct_trigger_times(tmp_path):
    write_mr(tmp_path / "1.dcm", _plane(1), trigger=100.0)
    write_mr(tmp_path / "2.dcm", _plane(2), trigger=100.0)
    with pytest.raises(DataError, match="2 frames at slice position 0.00 mm .* without distinct"):
        read_dicom(tmp_path)


def test_an_incomplete_cine_is_refused(tmp_path):
    write_mr(tmp_path / "1.dcm", _plane(1), trigger=100.0)
    write_mr(tmp_path / "2.dcm", _plane(2), trigger=400.0)
    write_mr(tmp_path / "3.dcm", _plane(3), position=(0, 0, 8), trigger=100.0)
    with pytest.raises(DataError, match="unequal numbers of frames"):
        read_dicom(tmp_path)


def test_multiframe_file_gives_phases_by_slices(tmp_path):
    # frames in file order: (z 8, late), (z 0, early), (z 8, early), (z 0, late)
    frames = np.stack([_plane(v) for v in (11, 0, 10, 1)])
    path = write_multiframe(tmp_path / "cine.dcm", frames, positions=[(0, 0, 8), (0, 0, 0), (0, 0, 8), (0, 0, 0)],
                            triggers=[600, 20, 25, 610])
    vol = read_dicom(path)
    assert vol.pixels[:, :, 0, 0].tolist() == [[0.0, 10.0], [1.0, 11.0]]
    assert vol.sources[0] == [(path, 1), (path, 2)]
    assert vol.spacing == pytest.approx((8.0, 1.5, 1.25))


def test_compressed_pixel_data_is_decoded_or_refused_naming_the_syntax(tmp_path):
    pixels = np.arange(48, dtype=np.uint16).reshape(6, 8)
    path = write_mr(tmp_path / "rle" / "1.dcm", pixels)
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)  # pydicom's own RLE encoder and decoder
    ds.save_as(path)
    assert np.array_equal(read_dicom(path).pixels[0, 0], pixels)

    from pydicom import uid
    from pydicom.pixels import get_decoder

    missing = [u for u in (uid.HTJ2KLossless, uid.JPEGLosslessSV1, uid.JPEGLSLossless)
               if not get_decoder(u).is_available]
    if not missing:
        pytest.skip("every candidate compressed syntax has a decoder installed here")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = missing[0]
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 16])
    ds.save_as(path)
    with pytest.raises(DataError) as err:
        read_dicom(path)
    assert f"1.dcm: cannot decode the pixel data, transfer syntax {missing[0].name} ({missing[0]})" in str(err.value)
    assert "\n" not in str(err.value)
