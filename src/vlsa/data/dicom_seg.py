"""DICOM Segmentation objects (PS3.3 A.51) of predicted label maps, written with highdicom.

One SEG per cine phase: a SEG holds one frame per (segment, plane position), so the phases of a
cine series, which share their positions, cannot share one SEG. Each SEG references the source
images of its phase (ReferencedSeriesSequence, per-frame DerivationImageSequence), so a viewer
lays it over them; its segments are the label indices 1.. of the model (BINARY, one segment per
label), each with a name, a colour (the report's palette) and coded concepts:

| vlsa label | segment label | property category | property type |
|---|---|---|---|
| lv | LV blood pool | SCT 91723000 Anatomical Structure | SCT 87878005 Left ventricle |
| myo | LV myocardium | SCT 91723000 Anatomical Structure | SCT 49848007 Left ventricle myocardium |
| rv | RV blood pool | SCT 91723000 Anatomical Structure | SCT 53085002 Right ventricle |

(pydicom's SNOMED dictionary has no code for a ventricle's blood pool; the ventricle's code with
the label "blood pool" is what dcmqi's and MONAI Label's cardiac SEGs use too.) Other labels get
SCT 85756007 Tissue with the label name.

What real headers need before highdicom accepts them (copies are fixed, never the source files):
- dates / times an anonymiser blanked to zeros (`00000000`, `20120000`) are left empty, and the
  patient and study attributes DICOM requires to be present (type 2) are added empty where absent;
- files of one stack whose FrameOfReferenceUIDs differ (Sunnybrook's anonymiser gave every file
  its own) get the first file's, with a warning: the reader has checked they form one stack (one
  orientation, positions along one normal), which only one frame of reference can give.
A series without any FrameOfReferenceUID, or a multi-frame cine file, is refused (DataError).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from pathlib import Path

import numpy as np

from vlsa.errors import DataError
from vlsa.utils.atomic import atomic_path

log = logging.getLogger(__name__)

# label name -> (segment label, property type attribute of pydicom's codes.SCT)
CARDIAC_SEGMENTS = {"lv": ("LV blood pool", "LeftVentricle"), "myo": ("LV myocardium", "LeftVentricleMyocardium"),
                    "rv": ("RV blood pool", "RightVentricle")}
TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                       "ReferringPhysicianName", "StudyID", "AccessionNumber")
SERIES_NUMBER = 9901  # SEG series number: beside the source's, where viewers list derived series


@contextlib.contextmanager
def _lenient_pydicom():
    # real headers carry values pydicom flags (UIDs with leading-zero components, anonymised
    # names); they are copied as they are, without a warning per file and element
    import pydicom

    settings = pydicom.config.settings
    modes = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = modes


def segment_descriptions(label_names) -> list:
    """highdicom SegmentDescriptions for labels 1.. of `label_names` (index 0 is background)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from vlsa import __version__
    from vlsa.report.overlay import PALETTE

    algorithm = hd.AlgorithmIdentificationSequence(name="vlsa", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    out = []
    for number, name in enumerate(label_names[1:], start=1):
        label, code = CARDIAC_SEGMENTS.get(name, (name, "Tissue"))
        rgb = PALETTE[(number - 1) % len(PALETTE)]
        out.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=label, segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=getattr(codes.SCT, code), algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, display_color=hd.color.CIELabColor.from_rgb(*(int(c) for c in rgb))))
    return out


def _clean_copies(headers: list, where) -> list:
    """Copies of the source headers that highdicom accepts (see the module docstring)."""
    from pydicom.valuerep import DA, DT, TM

    parse = {"DA": DA, "TM": TM, "DT": DT}
    out, blanked = [], set()
    for ds in headers:
        ds = copy.deepcopy(ds)
        for keyword in TYPE2_PATIENT_STUDY:
            if keyword not in ds:  # type 2: present, possibly empty; some writers leave them out
                setattr(ds, keyword, "")
        for element in ds:
            if element.VR in parse and element.value not in (None, ""):
                try:
                    parse[element.VR](element.value)
                except ValueError:
                    blanked.add(element.keyword)
                    element.value = ""
        out.append(ds)
    if blanked:
        log.info("%s: invalid %s left empty in the SEG", where, ", ".join(sorted(blanked)))
    frames = {str(ds.get("FrameOfReferenceUID", "")) for ds in out}
    if frames == {""}:
        raise DataError(where, "no FrameOfReferenceUID: a DICOM SEG needs its source images' frame of reference")
    if len(frames) > 1:
        first = next(str(ds.FrameOfReferenceUID) for ds in out if ds.get("FrameOfReferenceUID"))
        log.warning("%s: the %d source files carry %d different FrameOfReferenceUIDs though they form one stack; "
                    "the SEG uses the first, %s", where, len(out), len(frames), first)
        for ds in out:
            ds.FrameOfReferenceUID = first
    return out


def write_seg(path: str | Path, headers: list, labels: np.ndarray, label_names, description: str = "") -> Path:
    """Write one DICOM SEG of the label maps of one phase.

    headers: the pydicom Datasets of the source images, one single-frame image per plane, in the
        order of `labels`' planes; labels: Z x H x W integer label map (0 background, 1.. the
        labels of `label_names`), plane z on source image z's pixel grid.
    Raises DataError (naming `path`) where the sources cannot carry a SEG (different sizes, no
    frame of reference, multi-frame sources) or highdicom refuses them. Written atomically.
    """
    import highdicom as hd

    from vlsa import __version__

    labels = np.asarray(labels)
    if labels.ndim != 3 or len(headers) != labels.shape[0]:
        raise ValueError(f"labels {labels.shape} need one Z x H x W plane per source image ({len(headers)})")
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in headers):
        raise DataError(path, "a DICOM SEG of a multi-frame source file is not supported; use --format nifti")
    try:
        with _lenient_pydicom():
            sources = _clean_copies(headers, Path(getattr(headers[0], "filename", "") or path).parent)
            seg = hd.seg.Segmentation(
                source_images=sources, pixel_array=labels.astype(np.uint8),
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=segment_descriptions(tuple(label_names)), series_instance_uid=hd.UID(),
                series_number=SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1, manufacturer="vlsa",
                manufacturer_model_name="vlsa", software_versions=__version__, device_serial_number="none",
                content_description=(description or "vlsa segmentation")[:64], content_label="VLSA",
                series_description=(description or "vlsa segmentation")[:64])
            with atomic_path(path) as tmp:
                seg.save_as(tmp)
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(path, f"cannot write a DICOM SEG of these source images: {first}") from None
    return Path(path)


def read_seg(path: str | Path, source_uids: list[str]) -> tuple[np.ndarray, list[str]]:
    """A SEG -> (Z x H x W uint8 label map on the source images `source_uids` (SOPInstanceUIDs, in
    that order; segment number = label), the segment labels in segment-number order), via highdicom."""
    import highdicom as hd

    with _lenient_pydicom():
        seg = hd.seg.segread(str(path))
        labels = seg.get_pixels_by_source_instance(source_sop_instance_uids=list(source_uids), combine_segments=True,
                                                   skip_overlap_checks=True, dtype=np.uint8)
    names = [str(item.SegmentLabel) for item in seg.SegmentSequence]
    return labels, names
