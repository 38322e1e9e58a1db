"""The feature bank of a cached frozen backbone, computed up front with a progress bar.

For every training image: the backbone's features of each of its `data.augment.views` appearance
views (view 0 = the image as read, see `vlsa.data.transforms.appearance_views`); for every
validation image: the image as read. The features land in the backbone feature cache (in memory,
and on disk with VLSA_FEATURE_CACHE_DIR), keyed by content, so training steps only look them up
and every seed, method and process with the same images and policy shares them.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from vlsa.data.transforms import appearance_views, has_appearance


def fill_bank(model, train_images: torch.Tensor, val_images: torch.Tensor, augment_cfg, device,
              batch_size: int = 8, quiet: bool = False) -> int:
    """Compute (or load) the features of every bank entry; returns the number of entries.
    Images are N x C x H x W (float16 or float32); nothing is returned but the cache is filled."""
    views = augment_cfg.views if has_appearance(augment_cfg) else 1
    jobs = [(train_images, v) for v in range(views)] + [(val_images, 0)]
    total = sum(len(images) for images, _ in jobs)
    with tqdm(total=total, desc="backbone features", unit="img", disable=quiet, dynamic_ncols=True) as bar:
        for images, v in jobs:
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size].float()
                if v:
                    chunk = appearance_views(chunk, torch.full((len(chunk),), v), augment_cfg)
                model.features(chunk.to(device))
                bar.update(len(chunk))
    return total
