"""From a fundus photograph to the cup-to-disc ratio: locate the disc, cut the canonical ROI,
segment, paste back onto the photo's own pixel grid, measure.

    1. the run's disc locator (RUN/locator, `vlsa.engine.locate`) finds the disc's centre and
       diameter D on the whole image;
    2. the canonical ROI (`vlsa.roi`, the rule the training ROIs were cut by): a square of side
       data.roi_scale x D around that centre, padded with 0 past the image's edges, resampled to
       the segmentation model's input exactly as training and evaluation resample ROIs;
    3. segment, map the logits back to the ROI's own pixels (bilinear, argmax) and post-process
       (`vlsa.postprocess`: one disc, holes filled, the cup its largest component inside the disc);
    4. refine: the ROI is placed again by the same rule on the segmented disc, and segmented again,
       until it moves by less than SETTLED of its side (at most REFINEMENTS times): the ROI the model
       sees is then the one it was trained on, whatever the locator's coarse estimate was;
    5. paste the ROI's label map back into an image-sized map (background outside the ROI).

The same path serves an input that is already a crop of any scale (DoFE's 800 px crops, RIM-ONE's):
the locator finds the disc in it and the ROI brings it to the training scale, so a model trained on
one dataset's crops meets another's at the same scale.

Post-processing is applied here whatever `eval.postprocess` decided for Dice: the ratios are
ratios of one disc's and one cup's extents, which stray blobs would make meaningless.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlsa import roi
from vlsa.clinical import cup_to_disc
from vlsa.engine.locate import DiscLocator, Location
from vlsa.engine.locator import has_locator, locator_dir
from vlsa.errors import VlsaError

REFINEMENTS = 2
SETTLED = 0.02  # fraction of the ROI's side below which a refined ROI counts as the same


@dataclass
class PhotoResult:
    """labels: H x W uint8 (0 background, 1 rim, 2 cup) on the input's grid; location: the
    locator's disc; located_box: the ROI placed on it; box: the ROI the labels were segmented in
    (None for both when no disc was found)."""

    labels: np.ndarray
    location: Location
    located_box: roi.Box | None
    box: roi.Box | None


def _settled(new: roi.Box, old: roi.Box) -> bool:
    side = old[2] - old[0]
    return max(abs(a - b) for a, b in zip(new, old)) <= SETTLED * side


class PhotoSegmenter:
    """A fundus segmentation run with its disc locator, applied to whole images: `segment(image)`."""

    def __init__(self, run_dir: str | Path, device: str = "cpu", loaded=None):
        """`loaded`: the run already loaded (anything with its `config`, `spec`, `model`, e.g. a
        `vlsa.engine.predict.Predictor`), else it is loaded from `run_dir`."""
        from vlsa.engine.evaluate import load_run
        from vlsa.engine.runinfo import resolve_device

        if not has_locator(run_dir):
            raise VlsaError(f"{run_dir}: no disc locator ({locator_dir(run_dir)}/checkpoints/best.pt); train one "
                            "with `vlsa train ... --set train.locator=true`")
        if loaded is not None:
            self.config, self.spec, self.model = loaded.config, loaded.spec, loaded.model
        else:
            self.config, self.spec, self.model = load_run(run_dir, device=device)
        if tuple(self.spec.label_names) != ("background", "rim", "cup"):
            raise VlsaError(f"{run_dir}: the whole-photo pipeline needs a fundus disc / cup run, this one segments "
                            f"{list(self.spec.label_names)}")
        self.device = resolve_device(device, "--device")
        self.locator = DiscLocator(locator_dir(run_dir), device)
        self.scale = self.config.data.roi_scale

    def segment_roi(self, image: np.ndarray, box: roi.Box) -> np.ndarray:
        """C x H x W image, ROI box -> the ROI's post-processed label map (side x side uint8)."""
        from vlsa.engine.data import model_input
        from vlsa.engine.geometry import geometry_for, to_original
        from vlsa.engine.inference import model_logits
        from vlsa.postprocess import postprocess

        cut = roi.crop(image, box)
        geom = geometry_for(False, cut.shape[-2:], self.config.data.image_size)
        logits = model_logits(self.model, model_input(cut, geom, self.config)[None], 1, self.device, progress=False,
                              tta=self.config.eval.tta)
        labels = to_original(logits[0], geom).argmax(0).numpy().astype(np.uint8)
        return postprocess(labels, self.spec)

    def segment(self, image: np.ndarray) -> PhotoResult:
        """C x H x W image in [0, 1] (a whole photo or a crop) -> its PhotoResult (module docstring)."""
        shape = tuple(image.shape[-2:])
        location = self.locator.locate(image)
        if not location.found:
            return PhotoResult(np.zeros(shape, np.uint8), location, None, None)
        # a disc (found, or refined from a poor segmentation) wider than the image is no disc: the ROI
        # side is capped at twice the image's longer side, which also bounds the work per image
        cap = 2 * max(shape) / self.scale
        box = located = roi.square_box(location.centre, min(location.diameter, cap), self.scale)
        labels = self.segment_roi(image, box)
        for _ in range(REFINEMENTS):
            if not (labels > 0).any():
                break
            top, left, bottom, right = roi.bounding_box(labels > 0)
            centre = (box[0] + (top + bottom) / 2, box[1] + (left + right) / 2)
            new = roi.square_box(centre, min(max(bottom - top, right - left), cap), self.scale)
            if _settled(new, box):
                break
            refined = self.segment_roi(image, new)
            if not (refined > 0).any():  # the disc vanished in the new ROI: keep the one that saw it
                break
            box, labels = new, refined
        return PhotoResult(roi.paste(labels, box, shape), location, located, box)


MEASURES = ("image", "disc_x", "disc_y", "disc_area_px", "cup_area_px", "vcdr", "hcdr", "acdr",
            "locator_confidence")


def measures(labels: np.ndarray, location: Location) -> dict[str, float]:
    """H x W label map (0 background, 1 rim, 2 cup) -> the measures.csv values of one image:
    disc_x, disc_y = the disc's bounding-box centre in 0-based pixel indices (column, row); areas in
    px; vCDR / hCDR / area CDR (`vlsa.clinical.cup_to_disc`, NaN without a disc); the locator's
    confidence."""
    disc, cup = labels >= 1, labels == 2
    ratios = cup_to_disc(disc, cup)
    x = y = math.nan
    if disc.any():
        top, left, bottom, right = roi.bounding_box(disc)
        x, y = (left + right - 1) / 2, (top + bottom - 1) / 2
    return {"disc_x": x, "disc_y": y, "disc_area_px": int(disc.sum()), "cup_area_px": int(cup.sum()), **ratios,
            "locator_confidence": location.confidence}


def measures_csv(rows: list[dict]) -> str:
    """Rows of `measures` (+ 'image') -> CSV text, columns MEASURES; a missing value is left empty."""
    import csv
    import io

    def cell(value):
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MEASURES)
    writer.writerows([[cell(row[k]) for k in MEASURES] for row in rows])
    return buf.getvalue()


# A disc is ~5 % of a fundus photograph and at most ~35 % of a disc-centred crop (its diameter spans
# 0.3-0.65 of the crop side across public sets): a predicted disc over half the image is no disc
DISC_FRACTION_MAX = 0.5


def implausible_discs(rows: list[dict], pixels: list[int]) -> str | None:
    """One warning line when a predicted disc covers more than DISC_FRACTION_MAX of its image
    (`rows` as `measures` gives them, with 'image'; `pixels`: each image's H * W), else None."""
    frac = [r["disc_area_px"] / max(1, n) for r, n in zip(rows, pixels)]
    bad = [(f, r["image"]) for f, r in zip(frac, rows) if f > DISC_FRACTION_MAX]
    if not bad:
        return None
    worst = max(bad)
    return (f"vlsa: warning: {len(bad)} of {len(rows)} image(s) (e.g. {bad[0][1]}; up to {worst[0]:.0%} in "
            f"{worst[1]}): the predicted disc covers more than {DISC_FRACTION_MAX:.0%} of the image, which no fundus "
            "photograph (disc ~5 %) or disc-centred crop shows; the run is undertrained or these are not fundus "
            "images: check the overlays before using their vCDR")


def batch_summary(rows: list[dict], where: Path) -> str:
    """One line: images, discs found, the vCDR median and range, where the CSV is."""
    vcdr = np.array([r["vcdr"] for r in rows], dtype=np.float64)
    found = np.isfinite(vcdr)
    text = f"measures: {where} ({len(rows)} image(s), disc found on {int(found.sum())}"
    if found.any():
        text += f"; vCDR median {np.median(vcdr[found]):.2f}, range {vcdr[found].min():.2f}-{vcdr[found].max():.2f}"
    return text + ")"


def predict_photos(run_dir, files: list[Path], output: str | Path, overlay: bool = False, device: str = "cpu",
                   quiet: bool = False, lut: np.ndarray | None = None, loaded=None,
                   shown_as: str | Path | None = None) -> list[Path]:
    """`vlsa predict` for a run with a disc locator: per input a label PNG of the input's size and
    name (`lut` maps class indices to pixel values, identity by default), `<name>_overlay.png` with
    `overlay`, and measures.csv (one row per input, columns MEASURES) in `output`; `loaded` as for
    `PhotoSegmenter`; `shown_as`: the folder the summary line names (`predict_paths` writes into a
    staging folder and moves the files there). Raises DataError
    for a volume (the pipeline reads photographs) before anything is written."""
    from tqdm import tqdm

    from vlsa.data.io import is_nifti, load_image, stem, write_png
    from vlsa.errors import DataError
    from vlsa.report.photo_overlay import photo_overlay
    from vlsa.utils.atomic import write_text

    for path in files:
        if is_nifti(path):
            raise DataError(path, "this run segments fundus photographs (PNG/JPEG/TIFF), not volumes")
    segmenter = PhotoSegmenter(run_dir, device=device, loaded=loaded)
    lut = np.arange(segmenter.spec.num_classes, dtype=np.uint8) if lut is None else lut
    output, written, rows, pixels = Path(output), [], [], []
    for path in tqdm(files, desc="predict", unit="photo", disable=quiet):
        image = load_image(path, segmenter.spec.channels)
        result = segmenter.segment(image)
        target = output / f"{stem(path)}.png"
        write_png(target, lut[result.labels])
        row = {"image": path.name, **measures(result.labels, result.location)}
        if overlay:
            write_png(output / f"{stem(path)}_overlay.png", photo_overlay(image, result.labels, result.box, row,
                                                                          segmenter.spec))
        rows.append(row)
        pixels.append(int(result.labels.shape[0] * result.labels.shape[1]))
        written.append(target)
    write_text(output / "measures.csv", measures_csv(rows))
    if not quiet:
        print(batch_summary(rows, Path(shown_as or output) / "measures.csv"))
        if (warning := implausible_discs(rows, pixels)) is not None:
            print(warning, file=sys.stderr)
    return written
