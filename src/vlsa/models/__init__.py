"""Models: `build_model` is the one factory the engine calls."""

from __future__ import annotations

from torch import nn

from vlsa.data.spec import DatasetSpec


def build_model(config, spec: DatasetSpec) -> nn.Module:
    """Build the model named by `config.model.name` for `spec`'s channels and classes.

    Every model maps B x C x H x W images to B x K x H x W logits (K = spec.num_classes).
    """
    name = config.model.name
    if name == "unet":
        from vlsa.models.baselines import build_unet

        return build_unet(config.model.unet, spec.channels, spec.num_classes)
    if name == "vlsa":
        from vlsa.models.vlsa import VLSA

        return VLSA(config.model, spec, config.data.image_size)
    raise ValueError(f"unknown model {name!r}")
