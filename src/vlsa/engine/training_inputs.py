"""What the training images looked like, and whether an image given to `predict` is far from it.

A model trained on disc-centred fundus ROIs segments a whole fundus photograph without complaint,
and badly (glare at the photo's edge labelled as disc, the real disc a few pixels). Until the
whole-photo pipeline exists, training records a profile of its inputs in run.json
(`training_inputs`: image sizes, aspect ratios, how much of the image each region covers) and
prediction warns when an input's size or aspect, or its predicted regions' cover, lies well
outside it. 2D images only: volume slices are resampled to a physical spacing, so their pixel size
says nothing, and a slice's cover depends on where it lies in the heart.
"""

from __future__ import annotations

import numpy as np
import torch

from vlsa.engine.data import Prepared

# how far outside the training range counts as far: a side twice the largest (or half the smallest)
# training side; an aspect ratio 1.1x outside the training ratios (square ROIs against photographs:
# Drishti-GS1 1.17, 4:3 1.33, 3:2 1.5; resizing to the square model input distorts them); a region
# covering twice its largest (or half its smallest) training cover (a whole photo's disc: 2-5 %,
# disc-centred ROIs' 7-25 %)
SIDE_FACTOR = 2.0
ASPECT_FACTOR = 1.1
COVER_FACTOR = 2.0


def profile(train_set: Prepared, spec) -> dict | None:
    """The training images' ranges: {"images": N, "height": [min, max] px, "width": [min, max] px,
    "aspect": [min, max] (width / height), "cover": {region: [min, max] fraction of the image}}, the
    sizes as read (`Geometry.native`), the cover from the N x S x S model-size labels. None for volumes."""
    if spec.volumetric or not len(train_set):
        return None
    heights = [g.native[0] for g in train_set.geometries]
    widths = [g.native[1] for g in train_set.geometries]
    aspects = [w / h for h, w in zip(heights, widths)]
    cover = {}
    for region, indices in spec.regions.items():
        fraction = torch.isin(train_set.labels, torch.tensor(indices)).float().mean((1, 2))
        cover[region] = [round(float(fraction.min()), 5), round(float(fraction.max()), 5)]
    return {"images": len(train_set), "height": [min(heights), max(heights)], "width": [min(widths), max(widths)],
            "aspect": [round(min(aspects), 4), round(max(aspects), 4)], "cover": cover}


def far_from_training(labels: np.ndarray, profile: dict | None, spec, colour: bool = False) -> list[str]:
    """Why an input, given its H x W predicted label map (on the input's own grid), is far from the
    training inputs `profile`: one phrase per reason; [] when it is close, or without a profile.
    colour: the input is a colour picture (`vlsa.data.io.load_image_colour`); far for a model of grey
    (single-channel) images, with or without a profile."""
    reasons = []
    if colour and spec.channels == 1:
        reasons.append("a colour picture, converted to grey: the run was trained on single-channel (grey) images")
    if not profile:
        return reasons
    h, w = labels.shape[-2:]
    (h_lo, h_hi), (w_lo, w_hi) = profile["height"], profile["width"]
    if max(h / h_hi, w / w_hi) > SIDE_FACTOR or min(h / h_lo, w / w_lo) < 1 / SIDE_FACTOR:
        trained = f"{h_lo} x {w_lo}" if (h_lo, w_lo) == (h_hi, w_hi) else f"{h_lo}-{h_hi} x {w_lo}-{w_hi}"
        reasons.append(f"{h} x {w} px (height x width), trained on {trained} px")
    a_lo, a_hi = profile["aspect"]
    if w / h > a_hi * ASPECT_FACTOR or w / h < a_lo / ASPECT_FACTOR:
        reasons.append(f"aspect ratio {w / h:.2f} (width / height), trained on {a_lo:.2f}-{a_hi:.2f}")
    for region, indices in spec.regions.items():
        lo, hi = profile.get("cover", {}).get(region, (0.0, 0.0))
        if hi <= 0:  # never present in training (not annotated there): no range to compare with
            continue
        c = float(np.isin(labels, indices).mean())
        if c > hi * COVER_FACTOR or c < lo / COVER_FACTOR:
            reasons.append(f"predicted {region} covers {100 * c:.1f}% of the image, {100 * lo:.1f}-{100 * hi:.1f}% "
                           "in training")
    return reasons
