"""A small cine short-axis DICOM series written with pydicom, as a scanner writes one (tests only):
an oblique stack, files named and numbered out of slice order, a rescale slope, several phases
(trigger times), one frame of reference; every plane's labels drawn, so outputs can be checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.data.dicom_files import write_mr

# grey value of each label (0 background, 1 LV, 2 MYO, 3 RV) in the modality's units
LEVELS = np.array([0.0, 1000.0, 500.0, 750.0])
SLOPE, INTERCEPT = 2.0, -40.0
ROW = np.array([1.0, 0.0, 0.0])
COL = np.array([0.0, np.cos(np.deg2rad(30)), np.sin(np.deg2rad(30))])  # an oblique short-axis plane
FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.8.498.77"


def disc(shape, centre, radius):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def cine_labels(radii, slices: int = 4, shape=(32, 40)) -> np.ndarray:
    """P x Z x H x W labels: per phase p an LV disc of radius radii[p] in a MYO ring 3 px wide, an
    RV disc beside it; the centre moves with the slice (a flipped or reordered output differs)."""
    out = np.zeros((len(radii), slices, *shape), dtype=np.uint8)
    for p, r in enumerate(radii):
        for z in range(slices):
            centre = (14, 15 + z)
            out[p, z][disc(shape, centre, r + 3)] = 2
            out[p, z][disc(shape, centre, r)] = 1
            out[p, z][disc(shape, (6, 33), 3 + p % 2)] = 3
    return out


def write_cine(folder: Path, labels: np.ndarray, gap: float = 8.0, spacing=(1.5, 1.25), series_uid=None,
               extra: dict | None = None) -> list[dict]:
    """Write P x Z x H x W `labels` as a cine series (grey values LEVELS, stored with SLOPE /
    INTERCEPT). Returns per file {'path', 'phase', 'slice', 'position'} in writing order, which is
    neither slice nor phase order (names and instance numbers are shuffled)."""
    folder.mkdir(parents=True, exist_ok=True)
    phases, slices = labels.shape[:2]
    normal = np.cross(ROW, COL)
    origin = np.array([12.0, -30.0, 45.0])
    rng = np.random.default_rng(7)
    order = rng.permutation(phases * slices)
    out = []
    for number, index in enumerate(order):
        p, z = divmod(int(index), slices)
        # positions also shift along the column direction, so sorting by one coordinate fails
        position = origin + z * gap * normal - 5.0 * z * COL
        stored = (LEVELS[labels[p, z]] - INTERCEPT) / SLOPE
        path = folder / f"IM{rng.integers(10**6):07d}_{number}.dcm"
        write_mr(path, stored.astype(np.uint16), position=position, orientation=(*ROW, *COL), spacing=spacing,
                 trigger=30.0 + 400.0 * p + z, slope=SLOPE, intercept=INTERCEPT, number=int(order.size - number),
                 series=series_uid or "1.2.826.0.1.3680043.8.498.2",
                 extra={"FrameOfReferenceUID": FRAME_OF_REFERENCE, "PatientID": "CINE1", "PatientName": "Test^Cine",
                        "StudyDate": "20240101", "Manufacturer": "TestVendor", **(extra or {})})
        out.append({"path": path, "phase": p, "slice": z, "position": position})
    return out
