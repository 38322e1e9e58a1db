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
    When a plane was resampled (`data.spacing`), `original_label` keeps the annotation on its own
    grid (H0 x W0, uint8) and `original_spacing` its (row, col) mm: metrics are scored against it
    (predictions mapped back with `vlsa.engine.geometry.to_original`), never against the
    resampled copy, whose nearest-neighbour error differs between scanners.
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
    original_label: np.ndarray | None = None
    original_spacing: tuple[float, float] | None = None
    meta: dict = field(default_factory=dict)
    # region names annotated in this case (None = the dataset spec's `annotated_regions`): a
    # Sunnybrook frame with only an endocardial contour annotates ("lv",), not MYO
    annotated: tuple[str, ...] | None = None

    @property
    def original_shape(self) -> tuple[int, int] | None:
        """H0 x W0 of the annotation's own grid, or None when `label` is already on it."""
        return None if self.original_label is None else tuple(self.original_label.shape)

    def scoring(self) -> tuple[np.ndarray | None, tuple[float, float]]:
        """(label map, (row, col) spacing mm) that metrics compare predictions with."""
        if self.original_label is not None:
            return self.original_label, self.original_spacing
        return self.label, self.spacing

    @property
    def group(self) -> str:
        """The unit metrics are computed over: the volume for slices, else the image."""
        return self.volume_id or self.name
