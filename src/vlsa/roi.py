"""The canonical disc-centred ROI of a fundus photograph: crop box from a disc mask, crop with
padding, paste back exactly.

Published optic disc / cup pipelines segment a square crop around the disc, not the whole photo
(DoFE: 800 px crops; the disc covers ~3-5 % of a whole Drishti-GS1 photo). The crop scale differs
between releases (DoFE's fixed 800 px puts the disc at 0.32-0.66 of the side), so vlsa states one
rule for every dataset:

    side   = round(k x D), D = the disc's diameter = the longer of its vertical and horizontal
             extent (bounding box, px);
    centre = the centre of the disc's bounding box.

The longer extent, not the equivalent-circle diameter: for any k > 1 it keeps the whole disc inside
the square however elongated the disc is (on Drishti-GS1 the equivalent-circle diameter is 0.90 to
0.99 of the longer extent, so with it a tall disc comes closer to the edge than a round one), the
vertical extent is what the vCDR measures, and the published crops were measured the same way
(docs/fundus.md). The bounding-box centre, not the centroid, puts the disc's extremes at equal
distances from the crop's edges.

A box is (top, left, bottom, right) in photo pixels, bottom/right exclusive; it may reach past the
photo's edges, where `crop` pads. `paste` is the exact inverse on the photo: crop -> paste back
returns the photo's pixels inside the box and `fill` elsewhere, bit for bit.
Pure functions on numpy arrays; no file access.
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]  # top, left, bottom, right (bottom/right exclusive), photo pixels


def bounding_box(mask: np.ndarray) -> Box:
    """Tight box of a mask's nonzero pixels. mask: H x W. Raises ValueError for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask: no disc pixel to place the ROI on")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def disc_diameter(mask: np.ndarray) -> int:
    """The disc's diameter in px: the longer of its vertical and horizontal extent. mask: H x W."""
    top, left, bottom, right = bounding_box(mask)
    return max(bottom - top, right - left)


def disc_box(mask: np.ndarray, scale: float) -> Box:
    """The square ROI of side round(scale x disc diameter) centred on the disc's bounding box.

    mask: H x W disc mask (nonzero = disc) in photo pixels. The box may extend past the photo.
    Raises ValueError for an empty mask or scale <= 0.
    """
    top, left, bottom, right = bounding_box(mask)
    return square_box(((top + bottom) / 2, (left + right) / 2), max(bottom - top, right - left), scale)


def square_box(centre: tuple[float, float], diameter: float, scale: float) -> Box:
    """The square ROI of side round(scale x diameter) around a disc centre given in continuous
    photo coordinates (row, col; pixel edges, so pixel i spans [i, i + 1)): a disc found by a
    locator rather than read from a mask. Raises ValueError for scale <= 0 or diameter <= 0."""
    if scale <= 0:
        raise ValueError(f"ROI scale must be > 0, got {scale}")
    if not diameter > 0:
        raise ValueError(f"disc diameter must be > 0 px, got {diameter}")
    side = max(1, int(round(scale * diameter)))
    # the box's first pixel is the nearest integer to centre - side / 2, so the disc sits within
    # half a pixel of the crop's centre
    row0 = int(np.floor(centre[0] - side / 2 + 0.5))
    col0 = int(np.floor(centre[1] - side / 2 + 0.5))
    return row0, col0, row0 + side, col0 + side


def _overlap(box: Box, shape: tuple[int, int]) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(slices into the photo, slices into the crop) of the part of `box` inside the photo."""
    top, left, bottom, right = box
    height, width = shape
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(bottom, height), min(right, width)
    if r1 <= r0 or c1 <= c0:
        raise ValueError(f"ROI box {box} does not overlap the photo of size {height} x {width}")
    return (slice(r0, r1), slice(c0, c1)), (slice(r0 - top, r1 - top), slice(c0 - left, c1 - left))


def crop(array: np.ndarray, box: Box, fill=0) -> np.ndarray:
    """Cut `box` out of a photo, padding with `fill` where the box leaves it.

    array: ... x H x W (leading axes, e.g. channels, kept) -> ... x (bottom - top) x (right - left),
    same dtype. Raises ValueError when the box lies wholly outside the photo.
    """
    top, left, bottom, right = box
    photo, inside = _overlap(box, array.shape[-2:])
    out = np.full((*array.shape[:-2], bottom - top, right - left), fill, dtype=array.dtype)
    out[(..., *inside)] = array[(..., *photo)]
    return out


def paste(cropped: np.ndarray, box: Box, shape: tuple[int, int], fill=0) -> np.ndarray:
    """Put a crop (e.g. a predicted label map of the ROI) back into a photo-sized array.

    cropped: ... x (bottom - top) x (right - left); shape: the photo's (H, W) -> ... x H x W, same
    dtype, `fill` outside the box; the crop's padding (outside the photo) is dropped. The inverse
    of `crop`: paste(crop(x, box), box, x.shape[-2:]) equals x inside the box, exactly.
    Raises ValueError when the crop's size is not the box's or the box misses the photo.
    """
    top, left, bottom, right = box
    if cropped.shape[-2:] != (bottom - top, right - left):
        raise ValueError(f"crop of size {cropped.shape[-2]} x {cropped.shape[-1]} does not fit the box {box}")
    photo, inside = _overlap(box, shape)
    out = np.full((*cropped.shape[:-2], *shape), fill, dtype=cropped.dtype)
    out[(..., *photo)] = cropped[(..., *inside)]
    return out
