"""Per-class segmentation metrics (MONAI): Dice, HD95 and ASD, per image or per volume.

Decisions (documented in docs/evaluation.md):
- Unit of evaluation: fundus per image; volumes (M&Ms) per 3D volume (the slices of one case and
  phase stacked, spacing (row, col, slice thickness)), then averaged over volumes of a domain.
- Regions: overlapping structures are evaluated as such (fundus disc = rim ∪ cup).
- HD95: MONAI's definition, the maximum of the two directed 95th-percentile surface distances
  (not medpy's pooled percentile); ASD is MONAI's symmetric average surface distance. Units are
  millimetres when spacing is known (volumes), pixels otherwise.
- Empty masks: Dice is 1 when prediction and truth are both empty, 0 when only one is. HD95/ASD
  are 0 when both are empty and, when only one is, the worst possible value (the field of view's
  diagonal), so a missed structure is penalised instead of silently dropped from the mean.
  This rule is for a region the case *annotates*; see the next point for one it does not.
- Not annotated: a partly annotated dataset (`DatasetSpec.annotated`, e.g. Sunnybrook: LV and MYO,
  no RV) or case (`Sample.annotated`, e.g. a frame with only the endocardial contour: LV, not
  MYO) leaves some regions without ground truth. Such a region is not scored in that case: never
  0, never perfect, whatever the model predicts there. Means over cases take only the cases that
  annotate the region (`n_annotated` counts them); a region no case of a domain annotates is
  `NOT_ANNOTATED` in place of a number; the mean over regions takes the annotated ones only.
- Volumes whose slices annotate different regions: a region is scored on the volume with the
  slices that do not annotate it emptied in both prediction and truth, so the annotating slices
  keep their positions (HD95/ASD stay 3D distances in mm) and Dice counts only them; a volume
  none of whose slices annotates a region does not annotate it.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance

METRICS = ("dice", "hd95", "asd")
# in place of a number where no case of a domain annotates a region (metrics.json, tables)
NOT_ANNOTATED = "not annotated"


def region_metrics(pred: np.ndarray, truth: np.ndarray, spacing, distances: bool = True) -> dict[str, float]:
    """Binary masks (2D or 3D, same shape) -> {'dice', 'hd95', 'asd'} (Dice only if not `distances`)."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    spacing = [float(s) for s in spacing]
    p_any, t_any = bool(pred.any()), bool(truth.any())
    if not p_any and not t_any:
        return {"dice": 1.0, "hd95": 0.0, "asd": 0.0}
    if not p_any or not t_any:
        worst = math.sqrt(sum((n * s) ** 2 for n, s in zip(pred.shape, spacing)))
        return {"dice": 0.0, "hd95": worst, "asd": worst}
    yp = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float32))[None, None]
    yt = torch.from_numpy(np.ascontiguousarray(truth, dtype=np.float32))[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dice = compute_dice(yp, yt, include_background=True, ignore_empty=False)
        if not distances:
            return {"dice": float(dice.item()), "hd95": float("nan"), "asd": float("nan")}
        hd = compute_hausdorff_distance(yp, yt, include_background=True, percentile=95, spacing=spacing)
        asd = compute_average_surface_distance(yp, yt, include_background=True, symmetric=True, spacing=spacing)
    return {"dice": float(dice.item()), "hd95": float(hd.item()), "asd": float(asd.item())}


def case_metrics(pred: np.ndarray, truth: np.ndarray, regions: dict[str, tuple[int, ...]], spacing,
                 distances: bool = True, annotated: tuple[str, ...] | None = None,
                 slices: list[tuple[str, ...]] | None = None) -> dict:
    """Label maps (H x W, or D x H x W for a volume) -> {metric: {region: value}}.

    annotated: the region names this case annotates (None: every region); the others are left out
    of the result (not annotated: neither 0 nor perfect). slices (volumes only): the regions each
    of the D slices annotates; a region is then scored with the slices that do not annotate it
    emptied in prediction and truth, and left out when no slice annotates it.
    Raises ValueError when shapes differ or `slices` does not have one entry per slice.
    """
    if slices is not None and len(slices) != len(pred):
        raise ValueError(f"{len(slices)} per-slice annotations for a volume of {len(pred)} slices")
    out: dict[str, dict[str, float]] = {m: {} for m in METRICS}
    for name, indices in regions.items():
        if annotated is not None and name not in annotated:
            continue
        p, t = np.isin(pred, indices), np.isin(truth, indices)
        if slices is not None:
            keep = np.array([name in a for a in slices], dtype=bool)
            if not keep.any():
                continue
            p[~keep], t[~keep] = False, False
        values = region_metrics(p, t, spacing, distances)
        for m in METRICS:
            out[m][name] = values[m]
    return out


class DomainAccumulator:
    """Collects per-case metrics of one domain and aggregates means (and SDs) over cases.

    annotated: the regions the domain's dataset annotates (None: all of `regions`); a case may
    annotate fewer (`add(..., annotated=)`). Means are over the cases that annotate a region."""

    def __init__(self, regions: dict[str, tuple[int, ...]], distances: bool = True,
                 annotated: tuple[str, ...] | None = None):
        self.regions = regions
        self.distances = distances
        self.annotated = tuple(regions) if annotated is None else tuple(r for r in regions if r in annotated)
        self.cases: list[dict] = []
        self.case_ids: list[str] = []

    def add(self, case_id: str, pred: np.ndarray, truth: np.ndarray, spacing,
            annotated: tuple[str, ...] | None = None, slices: list[tuple[str, ...] | None] | None = None) -> dict:
        """Score one case (image or volume). annotated: its regions (None: the dataset's); slices
        (volumes): the regions of each slice (None entries: the dataset's), see `case_metrics`."""
        if slices is not None:
            slices = [self._within(a) for a in slices]
        result = case_metrics(pred, truth, self.regions, spacing, self.distances, self._within(annotated), slices)
        self.cases.append(result)
        self.case_ids.append(case_id)
        return result

    def _within(self, annotated) -> tuple[str, ...]:
        # a case never annotates a region its dataset does not
        return self.annotated if annotated is None else tuple(r for r in self.annotated if r in annotated)

    def aggregate(self) -> dict:
        """-> {"n", "n_annotated": {region: cases}, metric: {region: mean, "mean": mean over the
        annotated regions}, metric_sd: {region: SD}}; NOT_ANNOTATED where no case annotates."""
        counts = {r: sum(r in c["dice"] for c in self.cases) for r in self.regions}
        out: dict = {"n": len(self.cases), "n_annotated": counts}
        for m in METRICS:
            means, sds = {}, {}
            for region in self.regions:
                values = np.array([c[m][region] for c in self.cases if region in c[m]], dtype=np.float64)
                if not self.cases:
                    means[region] = sds[region] = float("nan")
                elif not values.size:
                    means[region] = sds[region] = NOT_ANNOTATED
                else:
                    means[region], sds[region] = float(values.mean()), float(values.std())
            scored = [v for v in means.values() if v != NOT_ANNOTATED]
            means["mean"] = float(np.mean(scored)) if scored else (NOT_ANNOTATED if means else float("nan"))
            out[m] = means
            out[f"{m}_sd"] = sds
        return out


def is_number(value) -> bool:
    """Whether a metrics.json value is a number (not NOT_ANNOTATED)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def group_slices(items):
    """[(group, slice_index, pred2d, truth2d)] -> {group: (pred3d, truth3d)} stacked in slice order."""
    groups = defaultdict(list)
    for group, index, pred, truth in items:
        groups[group].append((index if index is not None else 0, pred, truth))
    stacked = {}
    for group, slices in groups.items():
        slices.sort(key=lambda s: s[0])
        stacked[group] = (np.stack([s[1] for s in slices]), np.stack([s[2] for s in slices]))
    return stacked
