"""Running a model over prepared samples and scoring the predictions on the native grid."""

from __future__ import annotations

import numpy as np
import torch

from vlsa.engine.data import Prepared
from vlsa.engine.geometry import to_native
from vlsa.metrics import DomainAccumulator, group_slices


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
    """-> (native-grid label maps, model-size label maps N x S x S)."""
    logits = model_logits(model, prepared.images, batch_size, device)
    native = [to_native(lg, geom).argmax(0).numpy() for lg, geom in zip(logits, prepared.geometries)]
    return native, logits.argmax(1)


def score(prepared: Prepared, native_preds: list[np.ndarray], spec, distances: bool = True) -> DomainAccumulator:
    """Per-image (2D data) or per-volume (slices grouped by volume) metrics of one domain."""
    acc = DomainAccumulator(spec.regions, distances=distances)
    if spec.volumetric:
        items = [(s.group, s.slice_index, p, s.label) for s, p in zip(prepared.samples, native_preds)]
        spacing_of = {s.group: (s.slice_thickness, *s.spacing) for s in prepared.samples}
        for group, (pred, truth) in sorted(group_slices(items).items()):
            acc.add(group, pred, truth, spacing_of[group])
    else:
        for s, p in zip(prepared.samples, native_preds):
            acc.add(s.group, p, s.label, s.spacing)
    return acc
