"""Synthetic cine short-axis cardiac MRI from four vendors, in the M&Ms layout.

Per subject: a 4D NIfTI (x, y, z, t) with short-axis slices from base to apex over one cardiac
cycle, and a ground-truth NIfTI of the same shape annotated at the ED and ES frames only
(1 LV blood pool, 2 LV myocardium, 3 RV). Anatomy in millimetres: a bright LV blood pool, a dark
myocardial ring of varying thickness, a bright RV crescent wrapped around the septum (shorter than
the LV towards the apex), pericardial fat, lungs, liver, chest wall and subcutaneous fat. Sizes vary
per subject; the cavities shrink and the myocardium thickens at ES.

Vendor appearance (why real vendors differ): intensity scale, blood/muscle and fat contrast, a
smooth bias field, Rician noise, in-plane spacing and matrix, slice thickness, blur (PSF). A
dataset-information csv with M&Ms' column names (and its leading unnamed index column).
"""

from __future__ import annotations

import csv
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from vlsa.data.synth.fields import ellipse_distance, smooth_noise


@dataclass(frozen=True)
class Vendor:
    letter: str
    name: str
    centres: tuple[int, ...]
    spacing: float  # in-plane mm
    matrix: int
    thickness: float  # slice thickness, mm
    scale: float  # raw intensity scale
    blood: float
    myo: float
    fat: float
    tissue: float  # liver / chest-wall muscle
    gamma: float
    bias: float
    noise: float  # Rician sigma relative to the blood signal
    blur: float  # PSF sigma in mm


VENDORS = (
    Vendor("A", "Siemens", (1,), 1.30, 128, 10.0, 600.0, 1.00, 0.28, 0.80, 0.40, 1.0, 0.15, 0.04, 0.6),
    Vendor("B", "Philips", (2, 3), 1.20, 136, 9.0, 2500.0, 0.90, 0.40, 0.95, 0.50, 0.8, 0.30, 0.06, 1.0),
    Vendor("C", "GE", (4,), 1.45, 112, 10.0, 150.0, 0.80, 0.45, 0.60, 0.55, 1.3, 0.40, 0.09, 1.4),
    Vendor("D", "Canon", (5,), 1.10, 144, 8.0, 3000.0, 1.00, 0.18, 0.90, 0.30, 0.9, 0.10, 0.03, 0.4),
)


def _subject(rng: np.random.Generator) -> dict:
    return {
        "r_endo": rng.normal(24.0, 3.0),  # LV cavity radius at the base, ED (mm)
        "wall": rng.normal(9.0, 1.5),
        "wall_var": rng.uniform(0.05, 0.25),
        "wall_phase": rng.uniform(0, 2 * np.pi),
        "ellip": rng.uniform(0.9, 1.1),
        "ef": rng.uniform(0.45, 0.75),  # radius ratio ES/ED
        "rv_angle": np.pi + rng.normal(0, 0.25),  # RV lies to the image left of the LV
        "rv_size": rng.uniform(0.9, 1.3),
        "rv_extent": rng.uniform(0.6, 0.85),  # fraction of slices (from the base) with RV
        "centre": rng.normal(0, 6.0, size=2),
        "fat": rng.uniform(1.5, 4.0),
        "slices": int(rng.integers(6, 10)),
        "frames": int(rng.integers(8, 13)),
    }


def _render_slice(vendor: Vendor, subj: dict, z_frac: float, phase: float, grid, rng):
    """One slice at normalised depth z_frac (0 base .. 1 apex) and contraction `phase` (0 ED .. 1 ES)."""
    yy, xx = grid
    cy, cx = subj["centre"]
    taper = np.sqrt(max(0.0, 1.0 - (0.85 * z_frac) ** 2))
    contract = 1.0 - phase * (1.0 - subj["ef"])
    r_endo = subj["r_endo"] * taper * contract
    wall = subj["wall"] * (1.0 + 0.35 * phase) * (0.8 + 0.2 * taper)
    ang = np.arctan2(yy - cy, xx - cx)
    wall_map = wall * (1 + subj["wall_var"] * np.cos(ang - subj["wall_phase"]))
    d_mm = ellipse_distance(yy, xx, cy, cx, subj["ellip"], 1.0, 0.0)  # radii (ellip, 1): a distance in mm
    lv = d_mm < r_endo
    epi = d_mm < r_endo + wall_map
    myo = epi & ~lv
    rv = np.zeros_like(lv)
    if z_frac <= subj["rv_extent"]:
        ra = subj["rv_angle"]
        rv_rx = (r_endo + wall) * 0.65 * subj["rv_size"] * (1 - 0.3 * phase)
        rv_ry = (r_endo + wall) * 1.25 * subj["rv_size"] * (1 - 0.15 * phase)
        off = (r_endo + wall) + 0.3 * rv_rx
        rcy, rcx = cy + off * np.sin(ra), cx + off * np.cos(ra)
        rv = (ellipse_distance(yy, xx, rcy, rcx, rv_ry, rv_rx, ra) < 1.0) & ~epi
    heart = epi | rv
    peri = ndimage.distance_transform_edt(~heart, sampling=1.0) < subj["fat"]
    peri &= ~heart

    # surroundings in mm around the heart: lungs, liver (lower slices), chest wall, fat
    lungs = (ellipse_distance(yy, xx, cy - 5, cx - 70, 70, 35, 0.2) < 1) | (
        ellipse_distance(yy, xx, cy - 10, cx + 75, 65, 35, -0.2) < 1)
    liver = ellipse_distance(yy, xx, cy + 85 - 40 * z_frac, cx - 35, 45, 80, 0.3) < 1
    body = ellipse_distance(yy, xx, cy + 10, cx, 110, 160, 0.0)
    chest_wall = (body > 0.78) & (body < 0.93)
    subcut = (body >= 0.93) & (body < 1.0)

    img = np.full(yy.shape, 0.0, dtype=np.float32)
    img[body < 1.0] = vendor.tissue * 0.6
    img[lungs & ~heart] = 0.05
    img[liver & ~heart & ~lungs] = vendor.tissue
    img[chest_wall] = vendor.tissue * 0.9
    img[subcut] = vendor.fat
    img[peri] = vendor.fat
    img[myo] = vendor.myo
    img[lv] = vendor.blood
    img[rv] = vendor.blood * 0.95
    # trabeculation-like texture in the blood pools and tissue texture
    img = img * (1 + 0.05 * smooth_noise(yy.shape, 12, rng))

    label = np.zeros(yy.shape, dtype=np.uint8)
    label[lv] = 1
    label[myo] = 2
    label[rv] = 3
    return img, label


def render_subject(vendor: Vendor, rng: np.random.Generator):
    """-> (image 4D float, labels 4D uint8 (ED/ES only), ED index, ES index, zooms)."""
    subj = _subject(rng)
    n = vendor.matrix
    coords = (np.arange(n) - n / 2) * vendor.spacing
    grid = np.meshgrid(coords, coords, indexing="ij")
    nz, nt = subj["slices"], subj["frames"]
    ed = int(rng.integers(0, 2)) if rng.random() < 0.8 else nt - 1
    es = (ed + int(round(nt * rng.uniform(0.3, 0.45)))) % nt
    image = np.zeros((n, n, nz, nt), dtype=np.float32)
    labels = np.zeros((n, n, nz, nt), dtype=np.uint8)
    bias = np.exp(vendor.bias * smooth_noise((n, n), 2, rng))
    for t in range(nt):
        # contraction: 0 at ED, 1 at ES, smooth and cyclic in between (ES may come before ED)
        k, s = (t - ed) % nt, (es - ed) % nt
        phase = 0.5 - 0.5 * np.cos(np.pi * k / s) if k <= s else 0.5 + 0.5 * np.cos(np.pi * (k - s) / (nt - s))
        for z in range(nz):
            img, lab = _render_slice(vendor, subj, z / max(1, nz - 1), float(phase), grid, rng)
            img = ndimage.gaussian_filter(img, vendor.blur / vendor.spacing)
            img = np.clip(img * bias, 0, None) ** vendor.gamma
            sigma = vendor.noise * vendor.blood
            img = np.hypot(img + rng.normal(0, sigma, img.shape), rng.normal(0, sigma, img.shape))  # Rician
            image[:, :, z, t] = img * vendor.scale
            if t in (ed, es):
                labels[:, :, z, t] = lab
    zooms = (vendor.spacing, vendor.spacing, vendor.thickness, 1.0)
    return image, labels, ed, es, zooms


def _code(rng: np.random.Generator) -> str:
    chars = string.ascii_uppercase + string.digits
    return "".join(rng.choice(list(chars), size=6))


def generate_cardiac(out: str | Path, per_vendor: int = 10, seed: int = 0, progress=None) -> Path:
    """Write four synthetic vendors to `out` in the M&Ms layout; deterministic for a seed."""
    import nibabel as nib

    out = Path(out)
    base = out / "Training" / "Labeled"
    base.mkdir(parents=True, exist_ok=True)
    rows = []
    for vi, vendor in enumerate(VENDORS):
        rng = np.random.default_rng([seed, 100 + vi])
        for i in range(per_vendor):
            code = vendor.letter + _code(rng)[1:]
            image, labels, ed, es, zooms = render_subject(vendor, rng)
            affine = np.diag([zooms[0], zooms[1], zooms[2], 1.0])
            case_dir = base / code
            case_dir.mkdir(parents=True, exist_ok=True)
            img = nib.Nifti1Image(np.round(image).astype(np.int16), affine)
            img.header.set_zooms(zooms)
            gt = nib.Nifti1Image(labels, affine)
            gt.header.set_zooms(zooms)
            nib.save(img, str(case_dir / f"{code}_sa.nii.gz"))
            nib.save(gt, str(case_dir / f"{code}_sa_gt.nii.gz"))
            centre = vendor.centres[i % len(vendor.centres)]
            rows.append([len(rows), code, vendor.name, vendor.letter, centre, ed, es,
                         int(rng.integers(20, 80)), rng.choice(["NOR", "HCM", "DCM", "ARV", "HHD"]),
                         rng.choice(["M", "F"])])
            if progress is not None:
                progress.update(1)
    with open(out / "211230_M&Ms_Dataset_information_diagnosis_opendataset.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["", "External code", "VendorName", "Vendor", "Centre", "ED", "ES", "Age", "Pathology", "Sex"])
        writer.writerows(rows)
    return out
