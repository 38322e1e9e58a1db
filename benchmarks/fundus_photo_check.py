"""The whole-photo pipeline of a trained fundus run on inputs from other datasets and cameras:

1. the DoFE benchmark's sample crops (../shared/realdata/dofe-samples: Drishti-GS, RIM-ONE-r3,
   REFUGE Zeiss and Canon crops, the disc at 0.32-0.60 of the side): the locator finds the disc in
   the crop and the canonical ROI brings it to the training scale;
2. a whole-photo stand-in from another camera: each REFUGE crop (Domain3 Zeiss, Domain4 Canon) in
   a 2124 x 2056 canvas (REFUGE's Zeiss photo size), its border pixels replicated outwards and a
   circular field of view cut, so the disc is ~0.13 of the longer side (the shared data has no whole
   photograph from another camera; this is a constructed one, said so in every report).

Per image: one disc component, the cup one component inside it (the post-processing invariants,
checked on the mapped-back map), Dice disc / cup against the DoFE mask (255 background, 128 rim,
0 cup), vCDR of prediction and mask, the locator's confidence.

    python benchmarks/fundus_photo_check.py --run RUN [--dofe ../shared/realdata/dofe-samples]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage

CANVAS = (2056, 2124)  # H x W of a REFUGE (Zeiss) whole photo


def dofe_labels(mask: np.ndarray) -> np.ndarray:
    """DoFE mask grey levels -> 0 background, 1 rim, 2 cup (the public loaders' thresholds)."""
    grey = mask if mask.ndim == 2 else mask[..., 0]
    return np.where(grey > 200, 0, np.where(grey > 50, 1, 2)).astype(np.uint8)


def pseudo_photo(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C x h x w crop in [0, 1] + its labels -> (C x H x W stand-in photo, H x W labels): the crop
    centred in CANVAS, its edge pixels replicated outwards, black outside a circular field of view."""
    h, w = image.shape[1:]
    top, left = (CANVAS[0] - h) // 2, (CANVAS[1] - w) // 2
    pad = ((top, CANVAS[0] - h - top), (left, CANVAS[1] - w - left))
    photo = np.stack([np.pad(c, pad, mode="edge") for c in image])
    rows, cols = np.mgrid[: CANVAS[0], : CANVAS[1]]
    photo[:, np.hypot(rows - CANVAS[0] / 2, cols - CANVAS[1] / 2) > 0.48 * max(CANVAS)] = 0
    return photo, np.pad(label, pad)


def check(labels: np.ndarray, truth: np.ndarray) -> dict:
    from vlsa.clinical import cup_to_disc

    disc, cup = labels >= 1, labels == 2
    dice = {}
    for name, p, t in (("disc", disc, truth >= 1), ("cup", cup, truth == 2)):
        dice[name] = 2 * (p & t).sum() / max(1, p.sum() + t.sum())
    return {"discs": ndimage.label(disc)[1], "cups": ndimage.label(cup)[1], "cup_inside": not (cup & ~disc).any(),
            **{f"dice_{k}": float(v) for k, v in dice.items()},
            "vcdr": cup_to_disc(disc, cup)["vcdr"], "vcdr_mask": cup_to_disc(truth >= 1, truth == 2)["vcdr"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--dofe", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata"
                                          / "dofe-samples"))
    args = parser.parse_args()
    from vlsa.data.io import load_image, load_mask
    from vlsa.engine.fundus_photo import PhotoSegmenter
    from vlsa.roi import bounding_box

    segmenter = PhotoSegmenter(args.run)
    print("| input | span / side | discs | cups | cup inside | Dice disc | Dice cup | vCDR | vCDR mask | locator |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted(Path(args.dofe).glob("Domain*/*/ROIs/image/*.png")):
        image = load_image(path, 3)
        truth = dofe_labels(load_mask(path.parents[1] / "mask" / path.name))
        inputs = [(f"{path.parts[-5]} {path.stem} crop", image, truth)]
        if path.parts[-5] in ("Domain3", "Domain4"):
            inputs.append((f"{path.parts[-5]} {path.stem} in a {CANVAS[1]}x{CANVAS[0]} stand-in photo",
                           *pseudo_photo(image, truth)))
        for name, img, lab in inputs:
            result = segmenter.segment(img)
            c = check(result.labels, lab)
            top, left, bottom, right = bounding_box(lab >= 1)
            span = max(bottom - top, right - left) / max(lab.shape)
            print(f"| {name} | {span:.2f} | {c['discs']} | {c['cups']} | {'yes' if c['cup_inside'] else 'NO'} | "
                  f"{c['dice_disc']:.3f} | {c['dice_cup']:.3f} | {c['vcdr']:.3f} | {c['vcdr_mask']:.3f} | "
                  f"{result.location.confidence:.2f} |")


if __name__ == "__main__":
    main()
