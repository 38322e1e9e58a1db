"""Fit images to the model's input size and map predictions back to the native grid.

2D photographs (fundus, folder PNGs) are resized (the whole ROI matters, aspect kept square).
Slices of volumes are already at a physical spacing, so they are centre-padded/cropped: resizing
would change the millimetres per pixel between vendors, which is exactly what spacing
normalisation removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Geometry:
    mode: str  # "resize" | "pad"
    native: tuple[int, int]
    size: int

    def _offsets(self):
        # offsets of the native grid inside the model grid (negative = native is cropped)
        return [(self.size - n) // 2 for n in self.native]


def geometry_for(volumetric: bool, native: tuple[int, int], size: int) -> Geometry:
    return Geometry("pad" if volumetric else "resize", tuple(int(n) for n in native), size)


def place(array: torch.Tensor, src: tuple[int, int], dst: tuple[int, int], fill: float) -> torch.Tensor:
    """Centre `array` (... x H x W of shape src) in a canvas of shape dst, cropping or padding."""
    out = array.new_full((*array.shape[:-2], *dst), fill)
    ys, yd = _span(src[0], dst[0])
    xs, xd = _span(src[1], dst[1])
    out[..., yd, xd] = array[..., ys, xs]
    return out


def _span(n_src: int, n_dst: int):
    if n_dst >= n_src:
        o = (n_dst - n_src) // 2
        return slice(0, n_src), slice(o, o + n_src)
    o = (n_src - n_dst) // 2
    return slice(o, o + n_dst), slice(0, n_dst)


def to_model(image: np.ndarray, label: np.ndarray | None, geom: Geometry):
    """C x H x W image (+ H x W label) -> tensors at the model size."""
    img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    lab = None if label is None else torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))
    size = (geom.size, geom.size)
    if geom.mode == "resize":
        img = F.interpolate(img[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        if lab is not None:
            lab = F.interpolate(lab[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
    else:
        img = place(img, geom.native, size, 0.0)
        if lab is not None:
            lab = place(lab, geom.native, size, 0)
    return img, lab


def to_native(logits: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """K x S x S logits -> K x H x W logits on the native grid (padding regions -> background)."""
    if geom.mode == "resize":
        return F.interpolate(logits[None], size=geom.native, mode="bilinear", align_corners=False)[0]
    out = place(logits, (geom.size, geom.size), geom.native, 0.0)
    # native pixels outside the model's field of view are background
    outside = place(torch.ones(1, geom.size, geom.size), (geom.size, geom.size), geom.native, 0.0)[0] == 0
    if outside.any():
        out[:, outside] = -1e4
        out[0, outside] = 1e4
    return out


def to_original(logits: torch.Tensor, geom: Geometry, original: tuple[int, int] | None = None) -> torch.Tensor:
    """K x S x S model-grid logits -> K x H0 x W0 logits on the annotation's original grid.

    The one way predictions go back to the input, used by evaluation and `vlsa predict` alike:
    first `to_native` (undo the pad/crop or resize to the sample's grid), then, when the sample was
    resampled to `data.spacing` (`original` = the original H0 x W0, else None), bilinear
    interpolation of the logits to the original grid (pixel-area aligned, like the forward
    resampling), so the label is decided by argmax on the original grid.
    """
    return _to_grid(to_native(logits, geom), original)


def _to_grid(logits: torch.Tensor, original) -> torch.Tensor:
    if original is None or tuple(original) == tuple(logits.shape[-2:]):
        return logits
    return F.interpolate(logits[None], size=tuple(int(n) for n in original), mode="bilinear", align_corners=False)[0]


def labels_to_original(label: np.ndarray, num_classes: int, original: tuple[int, int] | None,
                       geom: Geometry | None = None) -> np.ndarray:
    """H x W label map on a sample's (resampled) grid -> H0 x W0 on the original grid, the way
    `to_original` maps logits (one-hot, bilinear, argmax): for predictions made elsewhere (nnU-Net).
    geom: the label is on that model grid (S x S), first taken back to the sample's grid as `to_native`."""
    if geom is None and (original is None or tuple(original) == label.shape):
        return label
    onehot = F.one_hot(torch.from_numpy(np.asarray(label, dtype=np.int64)), num_classes).permute(2, 0, 1).float()
    return (_to_grid(onehot, original) if geom is None else to_original(onehot, geom, original)).argmax(0).numpy()


def normalise(image: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-image, per-channel z-score (or nothing)."""
    if mode == "none":
        return image
    dims = (-2, -1)
    mean = image.mean(dim=dims, keepdim=True)
    std = image.std(dim=dims, keepdim=True).clamp_min(1e-6)
    return (image - mean) / std
