"""The unit that flows from readers to the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sample:
    """One 2D image with its label map.

    image: float32 array C x H x W (RGB fundus: 3 channels in [0, 1]; MRI: 1 channel, normalised).
    label: int64 array H x W of class indices (0 = background), or None when unlabelled.
    For slices of a volume, `volume_id` groups slices for per-volume metrics, `slice_index` orders
    them, `spacing` is (row, col) pixel spacing in mm after in-plane resampling and
    `slice_thickness` the through-plane spacing.
    """

    image: np.ndarray
    label: np.ndarray | None
    domain: str
    case_id: str
    name: str
    volume_id: str | None = None
    slice_index: int | None = None
    spacing: tuple[float, float] = (1.0, 1.0)
    slice_thickness: float = 1.0
    affine: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def group(self) -> str:
        """The unit metrics are computed over: the volume for slices, else the image."""
        return self.volume_id or self.name
