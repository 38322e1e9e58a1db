"""DICOM series -> volume(s) with spacing and orientation from the header (pydicom).

Used by the Sunnybrook reader and by `vlsa predict` for DICOM input. Accepts a folder of
single-frame files, one multi-frame (enhanced) file, or an explicit list of files.

Geometry comes from the header only, never from file names or file order (DICOM PS3.3 C.7.6.2):
- slices are ordered by their position along the slice normal, d = ImagePositionPatient . n with
  n = row cosine x column cosine (ImageOrientationPatient), ascending;
- frames at the same position are cine phases, ordered by TemporalPositionIdentifier (enhanced:
  FrameContentSequence TemporalPositionIndex) or else TriggerTime (enhanced:
  NominalCardiacTriggerDelayTime), ascending; phase k of a volume is the k-th frame in time at
  every slice position (the per-slice trigger times differ by a few ms on real scanners);
- in-plane spacing = PixelSpacing (row spacing, column spacing) mm; slice spacing = the median
  distance between consecutive slice positions, else SliceThickness for a single slice;
- RescaleSlope / RescaleIntercept are applied (pixels are in the modality's units, float32).

Several series in one folder are refused (one line naming each series' UID, description and file
count) unless `series_uid` picks one. Compressed transfer syntaxes are decoded where pydicom's
installed plugins can (RLE natively; JPEG / JPEG 2000 through Pillow, pylibjpeg or GDCM), else
refused naming the syntax. Files that are not DICOM images (other files, DICOMDIR, reports
without pixels) are ignored; `vlsa -v` names them.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlsa.errors import DataError

log = logging.getLogger(__name__)

SAME_POSITION_MM = 0.05  # frames closer than this along the normal lie at one slice position


@dataclass(frozen=True)
class SeriesInfo:
    """One series found in a folder: its UID, SeriesDescription and files (in name order)."""

    uid: str
    description: str
    files: tuple[Path, ...]

    def describe(self) -> str:
        return f"{self.uid} ({self.description or 'no description'}, {len(self.files)} files)"


@dataclass
class DicomVolume:
    """A series as volume(s).

    pixels: P x Z x H x W float32 (P cine phases, Z slices ordered along the normal, H rows,
        W columns), RescaleSlope/Intercept applied.
    spacing: (slice, row, col) mm: slice spacing, then PixelSpacing (between rows, between columns).
    affine: 4 x 4 NIfTI-style (RAS+, mm) affine of the voxel index (column, row, slice), i.e. of
        the W x H x Z array `nifti_array(p)` (the orientation dcm2niix writes).
    positions: Z x 3 ImagePositionPatient (LPS, mm) of each slice; normal: the unit slice normal
        (LPS); slice_positions: Z distances d along it (mm).
    trigger_times: per phase, the median TriggerTime over slices (ms), or None where absent.
    sources: P x Z (file, frame index in that file) of every plane, so callers can match
        planes to per-file annotations (e.g. contour files named after the image number).
    """

    pixels: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    positions: np.ndarray
    normal: np.ndarray
    slice_positions: np.ndarray
    trigger_times: list[float | None]
    sources: list[list[tuple[Path, int]]]
    series_uid: str = ""
    description: str = ""
    headers: list = field(default_factory=list, repr=False)  # one pydicom Dataset per file read

    @property
    def phases(self) -> int:
        return self.pixels.shape[0]

    def nifti_array(self, phase: int = 0) -> np.ndarray:
        """W x H x Z array of one phase, the layout `affine` maps (write it with nibabel as is)."""
        return np.ascontiguousarray(self.pixels[phase].transpose(2, 1, 0))

    def planes(self, phase: int = 0) -> np.ndarray:
        """H x W x Z array of one phase (rows x columns as displayed, slices last), for
        `vlsa.data.resample.volume_planes` with zooms (spacing[1], spacing[2], spacing[0])."""
        return np.ascontiguousarray(self.pixels[phase].transpose(1, 2, 0))


@dataclass
class _Frame:
    path: Path
    index: int  # frame number inside a multi-frame file (0 for single-frame files)
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    thickness: float | None
    temporal: float | None
    trigger: float | None
    slope: float
    intercept: float
    shape: tuple[int, int]


@contextlib.contextmanager
def _quiet_pydicom():
    # real headers carry small VR violations (e.g. a UID component with a leading zero); pydicom
    # reads them correctly and would otherwise warn once per file
    import pydicom

    mode = pydicom.config.settings.reading_validation_mode
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        pydicom.config.settings.reading_validation_mode = mode


@_quiet_pydicom()
def read_header(path: Path, pixels: bool = False):
    """The pydicom Dataset of `path`, or None when it is not a DICOM image (no Rows / not DICOM)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=not pixels)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError):
        return None
    return ds if "Rows" in ds and "Columns" in ds else None


@_quiet_pydicom()
def list_series(folder: str | Path) -> list[SeriesInfo]:
    """The image series of the files directly in `folder` (subfolders and non-DICOM files ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "DICOM folder not found")
    groups: dict[str, list[Path]] = {}
    descriptions: dict[str, str] = {}
    ignored = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        ds = read_header(path)
        if ds is None:
            ignored.append(path.name)
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        groups.setdefault(uid, []).append(path)
        descriptions.setdefault(uid, str(ds.get("SeriesDescription", "")))
    if ignored:
        log.info("%s: ignored %d file(s) that are not DICOM images: %s", folder, len(ignored),
                 ", ".join(ignored[:5]) + (" ..." if len(ignored) > 5 else ""))
    return [SeriesInfo(uid, descriptions[uid], tuple(files)) for uid, files in groups.items()]


@_quiet_pydicom()
def read_dicom(source: str | Path | Sequence[str | Path], series_uid: str | None = None) -> DicomVolume:
    """Read a DICOM series into a `DicomVolume` (see there for shapes and units).

    source: a folder (its files; several series need `series_uid`), one file (single- or
    multi-frame), or a list of files of one series. Raises DataError (one line, naming the file or
    folder) for: no DICOM images, several series without a choice (naming them), an unknown
    `series_uid`, a missing PixelSpacing, frames of different size / orientation / spacing,
    frames at one position without distinct trigger times, slice positions with unequal numbers
    of frames, and pixel data the installed decoders cannot read (naming the transfer syntax).
    """
    where, files, uid = _files_of(source, series_uid)
    headers, frames = [], []
    for path in files:
        ds = read_header(path, pixels=True)
        if ds is None:
            raise DataError(path, "not a DICOM image")
        headers.append(ds)
        frames.extend(_frames_of(path, ds))
    uids = sorted({str(ds.get("SeriesInstanceUID", "")) for ds in headers})
    if len(uids) > 1:
        raise DataError(where, f"the files given belong to {len(uids)} series ({', '.join(uids)}); read one at a time")
    grid = _grid(frames, where)
    pixels = _pixels(grid, {path: ds for path, ds in zip(files, headers)})
    return _volume(grid, pixels, headers, uid)


def _files_of(source, series_uid):
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        folder = Path(source)
        series = list_series(folder)
        if not series:
            raise DataError(folder, "no DICOM images in this folder")
        if series_uid is not None:
            chosen = [s for s in series if s.uid == series_uid]
            if not chosen:
                raise DataError(folder, f"no series {series_uid}; found {'; '.join(s.describe() for s in series)}")
        elif len(series) > 1:
            raise DataError(folder, f"holds {len(series)} series; choose one by SeriesInstanceUID: "
                                    f"{'; '.join(s.describe() for s in series)}")
        else:
            chosen = series
        return folder, list(chosen[0].files), chosen[0].uid
    files = [Path(source)] if isinstance(source, (str, Path)) else [Path(p) for p in source]
    if not files:
        raise DataError(None, "no DICOM files given")
    for path in files:
        if not path.is_file():
            raise DataError(path, "DICOM file not found")
    return files[0] if len(files) == 1 else files[0].parent, files, None


def _number(value) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _item(groups: Iterable, sequence: str, attribute: str):
    """First value of `attribute` inside `sequence` of the functional groups given (per-frame first)."""
    for group in groups:
        if group is not None and sequence in group and len(group[sequence].value):
            item = group[sequence][0]
            if attribute in item:
                return item[attribute].value
    return None


def _frames_of(path: Path, ds) -> list[_Frame]:
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise DataError(path, f"colour DICOM ({ds.get('PhotometricInterpretation')}); expected greyscale MR/CT")
    count = int(ds.get("NumberOfFrames", 1) or 1)
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    per_frame = ds.PerFrameFunctionalGroupsSequence if "PerFrameFunctionalGroupsSequence" in ds else None
    if count > 1 and (per_frame is None or len(per_frame) != count):
        raise DataError(path, f"multi-frame file ({count} frames) without a PerFrameFunctionalGroupsSequence "
                              "giving each frame's position")
    frames = []
    for i in range(count):
        groups = ([per_frame[i]] if per_frame is not None else []) + ([shared] if shared is not None else [])

        def get(sequence, attribute, top=None, groups=groups):
            value = _item(groups, sequence, attribute)
            return ds.get(top or attribute) if value is None else value

        spacing = get("PixelMeasuresSequence", "PixelSpacing")
        if spacing is None or len(spacing) != 2:
            raise DataError(path, "no PixelSpacing: the pixel size in mm is unknown")
        position = get("PlanePositionSequence", "ImagePositionPatient")
        orientation = get("PlaneOrientationSequence", "ImageOrientationPatient")
        if position is None or orientation is None:
            if count > 1:
                raise DataError(path, f"frame {i + 1} has no ImagePositionPatient/ImageOrientationPatient")
            log.warning("%s: no ImagePositionPatient/ImageOrientationPatient; an axial slice at the origin assumed", path)
            position, orientation = (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
        slope = _number(get("PixelValueTransformationSequence", "RescaleSlope"))
        intercept = _number(get("PixelValueTransformationSequence", "RescaleIntercept"))
        frames.append(_Frame(
            path, i, np.asarray([float(v) for v in position]), np.asarray([float(v) for v in orientation]),
            (float(spacing[0]), float(spacing[1])), _number(get("PixelMeasuresSequence", "SliceThickness")),
            _number(get("FrameContentSequence", "TemporalPositionIndex", "TemporalPositionIdentifier")),
            _number(get("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime", "TriggerTime")),
            1.0 if slope is None else slope, 0.0 if intercept is None else intercept,
            (int(ds.Rows), int(ds.Columns))))
    return frames


def _grid(frames: list[_Frame], where) -> list[list[_Frame]]:
    """frames -> Z slice positions x P phases, checked for one size / orientation / spacing."""
    first = frames[0]
    for f in frames[1:]:
        if f.shape != first.shape:
            raise DataError(f.path, f"size {f.shape[1]}x{f.shape[0]} differs from {first.path.name}'s "
                                    f"{first.shape[1]}x{first.shape[0]}")
        if not np.allclose(f.orientation, first.orientation, atol=1e-3):
            raise DataError(f.path, f"ImageOrientationPatient differs from {first.path.name}'s: not one stack")
        if not np.allclose(f.pixel_spacing, first.pixel_spacing, rtol=1e-3):
            raise DataError(f.path, f"PixelSpacing {list(f.pixel_spacing)} differs from {first.path.name}'s "
                                    f"{list(first.pixel_spacing)}")
    normal = _normal(first.orientation)
    ordered = sorted(frames, key=lambda f: float(f.position @ normal))
    stacks: list[list[_Frame]] = []
    for f in ordered:
        if stacks and float((f.position - stacks[-1][0].position) @ normal) < SAME_POSITION_MM:
            stacks[-1].append(f)
        else:
            stacks.append([f])
    for stack in stacks:
        if len(stack) > 1:
            keys = [f.temporal if f.temporal is not None else f.trigger for f in stack]
            if any(k is None for k in keys) or len(set(keys)) < len(keys):
                names = ", ".join(sorted({f"{f.path.name}" + (f"#{f.index + 1}" if f.index else "") for f in stack}))
                raise DataError(where, f"{len(stack)} frames at slice position {float(stack[0].position @ normal):.2f} mm "
                                       f"({names}) without distinct TemporalPositionIdentifier/TriggerTime")
            stack.sort(key=lambda f: f.temporal if f.temporal is not None else f.trigger)
    counts = [len(s) for s in stacks]
    if len(set(counts)) > 1:
        detail = ", ".join(f"{float(s[0].position @ normal):.1f} mm: {len(s)}" for s in stacks)
        raise DataError(where, f"slice positions hold unequal numbers of frames (incomplete cine): {detail}")
    return stacks


def _normal(orientation: np.ndarray) -> np.ndarray:
    n = np.cross(orientation[:3], orientation[3:])
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        raise DataError(None, f"ImageOrientationPatient {orientation.tolist()} has parallel row and column cosines")
    return n / norm


def _pixels(grid: list[list[_Frame]], headers: dict) -> np.ndarray:
    """Z x P frames -> P x Z x H x W float32 with the rescale applied."""
    decoded: dict[Path, np.ndarray] = {}
    out = np.zeros((len(grid[0]), len(grid), *grid[0][0].shape), dtype=np.float32)
    for z, stack in enumerate(grid):
        for p, f in enumerate(stack):
            if f.path not in decoded:
                decoded[f.path] = _decode(f.path, headers[f.path])
            data = decoded[f.path]
            plane = data[f.index] if data.ndim == 3 else data
            out[p, z] = plane.astype(np.float32) * f.slope + f.intercept
    if not np.isfinite(out).all():
        raise DataError(grid[0][0].path, "pixel data hold NaN or Inf after the rescale")
    return out


def _decode(path: Path, ds) -> np.ndarray:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    name = f"{syntax.name} ({syntax})" if syntax is not None else "unknown"
    missing = _missing_decoder(syntax)
    if missing:
        raise DataError(path, f"cannot decode the pixel data, transfer syntax {name}: no installed decoder "
                              f"plugin (needs {missing})")
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom raises RuntimeError/NotImplementedError/ValueError per decoder
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(path, f"cannot decode the pixel data, transfer syntax {name}: {first}") from None


def _missing_decoder(syntax) -> str | None:
    """What a compressed syntax's decoder lacks ('gdcm ... or pylibjpeg ...'), None when one is usable."""
    if syntax is None or not syntax.is_compressed:
        return None
    try:
        from pydicom.pixels import get_decoder  # pydicom >= 3
    except ImportError:
        return None  # pydicom 2: decoding is attempted and its error reported
    try:
        decoder = get_decoder(syntax)
    except (NotImplementedError, ValueError):
        return "a decoder pydicom does not have"
    if decoder.is_available:
        return None
    needs = [m.split(" - ", 1)[-1].replace("requires ", "") for m in decoder.missing_dependencies]
    return " or ".join(needs) or "a decoder plugin"


def _volume(grid: list[list[_Frame]], pixels: np.ndarray, headers, uid: str | None) -> DicomVolume:
    first = grid[0][0]
    normal = _normal(first.orientation)
    positions = np.stack([stack[0].position for stack in grid])
    d = positions @ normal
    if len(grid) > 1:
        gaps = np.diff(d)
        slice_spacing = float(np.median(gaps))
        if gaps.max() - gaps.min() > 0.01 * slice_spacing + 0.01:
            log.warning("%s: uneven slice spacing (%.2f-%.2f mm); the median %.2f mm is used",
                        first.path.parent, gaps.min(), gaps.max(), slice_spacing)
    else:
        slice_spacing = first.thickness or _number(headers[0].get("SpacingBetweenSlices")) or 1.0
    row_sp, col_sp = first.pixel_spacing
    row_cos, col_cos = first.orientation[:3], first.orientation[3:]
    step = (positions[-1] - positions[0]) / (len(grid) - 1) if len(grid) > 1 else normal * slice_spacing
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row_cos * col_sp, col_cos * row_sp, step, positions[0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM LPS -> NIfTI RAS
    triggers = []
    for p in range(len(grid[0])):
        times = [stack[p].trigger for stack in grid if stack[p].trigger is not None]
        triggers.append(float(np.median(times)) if times else None)
    ds = headers[0]
    return DicomVolume(
        pixels=pixels, spacing=(slice_spacing, row_sp, col_sp), affine=affine, positions=positions,
        normal=normal, slice_positions=d, trigger_times=triggers,
        sources=[[(stack[p].path, stack[p].index) for stack in grid] for p in range(len(grid[0]))],
        series_uid=uid or str(ds.get("SeriesInstanceUID", "")), description=str(ds.get("SeriesDescription", "")),
        headers=headers)
