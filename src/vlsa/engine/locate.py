"""Finding the optic disc on a photograph (or a crop of any scale) with a trained locator run.

The locator's disc probability map on the letterboxed photo is thresholded at 0.5 (at half its
maximum where no pixel reaches 0.5: a faint disc is still a disc); of its connected components the
one with the largest probability mass is the disc. Its bounding box, mapped back to the photo,
gives the centre and the diameter (the longer extent, `vlsa.roi`'s measure).

Confidence, in [0, 1]: the chosen component's mean probability x its share of the probability
mass of all thresholded components. One clear blob scores near 1; two equal candidates about
half; a faint disc its low probability; nothing found 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from vlsa.engine.letterbox import Letterbox, letterbox
from vlsa.errors import VlsaError

THRESHOLD = 0.5
MIN_PEAK = 0.05  # below this maximum probability nothing on the photo is taken for a disc


@dataclass(frozen=True)
class Location:
    """A found disc in photo pixels: centre (row, col), continuous coordinates with pixel edges at
    integers; diameter = the longer extent of its bounding box (px); confidence in [0, 1]."""

    found: bool
    centre: tuple[float, float] = (float("nan"), float("nan"))
    diameter: float = float("nan")
    confidence: float = 0.0


def find_disc(prob: np.ndarray, box: Letterbox) -> Location:
    """S x S disc probability map on the letterbox canvas -> the disc's Location on the photo."""
    peak = float(prob.max()) if prob.size else 0.0
    if peak < MIN_PEAK:
        return Location(False)
    mask = prob >= min(THRESHOLD, peak / 2)
    labelled, count = ndimage.label(mask)
    mass = ndimage.sum(prob, labelled, index=np.arange(1, count + 1))
    best = int(np.argmax(mass)) + 1
    rows, cols = np.nonzero(labelled == best)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    centre = box.to_photo((top + bottom) / 2, (left + right) / 2)
    per_row, per_col = box.photo_px_per_canvas_px()
    diameter = max((bottom - top) * per_row, (right - left) * per_col)
    confidence = float(prob[rows, cols].mean()) * float(mass[best - 1] / mass.sum())
    return Location(True, (float(centre[0]), float(centre[1])), float(diameter), confidence)


class DiscLocator:
    """A trained locator run (RUN/locator) on photos: `locate(image) -> Location`."""

    def __init__(self, run_dir: str | Path, device: str = "cpu"):
        from vlsa.engine.evaluate import load_run
        from vlsa.engine.runinfo import resolve_device

        self.config, self.spec, self.model = load_run(run_dir, device=device)
        if self.config.train.mode != "locator" or tuple(self.spec.label_names) != ("background", "disc"):
            raise VlsaError(f"{run_dir}: not a disc locator run (train.mode {self.config.train.mode}, classes "
                            f"{list(self.spec.label_names)})")
        self.device = resolve_device(device, "--device")
        self.size = self.config.data.image_size

    def probability(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """C x H x W image in [0, 1] -> (S x S disc probability on the letterbox canvas, the letterbox)."""
        from vlsa.engine.geometry import normalise
        from vlsa.engine.inference import model_logits

        canvas, box = letterbox(image, self.size)
        x = normalise(canvas, self.config.data.normalise)[None]
        logits = model_logits(self.model, x, 1, self.device, progress=False)[0]
        return torch.softmax(logits, 0)[1].numpy(), box

    def locate(self, image: np.ndarray) -> Location:
        return find_disc(*self.probability(image))
