"""Run a trained model over prepared samples and sample pixel features with their true class."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _unet_decoder_features(model, x: torch.Tensor) -> dict:
    """MONAI U-Net: the input of its last (output) block, i.e. the last decoder features."""
    grabbed = {}
    last = model.model[-1]
    handle = last.register_forward_hook(lambda m, args, out: grabbed.setdefault("decoder", args[0].detach()))
    try:
        model(x)
    finally:
        handle.remove()
    return grabbed


@torch.no_grad()
def run_model(model, images: torch.Tensor, batch_size: int = 16) -> dict[str, torch.Tensor]:
    """-> {level name: B x C x h x w features}, plus 'responsibilities' and 'class_embeddings' for VLSA."""
    model.eval()
    outs: dict[str, list] = {}
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        if hasattr(model, "decode"):
            aux = model(x, return_aux=True)
            b = x.shape[0]
            parts = {"before_em": aux["features_before_em"], "after_em": aux["features_after_em"],
                     "pixel_embeddings": aux["pixel_embeddings"], "class_embeddings": aux["class_embeddings"]}
            if aux["responsibilities"] is not None:
                h, w = aux["features_after_em"].shape[-2:]
                parts["responsibilities"] = aux["responsibilities"].reshape(b, h, w, -1).permute(0, 3, 1, 2)
        else:
            parts = _unet_decoder_features(model, x)
        for k, v in parts.items():
            outs.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in outs.items()}


def sample_pixels(maps: torch.Tensor, labels: torch.Tensor, max_pixels: int, num_classes: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """B x C x h x w features and B x H x W labels -> (N x C features, N labels), at most
    max_pixels, balanced over classes (rare classes like the cup are not drowned by background)."""
    small = F.interpolate(labels[:, None].float(), size=maps.shape[-2:], mode="nearest")[:, 0].long()
    feats = maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1]).numpy()
    flat = small.reshape(-1).numpy()
    per_class = max(1, max_pixels // num_classes)
    chosen = []
    for c in range(num_classes):
        idx = np.flatnonzero(flat == c)
        if idx.size:
            chosen.append(rng.choice(idx, size=min(per_class, idx.size), replace=False))
    chosen = np.concatenate(chosen) if chosen else np.zeros(0, dtype=int)
    return feats[chosen], flat[chosen]
