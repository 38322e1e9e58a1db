"""Comparison models. ERM U-Net: MONAI's residual U-Net trained on the source domain(s) only.

The single-source DG baseline RandConv (Xu et al., "Robust and Generalizable Visual Representation
Learning via Random Convolutions", ICLR 2021) is this U-Net trained with random-convolution images:
`model.name=unet data.augment.randconv=true` (vlsa.data.transforms.random_conv), same budget and
augmentation policy as every other method. Likewise GIN-IPA (Ouyang et al., "Causality-Inspired
Single-Source Domain Generalization for Medical Image Segmentation", IEEE TMI 2023):
`model.name=unet data.augment.gin_ipa=true` (vlsa.data.gin_ipa).
"""

from __future__ import annotations

from monai.networks.nets import UNet


def build_unet(cfg, in_channels: int, num_classes: int) -> UNet:
    return UNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=num_classes,
        channels=tuple(cfg.channels),
        strides=(2,) * (len(cfg.channels) - 1),
        num_res_units=cfg.num_res_units,
        norm="instance",
        dropout=cfg.dropout,
    )
