"""A compact residual CNN trained from scratch: the fast backbone and the no-foundation ablation."""

from __future__ import annotations

import torch
from torch import nn


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.InstanceNorm2d(cout, affine=True), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.InstanceNorm2d(cout, affine=True),
        )
        self.skip = nn.Identity() if (cin == cout and stride == 1) else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.InstanceNorm2d(cout, affine=True))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class ResidualCNN(nn.Module):
    """Four stages at strides 2, 4, 8, 8: the last stage widens without downsampling, so the
    deepest level keeps enough pixels for EM clustering at the small input sizes we train on
    (12 x 12 at 96 px)."""

    def __init__(self, in_channels: int, width: int = 32):
        super().__init__()
        widths = [width, width * 2, width * 4, width * 8]
        self.out_channels = widths
        self.strides = [2, 4, 8, 8]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                                  nn.InstanceNorm2d(width, affine=True), nn.ReLU(inplace=True))
        stages, cin = [], width
        for w, stride in zip(widths, (2, 2, 2, 1)):
            stages.append(nn.Sequential(ResBlock(cin, w, stride), ResBlock(w, w, 1)))
            cin = w
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats
