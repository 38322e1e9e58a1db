"""Running a model over prepared samples and scoring the predictions on the native grid."""

from __future__ import annotations

import numpy as np
import torch

from vlsa.config import TTA_MODES
from vlsa.engine.data import Prepared
from vlsa.engine.geometry import to_original
from vlsa.errors import VlsaError
from vlsa.metrics import DomainAccumulator

# recorded in metrics.json; a protocol re-evaluates (not retrains) a run scored by an older version.
# 2: volumes scored against the original annotation on its own grid and spacing (issue 15)
# 3: metrics with and without anatomical post-processing (domains_postprocess_on/off, issue 11)
SCORING_VERSION = 3


def check_tta(tta: str | None) -> str | None:
    """A test-time augmentation asked for by a caller (None: the run's eval.tta) -> itself.
    Raises VlsaError naming --tta for one not in TTA_MODES."""
    if tta is not None and tta not in TTA_MODES:
        raise VlsaError(f"--tta {tta!r}: choose one of {', '.join(TTA_MODES)}")
    return tta


@torch.no_grad()
def model_logits(model, images: torch.Tensor, batch_size: int, device, progress: bool | None = None,
                 tta: str = "off") -> torch.Tensor:
    """N x C x S x S -> N x K x S x S logits (float32, on the CPU), in batches of `batch_size`, with a
    progress bar (images/s) when `progress` (default: when there is more than one batch on a terminal).

    tta "flip": the log of the mean class probabilities over each image and its left-right mirror
    (mirrored back), so softmax of the result is that mean and argmax its most likely class; the
    mirror is the flip training augments with (data.augment.flip, the last axis). Raises ValueError
    for another `tta`."""
    from tqdm import tqdm

    if tta not in TTA_MODES:
        raise ValueError(f"eval.tta {tta!r}: choose one of {', '.join(TTA_MODES)}")
    was_training = model.training
    model.eval()
    out = []
    bar = tqdm(total=len(images), desc="images", unit="img", leave=False,
               disable=not progress if progress is not None else len(images) <= batch_size or None)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        logits = model(batch).float()
        if tta == "flip":
            mirrored = model(batch.flip(-1)).float().flip(-1)
            # mean of probabilities, not of logits: each view votes with its confidence, as nnU-Net averages
            logits = torch.log(((logits.softmax(1) + mirrored.softmax(1)) / 2).clamp_min(1e-12))
        out.append(logits.cpu())
        bar.update(len(batch))
    bar.close()
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def predict_prepared(model, prepared: Prepared, batch_size: int, device, tta: str = "off"):
    """-> (label maps on each sample's original annotation grid, model-size label maps N x S x S);
    `tta` as in `model_logits`."""
    logits = model_logits(model, prepared.images, batch_size, device, tta=tta)
    native = [to_original(lg, geom, s.original_shape).argmax(0).numpy()
              for lg, geom, s in zip(logits, prepared.geometries, prepared.samples)]
    return native, logits.argmax(1)


def volume_members(samples) -> dict[str, list[int]]:
    """{volume: indices of its slices in slice order} for slices of volumes (`Sample.group`)."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.group, []).append(i)
    for members in groups.values():
        members.sort(key=lambda i: samples[i].slice_index if samples[i].slice_index is not None else 0)
    return groups


def scored_maps(prepared: Prepared, native_preds: list[np.ndarray], spec, postprocess: bool = False) -> list[np.ndarray]:
    """The label maps metrics score, one per sample (H0 x W0, the original annotation grid): the
    predictions as they are, or made anatomically plausible (vlsa.postprocess) per image, and per
    whole 3D volume for slices of volumes (as `vlsa predict` applies it). Overlays show these."""
    if not postprocess:
        return list(native_preds)
    from vlsa.postprocess import postprocess as plausible

    if not spec.volumetric:
        return [plausible(p, spec) for p in native_preds]
    out = list(native_preds)
    for members in volume_members(prepared.samples).values():
        fixed = plausible(np.stack([native_preds[i] for i in members]), spec)  # D x H0 x W0
        for i, lab in zip(members, fixed):
            out[i] = lab
    return out


def score(prepared: Prepared, native_preds: list[np.ndarray], spec, distances: bool = True,
          postprocess: bool = False, annotated: tuple[str, ...] | None = None) -> DomainAccumulator:
    """Per-image (2D data) or per-volume (slices grouped by volume) metrics of one domain.

    native_preds: label maps on the original annotation grid (`predict_prepared`). They are scored
    against the original annotation (`Sample.scoring`), in mm of the original spacing for volumes
    (slice thickness x row x col), never against a label resampled to `data.spacing`.
    `postprocess` makes each image / volume anatomically plausible first (`scored_maps`).
    annotated: the regions the samples' dataset annotates (None: `spec.annotated`, None there too:
    every region); a sample's own `annotated` narrows it (vlsa.metrics: regions not annotated are
    not scored, never 0 or perfect).
    """
    maps = scored_maps(prepared, native_preds, spec, postprocess)
    acc = DomainAccumulator(spec.regions, distances=distances,
                            annotated=spec.annotated if annotated is None else annotated)
    if spec.volumetric:
        for group, members in sorted(volume_members(prepared.samples).items()):
            pred = np.stack([maps[i] for i in members])
            truths, spacings = zip(*(prepared.samples[i].scoring() for i in members))
            s = prepared.samples[members[0]]
            per_slice = [getattr(prepared.samples[i], "annotated", None) for i in members]
            acc.add(group, pred, np.stack(truths), (s.slice_thickness, *spacings[0]),
                    slices=None if all(a is None for a in per_slice) else per_slice)
    else:
        for s, p in zip(prepared.samples, maps):
            truth, spacing = s.scoring()
            acc.add(s.group, p, truth, spacing, annotated=getattr(s, "annotated", None))
    return acc
