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


def js_consistency(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence between the softmax predictions of two appearance draws of the
    same (identically warped) images, summed over classes and averaged over pixels: the consistency
    term of RandConv (Xu, Liu, Yang, Raffel, Niethammer, "Robust and Generalizable Visual
    Representation Learning via Random Convolutions", ICLR 2021), KL of each prediction to their
    mean. logits B x K x H x W each -> scalar in [0, log 2] (nats)."""
    p = torch.softmax(logits_a.float(), dim=1)
    q = torch.softmax(logits_b.float(), dim=1)
    log_m = ((p + q) / 2).clamp_min(1e-7).log()
    kl_p = (p * (p.clamp_min(1e-7).log() - log_m)).sum(1)
    kl_q = (q * (q.clamp_min(1e-7).log() - log_m)).sum(1)
    return ((kl_p + kl_q) / 2).mean()
