"""Small DICOM MR files written with pydicom, as scanners write them (tests only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _base(rows: int, cols: int, series: str, description: str, syntax=ExplicitVRLittleEndian) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1", series
    ds.Modality, ds.SeriesDescription = "MR", description
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def write_mr(path: Path, pixels: np.ndarray, position=(0.0, 0.0, 0.0), orientation=AXIAL, spacing=(1.5, 1.25),
             trigger: float | None = None, series: str = "1.2.826.0.1.3680043.8.498.2", description: str = "cine SAX",
             slope: float | None = None, intercept: float | None = None, thickness: float = 8.0,
             number: int = 1, extra: dict | None = None) -> Path:
    """One single-frame MR image; pixels H x W (stored uint16); `extra`: more attributes by keyword
    (e.g. FrameOfReferenceUID, PatientID, StudyDate)."""
    ds = _base(*pixels.shape, series, description)
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    if spacing is not None:
        ds.PixelSpacing = [float(v) for v in spacing]
    ds.SliceThickness = thickness
    if trigger is not None:
        ds.TriggerTime = trigger
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0.0
    ds.InstanceNumber = number
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_multiframe(path: Path, frames: np.ndarray, positions, triggers, orientation=AXIAL,
                     spacing=(1.5, 1.25)) -> Path:
    """One enhanced-MR-style multi-frame file; frames N x H x W with a position and a trigger
    time per frame (PerFrameFunctionalGroupsSequence), spacing/orientation shared."""
    ds = _base(*frames.shape[1:], "1.2.826.0.1.3680043.8.498.3", "enhanced cine")
    ds.NumberOfFrames = len(frames)
    shared = Dataset()
    measures, plane = Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [float(v) for v in spacing], 8.0
    plane.ImageOrientationPatient = [float(v) for v in orientation]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([plane])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for position, trigger in zip(positions, triggers):
        group, pos, sync = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [float(v) for v in position]
        sync.NominalCardiacTriggerDelayTime = float(trigger)
        group.PlanePositionSequence, group.CardiacSynchronizationSequence = Sequence([pos]), Sequence([sync])
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.ascontiguousarray(frames, dtype=np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return Path(path)
