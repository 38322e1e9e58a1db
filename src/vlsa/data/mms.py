"""Reader for M&Ms (cardiac cine short-axis MRI, vendors A Siemens, B Philips, C GE, D Canon).

Layout as distributed (OpenDataset):
    <root>/Training/Labeled/<code>/<code>_sa.nii.gz      4D (x, y, z, t)
    <root>/Training/Labeled/<code>/<code>_sa_gt.nii.gz   same shape, labelled at ED and ES only
    <root>/Validation/<code>/..., <root>/Testing/<code>/...  (read too when they carry _sa_gt)
    <root>/*.csv   dataset information: External code, VendorName, Vendor, Centre, ED, ES, ...
Labels: 0 background, 1 LV blood pool, 2 LV myocardium, 3 RV (M&Ms order, not ACDC's).

Each labelled case gives two volumes (ED and ES frames; `ED`/`ES` are 0-based frame indices), each
split into 2D slices along z, resampled in-plane to `spacing` mm (bilinear image, nearest label)
and normalised per slice (clip to the 0.5-99.5 percentiles, min-max to [0, 1]) by
`vlsa.data.resample.volume_planes`, the preprocessing `vlsa predict` uses too. Each slice keeps its
original annotation: Dice/HD95 are scored against it, per 3D volume, in mm of the original grid.
Splits: the labelled cases of each vendor are split by a salted hash of the case code
(`test_fraction` to `test`), the same on every machine; see `vlsa.data.splits.hash_split`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlsa.data.files import parse_index, read_csv
from vlsa.data.integrity import check_annotated_frames, plausible
from vlsa.data.io import existing_root, nifti_labels, read_nifti
from vlsa.data.resample import volume_planes
from vlsa.data.sample import Sample
from vlsa.data.spec import CARDIAC
from vlsa.data.splits import hash_split
from vlsa.errors import DataError

log = logging.getLogger(__name__)

CASE_FOLDERS = ("Training/Labeled", "Validation", "Testing")
REQUIRED_COLUMNS = ("External code", "Vendor", "ED", "ES")


@dataclass(frozen=True)
class MMSCase:
    code: str
    vendor: str
    ed: int
    es: int
    image: Path
    label: Path


def find_info_csv(root: Path) -> Path:
    candidates = sorted(root.glob("*.csv"))
    for path in candidates:
        if "External code" in read_csv(path)[0]:  # any delimiter: `,` `;` tab
            return path
    raise DataError(root, "no dataset information csv with an 'External code' column")


def read_info_csv(path: Path) -> dict[str, dict[str, str]]:
    """External code -> row. Tolerates the leading unnamed index column some releases carry and
    any delimiter (`,` `;` tab), as spreadsheets in other locales save it."""
    fields, rows = read_csv(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in fields]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)}")
    return {row["External code"]: row for row in rows if row.get("External code")}


class MMSReader:
    """M&Ms cine short-axis MRI -> 2D ED/ES slices grouped per volume."""

    spec = CARDIAC
    test_split = "per vendor, vlsa.data.splits.hash_split of the case code (salt 'mms-test', data.test_fraction)"

    def __init__(self, root: str | Path, spacing: float | None = None, test_fraction: float = 0.3):
        root = existing_root(root)
        if (root / "OpenDataset").is_dir():
            root = root / "OpenDataset"
        self.root = root
        self.spacing = spacing
        self.test_fraction = test_fraction
        self.cases = self._scan()

    def _scan(self) -> list[MMSCase]:
        info_path = find_info_csv(self.root)
        info = read_info_csv(info_path)
        cases = []
        for folder in CASE_FOLDERS:
            base = self.root / folder
            if not base.is_dir():
                continue
            for case_dir in sorted(p for p in base.iterdir() if p.is_dir()):
                code = case_dir.name
                image, label = case_dir / f"{code}_sa.nii.gz", case_dir / f"{code}_sa_gt.nii.gz"
                if not label.is_file():
                    continue  # unlabelled case
                if not image.is_file():
                    raise DataError(label, f"ground truth without image {image.name}")
                if code not in info:
                    raise DataError(info_path, f"case {code} ({case_dir}) has no row")
                row = info[code]
                ed, es = parse_index(row["ED"]), parse_index(row["ES"])  # `1` or `1.0`
                if ed is None or es is None:
                    raise DataError(info_path, f"case {code}: ED/ES are not integers ({row['ED']!r}, {row['ES']!r})")
                if ed == es:
                    log.warning("%s: case %s has ED == ES (%d), a broken row; skipped", info_path, code, ed)
                    continue
                cases.append(MMSCase(code, row["Vendor"], ed, es, image, label))
        if not cases:
            raise DataError(self.root, "no labelled cases (expected Training/Labeled/<code>/<code>_sa_gt.nii.gz)")
        return cases

    def domains(self) -> list[str]:
        return sorted({c.vendor for c in self.cases})

    def cases_of(self, domain: str, split: str) -> list[MMSCase]:
        vendor_cases = [c for c in self.cases if c.vendor == domain]
        if not vendor_cases:
            raise DataError(self.root, f"empty domain: no labelled cases for vendor {domain!r}")
        test = hash_split([c.code for c in vendor_cases], self.test_fraction, salt="mms-test")
        chosen = [c for c in vendor_cases if (c.code in test) == (split == "test")]
        if not chosen:
            raise DataError(self.root, f"empty domain: vendor {domain!r} has no {split} cases")
        return chosen

    @plausible
    def samples(self, domain: str, split: str) -> Iterator[Sample]:
        for case in self.cases_of(domain, split):
            yield from self.case_samples(case)

    def case_samples(self, case: MMSCase) -> Iterator[Sample]:
        image, affine, zooms = read_nifti(case.image)
        label, _, _ = read_nifti(case.label)
        if image.ndim != 4:
            raise DataError(case.image, f"expected a 4D (x, y, z, t) volume, got {image.ndim}D shape {image.shape}")
        if label.shape != image.shape:
            raise DataError(case.label, f"ground truth shape {label.shape} differs from image shape {image.shape}")
        frames = image.shape[3]
        label = nifti_labels(case.label, label)
        check_annotated_frames(case.label, case.code, {"ED": case.ed, "ES": case.es}, label)
        for phase, frame in (("ED", case.ed), ("ES", case.es)):
            if not 0 <= frame < frames:
                raise DataError(case.image, f"{phase} frame {frame} outside the volume's {frames} frames")
            frame_label = label[..., frame]
            bad = np.setdiff1d(np.unique(frame_label), np.arange(CARDIAC.num_classes))
            if bad.size:
                raise DataError(case.label, f"label values {bad.tolist()} outside 0..3 (background, LV, MYO, RV)")
            yield from self._slices(case, phase, image[..., frame], frame_label, affine, zooms)

    def _slices(self, case, phase, volume, labels, affine, zooms) -> Iterator[Sample]:
        spacing = (float(zooms[0]), float(zooms[1]))
        planes = volume_planes(volume, zooms, self.spacing, labels)
        for z, (img, lab, original, target) in enumerate(planes):
            yield Sample(
                image=img,
                label=lab,
                domain=case.vendor,
                case_id=case.code,
                name=f"{case.code}_{phase}_z{z:02d}",
                volume_id=f"{case.code}_{phase}",
                slice_index=z,
                spacing=target,
                slice_thickness=float(zooms[2]),
                affine=affine,
                original_label=original,
                original_spacing=spacing,
                meta={"phase": phase, "original_spacing": spacing, "original_shape": volume.shape[:2]},
            )
