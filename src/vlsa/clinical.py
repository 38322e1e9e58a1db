"""Clinical indices from label maps, and their agreement with a reference.

Fundus (per 2D image, disc and cup as binary H x W masks):
- vertical cup-to-disc ratio (vCDR) = cup height / disc height, the heights being the masks'
  vertical extents in pixel rows (the ratio glaucoma screening reads; Drishti-GS1's experts give it);
  horizontal CDR (hCDR) likewise over columns; area CDR = cup area / disc area.

Cardiac (per subject, ED and ES label volumes Z x H x W in vlsa's cardiac indices 1 LV, 2 MYO, 3 RV):
- LV EDV / ESV (mL) = LV blood-pool voxels x voxel volume at ED / ES; SV = EDV - ESV;
  EF (%) = 100 x SV / EDV; LV mass (g) = ED myocardium volume x 1.05 g/mL (the ACDC challenge's
  convention: myocardial density 1.05 g/mL); RV EDV/ESV/SV/EF likewise where the RV is labelled.
- Slice inclusion (`lv_slices_included`, applied to predicted volumes only): at the base, where the
  ventricle opens into the atrium and the outflow tract, experts stop drawing the LV on the first
  slice whose cavity is no longer ringed by myocardium (the SCMR convention: a basal slice counts
  while myocardium surrounds its blood pool), and likewise past the apex. A 2D model has no such
  rule and labels blood pool on those end slices, mostly at ES, which inflates ESV and lowers EF.
- Volumes need the voxel spacing; EF is a ratio of voxel counts and needs none. Where the spacing
  is unknown, `cardiac_indices(..., spacing=None)` gives EF only and names the refused indices.

Agreement (Bland & Altman, Lancet 1986): bias = mean(pred - true), limits of agreement
bias ± 1.96 SD of the differences (SD with n - 1), mean absolute error, Pearson correlation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MYOCARDIAL_DENSITY = 1.05  # g/mL
LV, MYO, RV = 1, 2, 3  # vlsa's cardiac label indices (vlsa.data.spec.CARDIAC)
CARDIAC_INDICES = ("lv_edv", "lv_esv", "lv_sv", "lv_ef", "lv_mass", "rv_edv", "rv_esv", "rv_sv", "rv_ef")
VOLUME_INDICES = ("lv_edv", "lv_esv", "lv_sv", "lv_mass", "rv_edv", "rv_esv", "rv_sv")
UNITS = {"lv_edv": "mL", "lv_esv": "mL", "lv_sv": "mL", "lv_ef": "%", "lv_mass": "g", "rv_edv": "mL",
         "rv_esv": "mL", "rv_sv": "mL", "rv_ef": "%", "vcdr": "", "hcdr": "", "acdr": ""}


def _extent(mask: np.ndarray, axis: int) -> int:
    """Number of rows (axis 0) or columns (axis 1) from the first to the last foreground one."""
    hit = np.flatnonzero(mask.any(axis=1 - axis))
    return 0 if hit.size == 0 else int(hit[-1] - hit[0] + 1)


def cup_to_disc(disc: np.ndarray, cup: np.ndarray) -> dict[str, float]:
    """Cup-to-disc ratios of one fundus image.

    disc, cup: H x W boolean masks (disc includes the cup). Returns {'vcdr', 'hcdr', 'acdr'}, each
    in [0, 1] for a cup inside its disc; NaN for all three when the disc is empty (no ratio exists).
    A cup that is empty gives 0 (no cupping), which is a measurement, not a missing value.
    """
    disc, cup = np.asarray(disc, bool), np.asarray(cup, bool)
    if disc.shape != cup.shape or disc.ndim != 2:
        raise ValueError(f"disc {disc.shape} and cup {cup.shape} must be masks of the same 2D shape")
    if not disc.any():
        return {"vcdr": math.nan, "hcdr": math.nan, "acdr": math.nan}
    return {"vcdr": _extent(cup, 0) / _extent(disc, 0), "hcdr": _extent(cup, 1) / _extent(disc, 1),
            "acdr": float(cup.sum()) / float(disc.sum())}


def volume_ml(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Volume of a Z x H x W boolean mask in mL; spacing (slice, row, col) in mm (1 mL = 1000 mm³)."""
    return float(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0


def lv_ring_fraction(labels: np.ndarray) -> float:
    """The fraction of one slice's LV border pixels (LV pixels with a 4-neighbour outside the LV)
    that touch the myocardium (8-neighbourhood). labels: H x W class indices. 1.0 without LV."""
    from scipy import ndimage

    lv = labels == LV
    if not lv.any():
        return 1.0
    border = lv & ~ndimage.binary_erosion(lv)
    near_myo = ndimage.binary_dilation(labels == MYO, structure=np.ones((3, 3), bool))
    return float((border & near_myo).sum() / border.sum())


def lv_slices_included(labels: np.ndarray, ring: float) -> np.ndarray:
    """The slice-inclusion convention on one predicted volume: from each end of the stack (base and
    apex, whichever end is which), slices whose LV is ringed by myocardium on less than `ring` of its
    border (`lv_ring_fraction`) lose their LV (-> background), until the first slice that is ringed;
    inner slices are never touched. labels: Z x H x W class indices (slices along axis 0); ring in
    [0, 1], 0 returns the labels unchanged. -> a new Z x H x W array."""
    out = np.array(labels, copy=True)
    if ring <= 0:
        return out
    with_lv = [z for z in range(out.shape[0]) if (out[z] == LV).any()]
    for order in (with_lv, with_lv[::-1]):
        for z in order:
            if lv_ring_fraction(out[z]) >= ring:
                break
            out[z][out[z] == LV] = 0
    return out


def ejection_fraction(edv: float, esv: float) -> float:
    """EF in percent from the end-diastolic and end-systolic volumes (any one unit); NaN if EDV is 0."""
    return math.nan if edv <= 0 else 100.0 * (edv - esv) / edv


@dataclass
class CardiacIndices:
    """Per-subject indices (mL, g, %); `values[name]` is NaN where not computable and `refused`
    says why for each index left out (e.g. 'voxel spacing unknown')."""

    values: dict[str, float]
    refused: dict[str, str]


def cardiac_indices(ed: np.ndarray, es: np.ndarray, spacing: tuple[float, float, float] | None,
                    rv: bool = True) -> CardiacIndices:
    """Clinical indices of one subject from its ED and ES label volumes.

    ed, es: Z x H x W integer label volumes (1 LV, 2 MYO, 3 RV), on grids of the same spacing.
    spacing: (slice, row, col) mm, or None when unknown: volumes and mass are then refused and only
    the ejection fractions (ratios of voxel counts) are given. rv: False when the RV is not
    labelled (e.g. Sunnybrook): the RV indices are refused as 'RV not annotated'.
    """
    unit = (1.0, 1.0, 1.0) if spacing is None else spacing
    vals: dict[str, float] = {}
    for prefix, label, wanted in (("lv", LV, True), ("rv", RV, rv)):
        if not wanted:
            continue
        edv, esv = volume_ml(ed == label, unit), volume_ml(es == label, unit)
        vals[f"{prefix}_edv"], vals[f"{prefix}_esv"], vals[f"{prefix}_sv"] = edv, esv, edv - esv
        vals[f"{prefix}_ef"] = ejection_fraction(edv, esv)
    vals["lv_mass"] = volume_ml(ed == MYO, unit) * MYOCARDIAL_DENSITY
    refused = {}
    if not rv:
        refused.update({k: "RV not annotated" for k in CARDIAC_INDICES if k.startswith("rv_")})
    if spacing is None:
        refused.update({k: "voxel spacing unknown (volumes in mL need it; EF is a ratio)"
                        for k in VOLUME_INDICES if k in vals})
    return CardiacIndices({k: (math.nan if k in refused else vals.get(k, math.nan)) for k in CARDIAC_INDICES},
                          refused)


def choose_ed_es(lv_volumes: list[float]) -> tuple[int, int]:
    """(ED, ES) phase indices of a cine series from its per-phase LV volumes (any unit): ED is the
    phase of largest LV volume, ES of the smallest (the definition ACDC and M&Ms annotate by).
    Raises ValueError for fewer than two phases or an LV that is empty in every phase."""
    v = np.asarray(lv_volumes, dtype=np.float64)
    if v.size < 2 or not np.any(v > 0):
        raise ValueError(f"ED/ES need at least two phases with a segmented LV (volumes: {v.tolist()})")
    return int(np.argmax(v)), int(np.argmin(v))


def agreement(pred, true) -> dict[str, float]:
    """Bland-Altman agreement of paired measurements (NaN pairs dropped).

    Returns {'n', 'mae', 'bias', 'sd', 'loa_low', 'loa_high', 'r'}: bias = mean(pred - true),
    SD of the differences with n - 1, limits of agreement bias ± 1.96 SD, Pearson r (NaN for n < 3
    or a constant series)."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    keep = np.isfinite(p) & np.isfinite(t)
    p, t = p[keep], t[keep]
    n = int(p.size)
    if n == 0:
        return {"n": 0, **{k: math.nan for k in ("mae", "bias", "sd", "loa_low", "loa_high", "r")}}
    d = p - t
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    r = math.nan
    if n >= 3 and p.std() > 0 and t.std() > 0:
        r = float(np.corrcoef(p, t)[0, 1])
    return {"n": n, "mae": float(np.abs(d).mean()), "bias": bias, "sd": sd,
            "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd, "r": r}


def inter_expert_reference(readings) -> dict[str, float]:
    """Each expert against the mean of the others: the human limit beside a model's vCDR error.

    readings: N x E array (N images, E >= 2 experts). Returns {'mae', 'n'}: the mean over experts
    and images of |expert - mean of the other E - 1 experts| (Drishti-GS1's 101 images: 0.064)."""
    r = np.asarray(readings, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] < 2:
        raise ValueError(f"readings must be N x E with E >= 2 experts, got shape {r.shape}")
    others = (r.sum(axis=1, keepdims=True) - r) / (r.shape[1] - 1)
    return {"mae": float(np.abs(r - others).mean()), "n": int(r.shape[0])}
