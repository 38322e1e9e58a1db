"""In-process cache of frozen-backbone features, keyed by input content and backbone identity.

A frozen foundation encoder gives the same features for the same input, so on CPU we compute them
once per image (per process) instead of once per step; the training loop then augments in
feature space (see `vlsa.data.transforms`). Bounded by VLSA_FEATURE_CACHE_MB (default 6000).

Features are stored as float16 (half the memory and disk; a level whose values exceed float16's
range stays float32) and always returned as float32 rounded through that storage, so a cache hit
returns exactly what the first computation returned. The key includes the encoder path that made
them (`fast_path`, e.g. eager fp32 vs bf16), so a changed path never reads stale features.

With VLSA_FEATURE_CACHE_DIR set, features are also kept on disk (one file per image, so a
load returns exactly the features first computed), shared by every process and run on the machine: a
benchmark's second process, `vlsa diagnose`, or tomorrow's run skip the encoder. The disk key adds a
fingerprint of the backbone's weights, so changed weights never read stale features.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import torch

_STORE: dict[str, list[torch.Tensor]] = {}
_BYTES = {"used": 0}
STATS = {"hits": 0, "misses": 0, "disk_hits": 0}


def _budget() -> int:
    return int(os.environ.get("VLSA_FEATURE_CACHE_MB", "6000")) * 2**20


def content_key(image: torch.Tensor, backbone_id: str) -> str:
    data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha1(backbone_id.encode() + b"|" + str(tuple(image.shape)).encode() + data).hexdigest()


def _disk_dir() -> Path | None:
    path = os.environ.get("VLSA_FEATURE_CACHE_DIR")
    return Path(path) if path else None


def weights_fingerprint(module: torch.nn.Module) -> str:
    """Hash of the module's parameters and buffers, computed once per module (weights are frozen)."""
    cached = getattr(module, "_vlsa_fingerprint", None)
    if cached is None:
        digest = hashlib.sha1()
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        cached = digest.hexdigest()[:16]
        object.__setattr__(module, "_vlsa_fingerprint", cached)
    return cached


def _disk_file(root: Path, key: str, backbone) -> Path:
    return root / weights_fingerprint(backbone) / key[:2] / f"{key}.pt"


def _load(path: Path) -> list[torch.Tensor] | None:
    """A cached pyramid, or None when absent or unreadable (then it is recomputed and rewritten)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file is a miss, never an error
        return None


def _save(path: Path, feats: list[torch.Tensor]) -> None:
    from vlsa.utils.atomic import atomic_path

    with contextlib.suppress(Exception), atomic_path(path) as tmp:  # a full disk only loses the cache
        torch.save(feats, tmp)


def _compact(feature: torch.Tensor) -> torch.Tensor:
    """C x h x w float32 -> the stored form: float16 unless a value exceeds its range (then float32)."""
    feature = feature.detach().cpu()
    return feature.half() if feature.abs().max() < 6e4 else feature.float().clone()


def path_identity(backbone, device) -> str:
    """The encoder path that computes the features on `device` ('' for backbones with one path)."""
    fast_path = getattr(backbone, "fast_path", None)
    return f"|path={fast_path(device)}" if fast_path is not None else ""


@torch.no_grad()
def cached_features(backbone, images: torch.Tensor, backbone_id: str, batch_size: int = 8,
                    **kwargs) -> list[torch.Tensor]:
    """B x C x H x W -> the backbone's pyramid (float32), computing only the images not seen before.
    `kwargs` go to the backbone (e.g. out_size) and must be fixed by `backbone_id`."""
    # in memory the key includes the weights' fingerprint (on disk it is the folder): another model
    # in this process (another seed, other trainable weights) never gets these features
    fp = weights_fingerprint(backbone)
    backbone_id = backbone_id + path_identity(backbone, images.device)
    keys = [content_key(img, backbone_id) for img in images]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        if f"{fp}:{k}" not in _STORE:
            first.setdefault(k, i)  # a batch drawn with replacement may repeat an image
    missing = list(first.values())
    STATS["hits"] += len(keys) - len(missing)
    STATS["misses"] += len(missing)
    fresh: dict[str, list[torch.Tensor]] = {}
    disk = _disk_dir()
    if disk is not None:
        for i in list(missing):
            feats = _load(_disk_file(disk, keys[i], backbone))
            if feats is not None:
                fresh[keys[i]] = feats
                missing.remove(i)
                STATS["disk_hits"] += 1
    for start in range(0, len(missing), batch_size):
        chunk = missing[start : start + batch_size]
        feats = backbone(images[chunk], **kwargs)
        for j, i in enumerate(chunk):
            fresh[keys[i]] = [_compact(f[j]) for f in feats]
            if disk is not None:
                _save(_disk_file(disk, keys[i], backbone), fresh[keys[i]])
    for key, feats in fresh.items():
        size = sum(f.numel() * f.element_size() for f in feats)
        if _BYTES["used"] + size <= _budget():
            _STORE[f"{fp}:{key}"] = feats
            _BYTES["used"] += size
    per_image = [fresh.get(k) or _STORE[f"{fp}:{k}"] for k in keys]
    device = images.device
    return [torch.stack([p[level].float() for p in per_image]).to(device) for level in range(len(per_image[0]))]


def clear() -> None:
    _STORE.clear()
    _BYTES["used"] = 0
