"""Running a model over prepared samples and scoring the predictions on the native grid."""

from __future__ import annotations

import numpy as np
import torch

from vlsa.engine.data import Prepared
from vlsa.engine.geometry import to_original
from vlsa.metrics import DomainAccumulator, group_slices

# recorded in metrics.json; a protocol re-evaluates (not retrains) a run scored by an older version.
# 2: volumes scored against the original annotation on its own grid and spacing (issue 15)
# 3: metrics with and without anatomical post-processing (domains_postprocess_on/off, issue 11)
SCORING_VERSION = 3


@torch.no_grad()
def model_logits(model, images: torch.Tensor, batch_size: int, device, progress: bool | None = None) -> torch.Tensor:
    """N x C x S x S -> N x K x S x S logits (float32, on the CPU), in batches of `batch_size`, with a
    progress bar (images/s) when `progress` (default: when there is more than one batch on a terminal)."""
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    out = []
    bar = tqdm(total=len(images), desc="images", unit="img", leave=False,
               disable=not progress if progress is not None else len(images) <= batch_size or None)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        out.append(model(batch).float().cpu())
        bar.update(len(batch))
    bar.close()
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def predict_prepared(model, prepared: Prepared, batch_size: int, device):
    """-> (label maps on each sample's original annotation grid, model-size label maps N x S x S)."""
    logits = model_logits(model, prepared.images, batch_size, device)
    native = [to_original(lg, geom, s.original_shape).argmax(0).numpy()
              for lg, geom, s in zip(logits, prepared.geometries, prepared.samples)]
    return native, logits.argmax(1)


def score(prepared: Prepared, native_preds: list[np.ndarray], spec, distances: bool = True,
          postprocess: bool = False) -> DomainAccumulator:
    """Per-image (2D data) or per-volume (slices grouped by volume) metrics of one domain.

    native_preds: label maps on the original annotation grid (`predict_prepared`). They are scored
    against the original annotation (`Sample.scoring`), in mm of the original spacing for volumes
    (slice thickness x row x col), never against a label resampled to `data.spacing`.
    `postprocess` makes each image / volume anatomically plausible first (vlsa.postprocess).
    """
    from vlsa.postprocess import postprocess as plausible

    fix = (lambda p: plausible(p, spec)) if postprocess else (lambda p: p)
    acc = DomainAccumulator(spec.regions, distances=distances)
    if spec.volumetric:
        items, spacing_of = [], {}
        for s, p in zip(prepared.samples, native_preds):
            truth, spacing = s.scoring()
            items.append((s.group, s.slice_index, p, truth))
            spacing_of[s.group] = (s.slice_thickness, *spacing)
        for group, (pred, truth) in sorted(group_slices(items).items()):
            acc.add(group, fix(pred), truth, spacing_of[group])
    else:
        for s, p in zip(prepared.samples, native_preds):
            truth, spacing = s.scoring()
            acc.add(s.group, fix(p), truth, spacing)
    return acc
