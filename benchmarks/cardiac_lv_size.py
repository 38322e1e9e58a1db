"""ED LV cavity size in pixels and mm: ACDC (SSL4MIS h5, spacing unknown) vs Sunnybrook (DICOM).

The numbers behind the h5 spacing decision in docs/cardiac.md. Per patient: the equivalent
diameter 2 sqrt(area / pi) of the ED LV cavity on the slice where it is largest, on each release's
native grid as the vlsa readers read it.

    python benchmarks/cardiac_lv_size.py [--realdata ../shared/realdata]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from vlsa.data.acdc import NOMINAL_SPACING_MM, ACDCReader
from vlsa.data.sunnybrook import SunnybrookReader


def largest_ed_diameters(samples) -> dict[str, tuple[float, float]]:
    """case -> (diameter px, row spacing mm) of the largest ED LV slice (vlsa label 1)."""
    area, spacing = defaultdict(int), {}
    for s in samples:
        if s.meta["phase"] == "ED":
            truth, mm = s.scoring()
            area[s.case_id] = max(area[s.case_id], int((truth == 1).sum()))
            spacing[s.case_id] = mm[0]
    return {c: (2 * np.sqrt(a / np.pi), spacing[c]) for c, a in area.items()}


def describe(name: str, diameters: dict, mm_per_px: float | None) -> str:
    px = np.array([d for d, _ in diameters.values()])
    mm = np.array([d * (mm_per_px or s) for d, s in diameters.values()])
    q1, q3 = np.percentile(px, [25, 75])
    return (f"{name}: n {len(px)}, ED LV diameter px median {np.median(px):.1f} (IQR {q1:.1f}-{q3:.1f}, "
            f"range {px.min():.1f}-{px.max():.1f}); mm median {np.median(mm):.1f} (range {mm.min():.1f}-{mm.max():.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata"))
    args = parser.parse_args()
    root = Path(args.realdata)
    acdc = ACDCReader(root / "acdc-ssl4mis")
    samples = [s for split in ("train", "test") for s in acdc.samples("ACDC", split)]
    a = largest_ed_diameters(samples)
    print(describe(f"ACDC h5 (mm at the nominal {NOMINAL_SPACING_MM} mm)", a, NOMINAL_SPACING_MM))
    sb = SunnybrookReader(root / "sunnybrook-scd")
    s = largest_ed_diameters(sb.samples("Sunnybrook", "test"))
    print(describe("Sunnybrook (mm from PixelSpacing)", s, None))
    ratio = np.median([d for d, _ in s.values()]) / np.median([d for d, _ in a.values()])
    print(f"Sunnybrook / ACDC in native pixels: {ratio:.2f}; ACDC spacing that would equalise the mm diameters: "
          f"{np.median([d * sp for d, sp in s.values()]) / np.median([d for d, _ in a.values()]):.2f} mm")


if __name__ == "__main__":
    main()
