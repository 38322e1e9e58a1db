"""One training step's batch, drawn from the step's generator: images augmented on the fly, or a
cached frozen backbone's features (bank views, then the same warp on features and labels).

Every rank draws the whole global batch (the draws of a 1-process run), then keeps its slice
(`distributed.shard`): N processes reproduce the 1-process run with the same global batch. With
`draws` = 2 (the consistency term) the batch holds two appearance draws of each image, stacked, and
each rank keeps both draws of the images it holds.
"""

from __future__ import annotations

import torch

from vlsa.data.transforms import (
    appearance_views,
    augment,
    augment_features,
    has_appearance,
    view_zoom_theta,
    warp_labels,
)
from vlsa.engine import distributed
from vlsa.engine.data import Prepared


def image_batch(train_set: Prepared, idx: torch.Tensor, aug, g: torch.Generator, draws: int,
                info: distributed.DistInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (this rank's images (draws*B) x C x S x S, labels B x S x S), augmented with `aug`."""
    x, y = augment(train_set.images[idx].float(), train_set.labels[idx], aug, g, draws=draws)
    return distributed.shard(x, info, groups=draws), distributed.shard(y, info)


def feature_batch(model, train_set: Prepared, idx: torch.Tensor, aug, g: torch.Generator, draws: int,
                  info: distributed.DistInfo, device) -> tuple[list[torch.Tensor], torch.Tensor]:
    """-> (this rank's backbone feature maps, each (draws*B) x C_l x H_l x W_l, labels B x S x S) for
    a cached frozen backbone: a view from the bank (`data.augment.views`), then the warp."""
    x, labels = train_set.images[idx].float(), train_set.labels[idx]
    if aug.views > 1 and has_appearance(aug):
        views = torch.randint(aug.views, (len(idx),), generator=g)
        if draws == 2:  # a second, different view of each image for the consistency term
            views = torch.cat([views, (views + 1 + torch.randint(aug.views - 1, (len(idx),), generator=g)) % aug.views])
            x = x.repeat(2, 1, 1, 1)
        zoom = view_zoom_theta(x, views, aug)
        x = appearance_views(x, views, aug)
        if zoom is not None:  # the view's labels, zoomed as its image was
            labels = warp_labels(labels, zoom)
    feats, y = augment_features(model.features(x.to(device)), labels, aug, g, copies=draws)
    return [distributed.shard(f, info, groups=draws) for f in feats], distributed.shard(y, info)
