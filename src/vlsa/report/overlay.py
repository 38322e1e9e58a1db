"""Contour overlays of label maps on images (PNG grids)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from vlsa.data.spec import DatasetSpec

# one colour per evaluation region, in order
PALETTE = np.array([[0, 255, 0], [255, 0, 255], [0, 200, 255], [255, 220, 0], [255, 80, 80]], dtype=np.uint8)
PREDICTION_TINT = np.array([255, 255, 255], dtype=np.uint8)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """C x H x W float -> H x W x 3 uint8. RGB in [0, 1] is shown as it is (colour balance is what
    differs between sites); anything else is stretched to its 0.5-99.5 percentiles."""
    img = image if image.shape[0] == 3 else np.repeat(image[:1], 3, axis=0)
    if image.shape[0] == 3 and img.min() >= 0 and img.max() <= 1:
        return (img.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    lo, hi = np.percentile(img, [0.5, 99.5])
    img = np.clip((img - lo) / max(hi - lo, 1e-8), 0, 1)
    return (img.transpose(1, 2, 0) * 255).astype(np.uint8)


def boundary(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def draw_contours(rgb: np.ndarray, label: np.ndarray, spec: DatasetSpec, dashed: bool = False) -> np.ndarray:
    """Draw each region's contour in its palette colour (dashed for predictions)."""
    out = rgb.copy()
    for i, indices in enumerate(spec.regions.values()):
        edge = boundary(np.isin(label, indices))
        if dashed:
            yy, xx = np.indices(edge.shape)
            edge &= ((yy + xx) // 2) % 2 == 0
        out[edge] = PALETTE[i % len(PALETTE)]
    return out


def grid(tiles: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Rows of H x W x 3 tiles (sizes may differ) -> one image, each tile padded to the largest."""
    h = max(t.shape[0] for row in tiles for t in row)
    w = max(t.shape[1] for row in tiles for t in row)
    ncol = max(len(row) for row in tiles)
    out = np.zeros((len(tiles) * (h + pad) + pad, ncol * (w + pad) + pad, 3), dtype=np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            out[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return out
