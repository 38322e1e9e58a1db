"""Per-class segmentation metrics (MONAI): Dice, HD95 and ASD, per image or per volume.

Decisions (documented in the README):
- Unit of evaluation: fundus per image; volumes (M&Ms) per 3D volume (the slices of one case and
  phase stacked, spacing (row, col, slice thickness)), then averaged over volumes of a domain.
- Regions: overlapping structures are evaluated as such (fundus disc = rim ∪ cup).
- HD95: MONAI's definition, the maximum of the two directed 95th-percentile surface distances
  (not medpy's pooled percentile); ASD is MONAI's symmetric average surface distance. Units are
  millimetres when spacing is known (volumes), pixels otherwise.
- Empty masks: Dice is 1 when prediction and truth are both empty, 0 when only one is. HD95/ASD
  are 0 when both are empty and, when only one is, the worst possible value (the field of view's
  diagonal), so a missed structure is penalised instead of silently dropped from the mean.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance

METRICS = ("dice", "hd95", "asd")


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
                 distances: bool = True) -> dict:
    """Label maps -> {metric: {region: value}} for every region."""
    out: dict[str, dict[str, float]] = {m: {} for m in METRICS}
    for name, indices in regions.items():
        values = region_metrics(np.isin(pred, indices), np.isin(truth, indices), spacing, distances)
        for m in METRICS:
            out[m][name] = values[m]
    return out


class DomainAccumulator:
    """Collects per-case metrics of one domain and aggregates means (and SDs) over cases."""

    def __init__(self, regions: dict[str, tuple[int, ...]], distances: bool = True):
        self.regions = regions
        self.distances = distances
        self.cases: list[dict] = []
        self.case_ids: list[str] = []

    def add(self, case_id: str, pred: np.ndarray, truth: np.ndarray, spacing) -> dict:
        result = case_metrics(pred, truth, self.regions, spacing, self.distances)
        self.cases.append(result)
        self.case_ids.append(case_id)
        return result

    def aggregate(self) -> dict:
        out: dict = {"n": len(self.cases)}
        for m in METRICS:
            means, sds = {}, {}
            for region in self.regions:
                values = np.array([c[m][region] for c in self.cases], dtype=np.float64)
                means[region] = float(values.mean()) if values.size else float("nan")
                sds[region] = float(values.std()) if values.size else float("nan")
            means["mean"] = float(np.mean(list(means.values()))) if means else float("nan")
            out[m] = means
            out[f"{m}_sd"] = sds
        return out


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
