"""Random smooth fields shared by the synthetic generators."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_noise(shape: tuple[int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std noise with about `cells` blobs across the image (bicubic upsampling)."""
    coarse = rng.normal(size=(cells + 3, cells + 3))
    factors = [(s + 3 * s / cells) / (cells + 3) for s in shape]
    field = ndimage.zoom(coarse, factors, order=3)[: shape[0], : shape[1]]
    if field.shape != shape:
        field = np.pad(field, [(0, shape[0] - field.shape[0]), (0, shape[1] - field.shape[1])], mode="edge")
    return (field - field.mean()) / (field.std() + 1e-8)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def ellipse_distance(yy, xx, cy, cx, ry, rx, angle) -> np.ndarray:
    """Normalised elliptical radius: < 1 inside the ellipse (angle in radians)."""
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return np.sqrt((u / rx) ** 2 + (v / ry) ** 2)


def segment_distance(yy, xx, p0, p1) -> np.ndarray:
    """Distance of every pixel to the segment p0-p1 (points as (y, x))."""
    d = np.subtract(p1, p0)
    length2 = max(float(d @ d), 1e-12)
    t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / length2, 0.0, 1.0)
    return np.hypot(yy - (p0[0] + t * d[0]), xx - (p0[1] + t * d[1]))
