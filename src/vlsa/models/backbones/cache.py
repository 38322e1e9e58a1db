"""In-process cache of frozen-backbone features, keyed by input content and backbone identity.

A frozen foundation encoder gives the same features for the same input, so on CPU we compute them
once per image (per process) instead of once per step; the training loop then augments in
feature space (see `vlsa.data.transforms`). Bounded by VLSA_FEATURE_CACHE_MB (default 6000).
"""

from __future__ import annotations

import hashlib
import os

import torch

_STORE: dict[str, list[torch.Tensor]] = {}
_BYTES = {"used": 0}
STATS = {"hits": 0, "misses": 0}


def _budget() -> int:
    return int(os.environ.get("VLSA_FEATURE_CACHE_MB", "6000")) * 2**20


def content_key(image: torch.Tensor, backbone_id: str) -> str:
    data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha1(backbone_id.encode() + b"|" + str(tuple(image.shape)).encode() + data).hexdigest()


@torch.no_grad()
def cached_features(backbone, images: torch.Tensor, backbone_id: str, batch_size: int = 8) -> list[torch.Tensor]:
    """B x C x H x W -> the backbone's pyramid, computing only the images not seen before."""
    keys = [content_key(img, backbone_id) for img in images]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k not in _STORE:
            first.setdefault(k, i)  # a batch drawn with replacement may repeat an image
    missing = list(first.values())
    STATS["hits"] += len(keys) - len(missing)
    STATS["misses"] += len(missing)
    fresh: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(missing), batch_size):
        chunk = missing[start : start + batch_size]
        feats = backbone(images[chunk])
        for j, i in enumerate(chunk):
            fresh[keys[i]] = [f[j].cpu().clone() for f in feats]
    for key, feats in fresh.items():
        size = sum(f.numel() * f.element_size() for f in feats)
        if _BYTES["used"] + size <= _budget():
            _STORE[key] = feats
            _BYTES["used"] += size
    per_image = [fresh.get(k) or _STORE[k] for k in keys]
    device = images.device
    return [torch.stack([p[level] for p in per_image]).to(device) for level in range(len(per_image[0]))]


def clear() -> None:
    _STORE.clear()
    _BYTES["used"] = 0
