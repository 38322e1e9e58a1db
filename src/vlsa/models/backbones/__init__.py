"""Vision backbones. Each returns a list of feature maps (shallow to deep) and exposes
`out_channels` and `strides` (relative to the model input)."""

from __future__ import annotations

from torch import nn


def build_backbone(cfg, in_channels: int, image_size: int) -> nn.Module:
    name = cfg.name
    if name == "cnn":
        from vlsa.models.backbones.cnn import ResidualCNN

        return ResidualCNN(in_channels, cfg.cnn_width)
    if name == "medsam":
        from vlsa.models.backbones.medsam import MedSAMBackbone

        return MedSAMBackbone(in_channels, image_size, tuning=cfg.tuning, num_tokens=cfg.num_tokens, lora_rank=cfg.lora_rank,
                              fast=cfg.fast)
    if name == "hybrid":
        from vlsa.models.backbones.hybrid import HybridBackbone

        return HybridBackbone(in_channels, image_size, width=cfg.cnn_width, fast=cfg.fast)
    if name == "hf":
        from vlsa.models.backbones.hf import HFBackbone

        return HFBackbone(cfg.path, in_channels, tuning=cfg.tuning, input_size=cfg.input_size,
                          num_tokens=cfg.num_tokens, lora_rank=cfg.lora_rank)
    raise ValueError(f"unknown backbone {name!r}")
