"""The hybrid backbone: frozen LiteMedSAM pyramid + a small trainable CNN branch for shallow detail.

LiteMedSAM's TinyViT (frozen, its features cached per appearance view) brings a foundation model's
robust semantics but sees the image at strides 2-4 of a 256 px input, from a frozen network that
cannot learn the task's fine boundaries; a compact residual CNN trained from scratch on the
model-size image brings them. Each pyramid level is the concatenation of the CNN level and the
foundation level resized to it (strides 2, 4, 8, 8 of the model input), so the decoder, EM
Aggregation and text guidance are unchanged. One of the backbone options issue #8 asks to measure
(Yu et al., 2025, arXiv 2509.08570, use a frozen foundation encoder; the CNN branch is ours).

With the feature cache, `VLSA.features` returns the cached foundation maps plus the model-size image
(`uncached_inputs`), so the training step warps image and features with one affine draw, and
`pyramid_from` runs the CNN branch with gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vlsa.models.backbones.cnn import ResidualCNN
from vlsa.models.backbones.medsam import MedSAMBackbone


class HybridBackbone(nn.Module):
    def __init__(self, in_channels: int, image_size: int, width: int = 16, pretrained: bool = True,
                 fast: str = "auto"):
        super().__init__()
        self.foundation = MedSAMBackbone(in_channels, image_size, tuning="frozen", pretrained=pretrained, fast=fast)
        self.branch = ResidualCNN(in_channels, width)
        self.image_size = image_size
        self.strides = list(self.branch.strides)
        self.out_channels = [c + f for c, f in zip(self.branch.out_channels, self.foundation.out_channels)]

    @property
    def frozen(self) -> bool:
        """The foundation part is frozen (so it can be cached); the CNN branch always trains."""
        return True

    @property
    def frozen_stage(self) -> nn.Module:
        """What the feature cache computes: the frozen LiteMedSAM pyramid."""
        return self.foundation

    def uncached_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[B x C x S x S]: the model-size image the CNN branch reads, area-resized from the
        encoder-resolution input x (B x C x E x E, z-scored; S = data.image_size)."""
        x = x.float()
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="area")
        return [x]

    def pyramid_from(self, feats: list[torch.Tensor], size) -> list[torch.Tensor]:
        """[4 foundation maps..., the model-size image] -> 4 maps B x (c_i + f_i) x S/s_i x S/s_i."""
        *maps, image = feats
        return [torch.cat([c, F.interpolate(m, size=c.shape[-2:], mode="bilinear", align_corners=False)], 1)
                for c, m in zip(self.branch(image), maps)]

    def forward(self, x: torch.Tensor, out_size: tuple[int, int] | None = None) -> list[torch.Tensor]:
        """B x C x E x E z-scored images -> the 4-level hybrid pyramid (uncached path)."""
        return self.pyramid_from([*self.foundation(x, out_size=out_size), *self.uncached_inputs(x)], out_size)
