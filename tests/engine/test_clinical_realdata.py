"""The clinical path on the real Sunnybrook DICOM (skipped where ../shared/realdata is absent): its
experts' volumes in mL from the DICOM spacing, in the range of its heart-failure cohort, and a SEG
of real headers (per-file frames of reference, anonymised dates) that highdicom reads back."""

import math

import numpy as np
import pydicom
import pytest

from vlsa.data.dicom import read_dicom
from vlsa.data.dicom_seg import read_seg, write_seg
from vlsa.data.spec import CARDIAC
from vlsa.data.sunnybrook import SunnybrookReader
from vlsa.engine.clinical_indices import subject_indices


def test_sunnybrook_reference_volumes_from_the_dicom_spacing(realdata):
    reader = SunnybrookReader(realdata / "sunnybrook-scd", spacing=1.5)
    samples = list(reader.samples("Sunnybrook", "test"))
    subjects = subject_indices(samples, [s.scoring()[0] for s in samples], CARDIAC, "Sunnybrook",
                               annotated=reader.spec.annotated)
    assert [s.subject for s in subjects] == ["SCD0000101", "SCD0000201", "SCD0000301", "SCD0000401", "SCD0000501"]
    for s in subjects:
        # heart failure after infarction: dilated (EDV 150-300 mL), poorly ejecting (EF 15-40 %) ventricles
        assert 150 < s.true["lv_edv"] < 300 and 15 < s.true["lv_ef"] < 40, s.record()
        assert s.pred["lv_edv"] == s.true["lv_edv"] and math.isnan(s.true["rv_edv"])
    masses = {s.subject: s.true["lv_mass"] for s in subjects}
    assert math.isnan(masses.pop("SCD0000501"))  # its epicardial contours are another patient's
    assert all(80 < m < 250 for m in masses.values()), masses


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_seg_of_real_headers_reads_back(realdata, tmp_path):
    vol = read_dicom(realdata / "sunnybrook-scd" / "dicoms" / "SCD0000101")
    sources = [pydicom.dcmread(f) for f, _ in vol.sources[0]]
    labels = np.zeros(vol.pixels.shape[1:], np.uint8)
    labels[:, 100:140, 110:150] = 1
    labels[:, 120:125, 110:150] = 2
    path = write_seg(tmp_path / "real.seg.dcm", sources, labels, CARDIAC.label_names)
    back, _ = read_seg(path, [ds.SOPInstanceUID for ds in sources])
    assert np.array_equal(back, labels)
