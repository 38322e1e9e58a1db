"""In-plane geometry and intensity helpers shared by readers and prediction."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def resampled_shape(shape: tuple[int, int], spacing, target) -> tuple[int, int]:
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def resample_plane(array: np.ndarray, spacing, target, order: int, shape=None) -> np.ndarray:
    """Resample a 2D array from `spacing` to `target` mm (or to an explicit output `shape`).

    order=0 (nearest) for labels, 1 (linear) for images. Uses an exact output shape so that the
    inverse (back to the original shape) lands on the original grid.
    """
    out_shape = shape or resampled_shape(array.shape, spacing, target)
    if tuple(out_shape) == array.shape:
        return array
    factors = [o / n for o, n in zip(out_shape, array.shape)]
    out = ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)
    # zoom can be off by one for some factors; pad/crop to the exact shape
    return _fit(out, out_shape)


def _fit(array: np.ndarray, shape) -> np.ndarray:
    out = np.zeros(shape, dtype=array.dtype)
    h, w = min(shape[0], array.shape[0]), min(shape[1], array.shape[1])
    out[:h, :w] = array[:h, :w]
    return out


def normalise_percentile(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Clip to the [low, high] percentiles and scale to [0, 1]; constant images become zeros."""
    lo, hi = np.percentile(image, [low, high])
    if hi - lo < 1e-8:
        return np.zeros_like(image, dtype=np.float32)
    return ((np.clip(image, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def volume_planes(volume: np.ndarray, zooms, target_mm: float | None, labels: np.ndarray | None = None,
                  normalise: bool = True):
    """The one preprocessing of volumes, shared by readers (training, evaluation) and prediction.

    volume: X x Y x Z array (a 2D array is one plane); zooms: its voxel sizes in mm; target_mm:
    the in-plane spacing to resample to (`data.spacing`; None keeps the native spacing).
    labels: optional X x Y x Z label map on the same grid.
    Yields, per plane z (last axis): (image 1 x h x w float32 in [0, 1] (bilinear, then per-plane
    0.5-99.5 percentile clip and min-max), label h x w int64 resampled nearest (or None), the
    annotation on its own grid X x Y uint8 when the plane was resampled (else None: `label` is
    it), target spacing (row, col) mm). Predictions go back with `vlsa.engine.geometry.to_original`.
    normalise=False keeps the intensities (data vlsa wrote already normalised, `vlsa export nnunet`).
    """
    if volume.ndim == 2:
        volume = volume[..., None]
        labels = None if labels is None else labels[..., None]
    spacing = (float(zooms[0]), float(zooms[1])) if len(zooms) >= 2 else (1.0, 1.0)
    target = spacing if target_mm is None else (float(target_mm), float(target_mm))
    for z in range(volume.shape[2]):
        img = resample_plane(volume[:, :, z].astype(np.float32), spacing, target, order=1)
        lab = original = None
        if labels is not None:
            lab = resample_plane(labels[:, :, z], spacing, target, order=0).astype(np.int64)
            if lab.shape != labels.shape[:2] or target != spacing:
                original = np.ascontiguousarray(labels[:, :, z]).astype(np.uint8 if labels.max() < 256 else np.int32)
        yield (normalise_percentile(img) if normalise else img)[None], lab, original, target
