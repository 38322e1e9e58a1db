"""A whole photograph as the disc locator reads it: resized so its longer side is `size` px, the
aspect kept, centred on a square canvas padded with 0 (black, as outside a fundus camera's field
of view); and the way back from canvas coordinates to the photo's own pixels.

Coordinates are continuous (row, col) with pixel edges at integers (pixel i spans [i, i + 1)), the
convention of `vlsa.roi.square_box`, so a centre found on the canvas maps to the photo exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vlsa.engine.geometry import place


@dataclass(frozen=True)
class Letterbox:
    """The placement of an H x W photo on a `size` x `size` canvas."""

    shape: tuple[int, int]  # the photo's (H, W)
    size: int

    @property
    def inner(self) -> tuple[int, int]:
        """(h, w) of the resized photo on the canvas: the longer side is `size`."""
        scale = self.size / max(self.shape)
        return tuple(min(self.size, max(1, round(n * scale))) for n in self.shape)

    @property
    def offset(self) -> tuple[int, int]:
        """(row, col) of the resized photo's first pixel on the canvas."""
        return tuple((self.size - n) // 2 for n in self.inner)

    def to_photo(self, row: float, col: float) -> tuple[float, float]:
        """A canvas point (continuous) -> the same point in photo pixels (continuous)."""
        (h, w), (r0, c0) = self.inner, self.offset
        return (row - r0) * self.shape[0] / h, (col - c0) * self.shape[1] / w

    def photo_px_per_canvas_px(self) -> tuple[float, float]:
        """(rows, cols) of photo pixels one canvas pixel spans."""
        return self.shape[0] / self.inner[0], self.shape[1] / self.inner[1]


def letterbox(image: np.ndarray, size: int) -> tuple[torch.Tensor, Letterbox]:
    """C x H x W float image -> (C x size x size float32 tensor, its Letterbox). Antialiased
    bilinear resizing (as `vlsa.engine.geometry` resizes ROIs), zero padding."""
    box = Letterbox(tuple(int(n) for n in image.shape[-2:]), int(size))
    img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    small = F.interpolate(img[None], size=box.inner, mode="bilinear", antialias=True, align_corners=False)[0]
    return place(small, box.inner, (box.size, box.size), 0.0), box


def letterbox_mask(mask: np.ndarray, size: int) -> torch.Tensor:
    """H x W boolean mask -> size x size int64 {0, 1}: area-averaged, kept where >= 0.5, so a
    small disc is not thinned or thickened by nearest-neighbour sampling."""
    box = Letterbox(tuple(int(n) for n in mask.shape[-2:]), int(size))
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))
    small = F.interpolate(m[None, None], size=box.inner, mode="area")[0, 0]
    return (place(small, box.inner, (box.size, box.size), 0.0) >= 0.5).long()

