"""The whole-photo overlay of `vlsa predict`: the disc and cup contours on the photo, the ROI's
outline, a zoomed inset of the ROI's centre in the corner away from the disc, and the ratios in a
caption."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy import ndimage

from vlsa import roi
from vlsa.data.spec import DatasetSpec
from vlsa.report.overlay import PALETTE, boundary, text_strip, to_rgb

MAX_SIDE = 1024  # the overlay's longer side at most (px)
INSET = 0.45  # the inset's side as a fraction of the overlay's shorter side
ZOOM = 0.6  # the inset shows the central ZOOM x ZOOM of the ROI (1.5 disc diameters at roi_scale 2.5)
FRAME = np.array([255, 255, 255], dtype=np.uint8)


def _resize(array: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """H x W (x 3) uint8 -> size = (h, w)."""
    if array.shape[:2] == size:
        return array
    return np.asarray(Image.fromarray(array).resize((size[1], size[0]), Image.NEAREST if nearest else Image.BILINEAR))


def contours(rgb: np.ndarray, labels: np.ndarray, spec: DatasetSpec, width: int) -> np.ndarray:
    """Each region's contour, `width` px thick, in its palette colour (disc, then cup on top)."""
    out = rgb.copy()
    for i, indices in enumerate(spec.regions.values()):
        edge = boundary(np.isin(labels, indices))
        if width > 1:
            edge = ndimage.binary_dilation(edge, iterations=width - 1)
        out[edge] = PALETTE[i % len(PALETTE)]
    return out


def _outline(rgb: np.ndarray, box: tuple[int, int, int, int], width: int) -> None:
    """Draw a rectangle (top, left, bottom, right; clipped to the image) in place."""
    h, w = rgb.shape[:2]
    top, left = max(box[0], 0), max(box[1], 0)
    bottom, right = min(box[2], h), min(box[3], w)
    if bottom <= top or right <= left:
        return
    rgb[top : min(top + width, bottom), left:right] = FRAME
    rgb[max(bottom - width, top) : bottom, left:right] = FRAME
    rgb[top:bottom, left : min(left + width, right)] = FRAME
    rgb[top:bottom, max(right - width, left) : right] = FRAME


def caption(row: dict) -> str:
    def fmt(key):
        value = row.get(key, math.nan)
        return "-" if value != value else f"{value:.2f}"

    return (f"{row.get('image', '')}  vCDR {fmt('vcdr')}  hCDR {fmt('hcdr')}  area CDR {fmt('acdr')}  "
            f"locator {fmt('locator_confidence')}")


def photo_overlay(image: np.ndarray, labels: np.ndarray, box, row: dict, spec: DatasetSpec) -> np.ndarray:
    """C x H x W image in [0, 1], H x W label map, the ROI box (None: no disc found), the image's
    measures row -> H' x W' x 3 uint8: caption strip above the photo (longer side <= MAX_SIDE) with
    the contours, the ROI outlined, and the ROI's centre (the disc) zoomed in the corner away from it."""
    rgb, (h, w) = to_rgb(image), labels.shape
    scale = min(1.0, MAX_SIDE / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = _resize(rgb, size, nearest=False)
    small_labels = _resize(labels.astype(np.uint8), size, nearest=True)
    width = max(1, round(max(size) / 350))  # 2 px at 700 px, 3 at 1024
    out = contours(small, small_labels, spec, width)
    if box is not None:
        shown = tuple(int(round(v * scale)) for v in box)
        _outline(out, shown, width)
        side = min(max(8, int(INSET * min(size))), *size)
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        zoomed = roi.square_box(centre, box[2] - box[0], ZOOM)
        inset_rgb = _resize(roi.crop(rgb.transpose(2, 0, 1), zoomed).transpose(1, 2, 0), (side, side), nearest=False)
        inset_labels = _resize(roi.crop(labels.astype(np.uint8), zoomed), (side, side), nearest=True)
        inset = contours(inset_rgb, inset_labels, spec, max(width, side // 150))
        _outline(inset, (0, 0, side, side), max(1, side // 150))
        # the corner away from the disc
        row0 = 0 if (shown[0] + shown[2]) / 2 > size[0] / 2 else size[0] - side
        col0 = 0 if (shown[1] + shown[3]) / 2 > size[1] / 2 else size[1] - side
        out[row0 : row0 + side, col0 : col0 + side] = inset
    swatches = [(PALETTE[i % len(PALETTE)], name) for i, name in enumerate(spec.regions)]
    strip = text_strip(caption(row), out.shape[1], height=16, swatches=swatches)
    return np.concatenate([strip, out], axis=0)
