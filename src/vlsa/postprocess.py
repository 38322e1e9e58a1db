"""Anatomically plausible label maps: one connected component per structure, no holes, nesting.

    fundus (background, rim, cup): the optic disc (rim ∪ cup) is its largest connected component
        with holes filled; the cup is the largest component of the cup inside that disc, holes
        filled, so cup ⊂ disc always holds.
    cardiac (background, lv, myo, rv), per volume: each structure keeps its largest 3D connected
        component (slices stacked along axis 0); per slice, background enclosed by the myocardial
        ring becomes LV (the blood pool lies inside the ring) and holes in LV / RV are filled.
    any other label set: largest connected component and hole filling per label.

The rules are repeated until nothing changes (at most a few rounds), so `postprocess` is
idempotent: applying it to its own output returns the same map. scipy.ndimage does the work.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MAX_ROUNDS = 5


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component (face connectivity, any dimensionality) of a boolean mask."""
    labelled, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labelled.ravel())[1:]
    return labelled == (int(np.argmax(sizes)) + 1)


def fill_holes_2d(mask: np.ndarray) -> np.ndarray:
    """Fill holes per 2D slice (a H x W mask, or D x H x W filled slice by slice)."""
    if mask.ndim == 2:
        return ndimage.binary_fill_holes(mask)
    return np.stack([ndimage.binary_fill_holes(m) for m in mask])


def _fundus(labels: np.ndarray) -> np.ndarray:
    disc = fill_holes_2d(largest_component(labels >= 1))
    cup = fill_holes_2d(largest_component((labels == 2) & disc)) & disc
    out = np.zeros_like(labels)
    out[disc] = 1
    out[cup] = 2
    return out


def _cardiac(labels: np.ndarray, lv: int, myo: int, rv: int) -> np.ndarray:
    vol = labels if labels.ndim == 3 else labels[None]
    out = np.zeros_like(vol)
    for c in (myo, lv, rv):
        out[largest_component(vol == c)] = c
    for z in range(out.shape[0]):
        s = out[z]
        ring = s == myo
        inside = ndimage.binary_fill_holes(ring) & ~ring
        s[inside & (s == 0)] = lv
        for c in (lv, rv):
            s[fill_holes_2d(s == c) & (s == 0)] = c
    return out if labels.ndim == 3 else out[0]


def _generic(labels: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros_like(labels)
    for c in range(1, num_classes):
        out[largest_component(labels == c)] = c
    for c in range(1, num_classes):
        out[fill_holes_2d(out == c) & (out == 0)] = c
    return out


def _once(labels: np.ndarray, spec) -> np.ndarray:
    names = tuple(spec.label_names)
    if names == ("background", "rim", "cup"):
        if labels.ndim == 3:
            return np.stack([_fundus(s) for s in labels])
        return _fundus(labels)
    if {"lv", "myo", "rv"} <= set(names):
        return _cardiac(labels, names.index("lv"), names.index("myo"), names.index("rv"))
    return _generic(labels, spec.num_classes)


def postprocess(labels: np.ndarray, spec) -> np.ndarray:
    """Integer label map H x W (one image) or D x H x W (one volume, slices along axis 0) -> the
    plausible label map of the same shape and dtype. `spec` is the dataset's DatasetSpec."""
    labels = np.asarray(labels)
    out = labels
    for _ in range(MAX_ROUNDS):
        nxt = _once(out, spec)
        if np.array_equal(nxt, out):
            break
        out = nxt
    return out.astype(labels.dtype, copy=False)
