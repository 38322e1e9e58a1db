"""Segmentation losses (MONAI)."""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss


class SegmentationLoss(torch.nn.Module):
    """Soft Dice + cross-entropy over the label indices (MONAI DiceCELoss, softmax, one-hot)."""

    def __init__(self):
        super().__init__()
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True, include_background=True)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # logits B x K x H x W, labels B x H x W
        return self.loss(logits, labels[:, None])
