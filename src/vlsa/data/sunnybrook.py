"""Reader for the Sunnybrook Cardiac Data (Radau et al., MIDAS Journal 2009; GE 1.5 T cine SSFP).

Layout (the flattened copy in ../shared/realdata/sunnybrook-scd):
    <root>/link.csv                                   patient_id,original_id (SCD0000101,SC-HF-I-1)
    <root>/dicoms/SCDxxxxxxx/N.dcm                    single-frame short-axis MR images
    <root>/contourfiles/SC-HF-I-k/{i,o}-contours/IM-0001-NNNN-{i,o}contour-manual.txt
Contour NNNN belongs to image N.dcm (N = int(NNNN)); `i` = LV endocardium, `o` = epicardium.

Masks: each contour file holds one `x y` point per line, a closed polygon in pixel coordinates
with x = column and y = row; integer coordinates are pixel centres (the DICOM convention). A
pixel is inside when its centre is inside the polygon (matplotlib.path, even-odd rule). LV
cavity (1) = inside the i-contour; myocardium (2) = inside the o-contour minus inside the
i-contour, only on frames that have both. RV is not annotated: the spec keeps vlsa's cardiac
label space with `annotated = ("lv", "myo")`, and a frame with only an i-contour annotates
("lv",) (`Sample.annotated`). An o-contour that leaves more than `MAX_CAVITY_OUTSIDE` of the
cavity outside is not that frame's epicardium (the copy's SC-HF-I-6 o-contours are byte copies
of SC-HF-I-1's): its myocardium is not annotated, with a warning naming the files.

Volumes: a patient's contoured frames are read as one series by `vlsa.data.dicom.read_dicom`
(slices ordered by ImagePositionPatient along the normal, the frames at each position by trigger
time), which gives two phases. ED is the phase of larger total LV cavity area (the clinical
definition); the reader warns where the epicardium is drawn on another phase (Sunnybrook's
experts draw it at ED: true for all 5 patients here). Spacing from the DICOM header
(PixelSpacing 1.29-1.37 mm; slice spacing from the positions).

One domain, `Sunnybrook`, all cases `test`: a target-only dataset (asking for its train split is
an error).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlsa.data.dicom import read_dicom
from vlsa.data.files import read_csv
from vlsa.data.integrity import plausible
from vlsa.data.io import existing_root
from vlsa.data.resample import volume_planes
from vlsa.data.sample import Sample
from vlsa.data.spec import CARDIAC
from vlsa.errors import DataError

log = logging.getLogger(__name__)

SUNNYBROOK = dataclasses.replace(CARDIAC, name="sunnybrook", annotated=("lv", "myo"))
DOMAIN = "Sunnybrook"
CONTOUR = re.compile(r"^IM-\d+-(\d+)-([io])contour-manual\.txt$")
MAX_CAVITY_OUTSIDE = 0.1  # fraction of the LV cavity an epicardial contour may leave outside


@dataclass(frozen=True)
class SunnybrookCase:
    patient: str  # SCDxxxxxxx
    original: str  # SC-HF-I-k
    dicoms: Path
    i_contours: dict[int, Path]  # image number -> endocardial contour file
    o_contours: dict[int, Path]  # image number -> epicardial contour file


def read_contour(path: Path, shape: tuple[int, int], image: Path) -> np.ndarray:
    """A contour file -> N x 2 float (x = column, y = row); `shape` = (rows, columns) of `image`.
    Raises DataError for unparsable files, fewer than 3 points, or a point outside the image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on an empty file; reported below
            points = np.loadtxt(path, ndmin=2, dtype=np.float64)
    except ValueError:
        raise DataError(path, "not a contour file (one `x y` pixel coordinate per line expected)") from None
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise DataError(path, f"a contour needs at least 3 `x y` points, found shape {points.shape}")
    if not np.isfinite(points).all():
        raise DataError(path, "contour holds NaN or Inf coordinates")
    rows, cols = shape
    outside = (points[:, 0] < -0.5) | (points[:, 0] > cols - 0.5) | (points[:, 1] < -0.5) | (points[:, 1] > rows - 0.5)
    if outside.any():
        x, y = points[np.argmax(outside)]
        raise DataError(path, f"point (x {x:g}, y {y:g}) lies outside the {cols}x{rows} image {image.name} "
                              f"({int(outside.sum())} of {len(points)} points)")
    return points


def polygon_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """H x W bool mask of the pixels whose centre (x = column, y = row) lies inside the polygon."""
    from matplotlib.path import Path as Polygon

    mask = np.zeros(shape, dtype=bool)
    c0, r0 = np.floor(points.min(axis=0)).astype(int).clip(0)
    c1, r1 = np.ceil(points.max(axis=0)).astype(int)
    c1, r1 = min(c1, shape[1] - 1), min(r1, shape[0] - 1)
    rows, cols = np.mgrid[r0 : r1 + 1, c0 : c1 + 1]
    inside = Polygon(points).contains_points(np.column_stack([cols.ravel(), rows.ravel()]))
    mask[r0 : r1 + 1, c0 : c1 + 1] = inside.reshape(rows.shape)
    return mask


class SunnybrookReader:
    """Sunnybrook DICOM frames + expert contours -> ED/ES slices with LV and MYO (target-only)."""

    spec = SUNNYBROOK
    target_only = True

    def __init__(self, root: str | Path, spacing: float | None = None):
        self.root = existing_root(root)
        self.spacing = spacing
        self.cases = self._scan()
        self._myo_frames: dict[str, int] = {}  # patient -> frames whose myocardium is annotated (once read)

    def _scan(self) -> list[SunnybrookCase]:
        link = self.root / "link.csv"
        if not link.is_file():
            raise DataError(self.root, "not the Sunnybrook layout: no link.csv (patient_id,original_id)")
        fields, rows = read_csv(link)
        if not {"patient_id", "original_id"} <= set(fields):
            raise DataError(link, f"expected columns patient_id,original_id, found {fields}")
        cases = []
        for row in rows:
            patient, original = row["patient_id"], row["original_id"]
            dicoms, contours = self.root / "dicoms" / patient, self.root / "contourfiles" / original
            for folder in (dicoms, contours):
                if not folder.is_dir():
                    raise DataError(link, f"{patient} -> {original}: folder {folder} not found")
            found: dict[str, dict[int, Path]] = {"i": {}, "o": {}}
            for kind in ("i", "o"):
                for path in sorted((contours / f"{kind}-contours").glob("*.txt")):
                    m = CONTOUR.match(path.name)
                    if m is None or m[2] != kind:
                        raise DataError(path, f"not an {kind}-contour file name (IM-0001-NNNN-{kind}contour-manual.txt)")
                    number = int(m[1])
                    if not (dicoms / f"{number}.dcm").is_file():
                        raise DataError(path, f"no DICOM for this contour (expected {dicoms / f'{number}.dcm'})")
                    found[kind][number] = path
            lone = sorted(set(found["o"]) - set(found["i"]))
            if lone:
                log.warning("%s: epicardial contour(s) of image(s) %s have no endocardial contour; left out "
                            "(the myocardium needs both)", contours, lone)
            if found["i"]:
                cases.append(SunnybrookCase(patient, original, dicoms, found["i"],
                                            {n: p for n, p in found["o"].items() if n in found["i"]}))
        if not cases:
            raise DataError(self.root, "no contoured frames (contourfiles/<id>/i-contours/*.txt)")
        return cases

    def domains(self) -> list[str]:
        return [DOMAIN]

    @plausible
    def samples(self, domain: str, split: str) -> Iterator[Sample]:
        if domain != DOMAIN:
            raise DataError(self.root, f"empty domain: Sunnybrook has one domain, {DOMAIN!r}, not {domain!r}")
        if split != "test":
            raise DataError(self.root, f"empty domain: Sunnybrook is a target-only dataset (all {len(self.cases)} "
                                       f"patients are test); it has no {split} split, use it as a target")
        for case in self.cases:
            yield from self.case_samples(case)

    def case_samples(self, case: SunnybrookCase) -> Iterator[Sample]:
        """The ED then ES slices of one patient, each slice a contoured frame."""
        files = [case.dicoms / f"{n}.dcm" for n in sorted(case.i_contours)]
        vol = read_dicom(files)
        if vol.phases != 2:
            raise DataError(case.dicoms, f"the contoured frames form {vol.phases} phase(s) per slice position; "
                                         "expected 2 (ED and ES)")
        shape = vol.pixels.shape[2:]
        numbers = [[int(path.stem) for path, _ in phase] for phase in vol.sources]
        lv = [[polygon_mask(read_contour(case.i_contours[n], shape, case.dicoms / f"{n}.dcm"), shape)
               for n in phase] for phase in numbers]
        ed = int(np.argmax([sum(int(m.sum()) for m in masks) for masks in lv]))
        drawn = {p for p, phase in enumerate(numbers) for n in phase if n in case.o_contours}
        if drawn and drawn != {ed}:
            log.warning("%s: epicardial contours drawn on the phase with the smaller LV cavity; ED (larger cavity) "
                        "kept by cavity area", case.dicoms)
        phases = {ed: "ED", 1 - ed: "ES"}
        ed_es = {phases[p]: vol.trigger_times[p] for p in (0, 1)}
        dropped, myo = [], 0
        for p in (ed, 1 - ed):
            labels = np.zeros((*shape, len(numbers[p])), dtype=np.uint8)
            annotated = []
            for z, n in enumerate(numbers[p]):
                cavity, epi = lv[p][z], self._epicardium(case, n, shape, lv[p][z], dropped)
                if epi is not None:
                    labels[epi, z] = 2
                    myo += 1
                labels[cavity, z] = 1
                annotated.append(("lv", "myo") if epi is not None else ("lv",))
            yield from self._slices(case, vol, p, phases[p], labels, annotated, numbers[p], ed_es)
        if dropped:
            log.warning("%s: %d epicardial contour(s) leave %s of the LV cavity outside (%s ...): not these frames' "
                        "epicardium; their myocardium is not annotated", dropped[0][0].parent, len(dropped),
                        "-".join(f"{f:.0%}" for f in (min(f for _, f in dropped), max(f for _, f in dropped))),
                        dropped[0][0].name)
        self._myo_frames[case.patient] = myo

    def _epicardium(self, case, number, shape, cavity, dropped) -> np.ndarray | None:
        path = case.o_contours.get(number)
        if path is None:
            return None
        epi = polygon_mask(read_contour(path, shape, case.dicoms / f"{number}.dcm"), shape)
        outside = float((cavity & ~epi).sum()) / max(1, int(cavity.sum()))
        if outside > MAX_CAVITY_OUTSIDE:
            dropped.append((path, outside))
            return None
        return epi

    def _slices(self, case, vol, p, phase, labels, annotated, numbers, ed_es) -> Iterator[Sample]:
        slice_mm, row_mm, col_mm = vol.spacing
        planes = volume_planes(vol.planes(p), (row_mm, col_mm, slice_mm), self.spacing, labels)
        affine = vol.affine[:, [1, 0, 2, 3]]  # of the (row, column, slice) index of the planes
        for z, (img, lab, original, target) in enumerate(planes):
            yield Sample(
                image=img, label=lab, domain=DOMAIN, case_id=case.patient,
                name=f"{case.patient}_{phase}_z{z:02d}", volume_id=f"{case.patient}_{phase}", slice_index=z,
                spacing=target, slice_thickness=float(slice_mm), affine=affine,
                original_label=original, original_spacing=(row_mm, col_mm), annotated=annotated[z],
                meta={"phase": phase, "ed_es": ed_es, "ed_rule": "larger total LV cavity area",
                      "trigger_time_ms": vol.trigger_times[p], "dicom": str(case.dicoms / f"{numbers[z]}.dcm"),
                      "spacing_known": True, "original_spacing": (row_mm, col_mm), "original_shape": labels.shape[:2]})

    def summary(self) -> str:
        """One line for `vlsa verify`: patients, frames, frames with myocardium (reads what it must)."""
        for case in self.cases:
            if case.patient not in self._myo_frames:
                for _ in self.case_samples(case):
                    pass
        frames = sum(len(c.i_contours) for c in self.cases)
        epi = sum(len(c.o_contours) for c in self.cases)
        myo = sum(self._myo_frames.values())
        left_out = f" ({epi - myo} epicardial contours that do not enclose the cavity left out)" if myo != epi else ""
        return (f"Sunnybrook: {len(self.cases)} patients, {frames} contoured frames ({2 * len(self.cases)} ED/ES "
                f"volumes), {epi} with an epicardial contour, myocardium annotated on {myo}{left_out}; "
                "all test (target-only)")
