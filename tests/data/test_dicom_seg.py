"""DICOM SEG of label maps (highdicom): written, read back with highdicom, the same masks on the
same source frames; segment names, codes and colours; what real headers need fixed."""

import logging

import highdicom as hd
import numpy as np
import pydicom
import pytest

from tests.data.cine_series import cine_labels, write_cine
from vlsa.data.dicom import read_dicom
from vlsa.data.dicom_seg import read_seg, write_seg
from vlsa.data.spec import CARDIAC
from vlsa.errors import DataError


def _phase_sources(vol, p):
    return [pydicom.dcmread(path) for path, _ in vol.sources[p]]


def test_seg_round_trip_gives_the_same_masks_on_the_same_frames(tmp_path):
    labels = cine_labels([5, 3])
    write_cine(tmp_path / "in", labels)
    vol = read_dicom(tmp_path / "in")
    for p in range(2):
        sources = _phase_sources(vol, p)
        path = write_seg(tmp_path / f"p{p}.seg.dcm", sources, labels[p], CARDIAC.label_names)
        back, names = read_seg(path, [ds.SOPInstanceUID for ds in sources])
        assert back.shape == labels[p].shape and np.array_equal(back, labels[p])
        assert names == ["LV blood pool", "LV myocardium", "RV blood pool"]
        # the frames are tied to their source images, not to an order: reversed UIDs -> reversed planes
        reverse, _ = read_seg(path, [ds.SOPInstanceUID for ds in sources][::-1])
        assert np.array_equal(reverse, labels[p][::-1])
    seg = hd.seg.segread(str(tmp_path / "p0.seg.dcm"))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == vol.series_uid
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID and seg.PatientID == "CINE1"


def test_segments_carry_snomed_codes_and_the_report_colours():
    from vlsa.data.dicom_seg import segment_descriptions
    from vlsa.report.overlay import PALETTE

    lv, myo, rv = segment_descriptions(CARDIAC.label_names)
    codes = [d.SegmentedPropertyTypeCodeSequence[0] for d in (lv, myo, rv)]
    assert [(c.CodingSchemeDesignator, c.CodeValue) for c in codes] == [("SCT", "87878005"), ("SCT", "49848007"),
                                                                       ("SCT", "53085002")]
    assert {d.SegmentedPropertyCategoryCodeSequence[0].CodeValue for d in (lv, myo, rv)} == {"91723000"}
    assert lv.SegmentAlgorithmType == "AUTOMATIC" and lv.SegmentAlgorithmName == "vlsa"
    for d, rgb in zip((lv, myo, rv), PALETTE):
        shown = hd.color.CIELabColor.from_dicom_value(d.RecommendedDisplayCIELabValue).to_rgb()
        assert np.allclose(shown, rgb, atol=2)


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_anonymised_dates_and_per_file_frames_of_reference_are_fixed_in_copies(tmp_path, caplog):
    labels = cine_labels([4])
    written = write_cine(tmp_path / "in", labels, extra={"StudyDate": "20120000", "PatientBirthDate": "00000000"})
    for k, item in enumerate(written):  # what Sunnybrook's anonymiser did: one frame of reference per file
        ds = pydicom.dcmread(item["path"])
        ds.FrameOfReferenceUID = f"1.2.826.0.1.3680043.8.498.9{k}"
        ds.save_as(item["path"])
    vol = read_dicom(tmp_path / "in")
    sources = _phase_sources(vol, 0)
    with caplog.at_level(logging.WARNING):
        path = write_seg(tmp_path / "x.seg.dcm", sources, labels[0], CARDIAC.label_names)
    assert "4 different FrameOfReferenceUIDs" in caplog.text
    assert sources[1].StudyDate == "20120000"  # the caller's datasets are left as they were
    seg = hd.seg.segread(str(path))
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID and seg.StudyDate == ""
    assert np.array_equal(read_seg(path, [ds.SOPInstanceUID for ds in sources])[0], labels[0])


def test_sources_without_a_frame_of_reference_are_refused_in_one_line(tmp_path):
    labels = cine_labels([4], slices=2)
    written = write_cine(tmp_path / "in", labels)
    for item in written:
        ds = pydicom.dcmread(item["path"])
        del ds.FrameOfReferenceUID
        ds.save_as(item["path"])
    sources = _phase_sources(read_dicom(tmp_path / "in"), 0)
    with pytest.raises(DataError, match="no FrameOfReferenceUID") as err:
        write_seg(tmp_path / "x.seg.dcm", sources, labels[0], CARDIAC.label_names)
    assert "\n" not in str(err.value) and not (tmp_path / "x.seg.dcm").exists()
