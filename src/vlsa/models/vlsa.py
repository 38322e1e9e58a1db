"""VLSA: foundation backbone + class text embeddings + EM Aggregation + Text-Guided Pixel Decoder.

    image -> backbone pyramid -> deepest level projected to D -> EM Aggregation (K centres,
    optionally anchored at the class text embeddings) -> text-guided decoder (two-way text/pixel
    attention, FiLM modulation, top-down fusion) -> pixel embeddings -> cosine logits against the
    refined class embeddings.
Switches for the paper's ablations: model.em.enabled, model.text.encoder (none = learned class
embeddings), model.decoder.text_guidance, model.backbone.name (cnn | medsam | hybrid | hf).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vlsa.data.spec import DatasetSpec
from vlsa.models.aggregation import EMAggregation
from vlsa.models.backbones import build_backbone
from vlsa.models.backbones.cache import cached_features
from vlsa.models.decoder import TextGuidedDecoder
from vlsa.models.feature_statistics import perturb_pyramid


class VLSA(nn.Module):
    def __init__(self, cfg, spec: DatasetSpec, image_size: int):
        super().__init__()
        dim = cfg.decoder.dim
        self.backbone = build_backbone(cfg.backbone, spec.channels, image_size)
        # the hybrid caches exactly medsam's features: one bank serves both
        self.backbone_id = f"{'medsam' if cfg.backbone.name == 'hybrid' else cfg.backbone.name}:{cfg.backbone.path}:{image_size}"
        k = spec.num_classes
        if cfg.text.encoder == "none":
            self.class_embed = nn.Parameter(torch.randn(k, dim) * dim**-0.5)
            self.text_proj = None
        else:
            from vlsa.models.text.encoders import class_embeddings
            from vlsa.models.text.prompts import class_prompts

            path = cfg.text.path or (cfg.backbone.path if cfg.text.encoder == "clip" else None)
            emb = class_embeddings(cfg.text.encoder, class_prompts(spec), path)
            self.register_buffer("text_embeddings", emb)  # K x D_text, frozen, saved with the model
            self.text_proj = nn.Linear(emb.shape[1], dim)
        self.em = EMAggregation(dim, cfg.em.k, cfg.em.iters, cfg.em.lam, cfg.em.momentum) if cfg.em.enabled else None
        self.text_anchor = cfg.em.text_anchor
        self.decoder = TextGuidedDecoder(self.backbone.out_channels, dim, cfg.decoder.embed_dim, k,
                                         text_guidance=cfg.decoder.text_guidance, heads=cfg.decoder.heads)
        # a foundation encoder read at its own resolution: inputs are E x E, logits stay image_size
        self.decode_size = (image_size, image_size) if cfg.backbone.name in ("medsam", "hybrid") and image_size < 256 else None
        frozen = getattr(self.backbone, "frozen", False)
        self.cache_features = bool(frozen and cfg.backbone.cache)
        self.dsu = cfg.dsu

    def class_text(self) -> torch.Tensor:
        """K x D class embeddings in the decoder's space."""
        if self.text_proj is None:
            return self.class_embed
        return self.text_proj(self.text_embeddings)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The cacheable backbone output: with a cached frozen backbone, what its frozen part
        computes (the whole pyramid for medsam; the tower's hidden-state maps for hf, whose trainable
        pyramid runs afterwards in `forward`); else the pyramid. Encoder-resolution (float16)
        images give a medsam pyramid at strides of `decode_size`."""
        x = x.float()
        kwargs = {"out_size": self.decode_size} if self.decode_size is not None else {}
        if self.cache_features:
            feats = cached_features(getattr(self.backbone, "frozen_stage", self.backbone), x, self.backbone_id, **kwargs)
            # inputs of a trainable branch that runs after the cache (hybrid: the model-size image)
            return feats + (self.backbone.uncached_inputs(x) if hasattr(self.backbone, "uncached_inputs") else [])
        return self.backbone(x, **kwargs)

    def _pyramid(self, feats: list[torch.Tensor], size) -> list[torch.Tensor]:
        """`features` output -> the pyramid the decoder takes (runs the trainable part after a cache)."""
        if self.cache_features and hasattr(self.backbone, "pyramid_from"):
            return self.backbone.pyramid_from(feats, size)
        return feats

    def decode(self, feats: list[torch.Tensor], out_size, return_aux: bool = False):
        text = self.class_text()
        deepest = self.decoder.project_deepest(feats)
        before_em = deepest
        resp = None
        if self.em is not None:
            deepest, resp = self.em(deepest, anchors=text if self.text_anchor else None)
        out = self.decoder(feats, deepest, text)
        logits = F.interpolate(out["logits"], size=tuple(out_size), mode="bilinear", align_corners=False)
        if not return_aux:
            return logits
        return {**out, "logits": logits, "features_before_em": before_em, "features_after_em": deepest,
                "responsibilities": resp}

    def forward(self, x: torch.Tensor | None, return_aux: bool = False, features=None, out_size=None,
                generator: torch.Generator | None = None):
        """Images B x C x H x W -> logits B x K x H x W; or, for cached backbone features,
        `features` (the pyramid) and `out_size` (so DDP sees the call). `generator`: the training
        step's, for `model.dsu` (applied only in training mode and only when it is given)."""
        if features is None:
            features, out_size = self.features(x), self.decode_size or x.shape[-2:]
        pyramid = self._pyramid(features, out_size)
        if self.training and self.dsu > 0 and generator is not None:
            pyramid = perturb_pyramid(pyramid, self.dsu, generator)
        return self.decode(pyramid, out_size, return_aux)
