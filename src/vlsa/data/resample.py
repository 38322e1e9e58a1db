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
