"""Text-Guided Pixel Decoder.

At the deepest level (where text guidance helps most):
  1. text queries attend to pixels: each class embedding is refined by the image
     (T' = T + Attn(T, F, F), + FFN), so the class prototypes adapt to the image's appearance;
  2. pixels attend to the refined class embeddings (F' = F + Attn(F, T', T'));
  3. text-conditioned modulation (FiLM): F'' = F' * (1 + tanh(W_g a)) + W_b a, where a is what
     each pixel read from the text.
Shallower levels are then fused top-down (upsample, add a lateral 1x1 projection, 3x3 conv) for
detail. Output: per-pixel embeddings E; class logits = τ · cos(E, T'_k) + b_k with a learnable
temperature τ (log-parametrised) and per-class bias.

With `text_guidance=False` steps 1-3 are skipped and logits use the unrefined class embeddings,
which isolates the guidance from the cosine classifier.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def conv_norm_act(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
                         nn.GroupNorm(8 if cout % 8 == 0 else 1, cout), nn.ReLU(inplace=True))


class TextPixelBlock(nn.Module):
    """Two-way attention between class embeddings (B x K x D) and pixels (B x N x D)."""

    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        self.text_to_pixel = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.text_norm1 = nn.LayerNorm(dim)
        self.text_ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.text_norm2 = nn.LayerNorm(dim)
        self.pixel_to_text = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.pixel_norm = nn.LayerNorm(dim)
        self.gamma = nn.Linear(dim, dim)
        self.beta = nn.Linear(dim, dim)
        for layer in (self.gamma, self.beta):  # start as identity modulation
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, pixels: torch.Tensor, text: torch.Tensor):
        t = self.text_norm1(text + self.text_to_pixel(text, pixels, pixels, need_weights=False)[0])
        t = self.text_norm2(t + self.text_ffn(t))
        read, attn = self.pixel_to_text(pixels, t, t, need_weights=True)  # attn B x N x K
        p = self.pixel_norm(pixels + read)
        p = p * (1 + torch.tanh(self.gamma(read))) + self.beta(read)
        return p, t, attn


class TextGuidedDecoder(nn.Module):
    def __init__(self, in_channels: list[int], dim: int, embed_dim: int, num_classes: int, text_guidance: bool = True,
                 heads: int = 4):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Sequential(nn.Conv2d(c, dim, 1, bias=False), nn.GroupNorm(8 if dim % 8 == 0 else 1, dim))
                                     for c in in_channels)
        self.fuse = nn.ModuleList(conv_norm_act(dim, dim) for _ in in_channels[:-1])
        self.text_guidance = text_guidance
        self.block = TextPixelBlock(dim, heads) if text_guidance else None
        self.embed = nn.Sequential(conv_norm_act(dim, dim), nn.Conv2d(dim, embed_dim, 1))
        self.text_out = nn.Linear(dim, embed_dim)
        self.log_tau = nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def project_deepest(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.lateral[-1](feats[-1])

    def forward(self, feats: list[torch.Tensor], deepest: torch.Tensor, text: torch.Tensor):
        """feats: backbone pyramid (shallow..deep); deepest: B x D x h x w (after EM);
        text: K x D projected class embeddings. -> dict(logits at the shallowest level's size,
        pixel embeddings, refined text, pixel-to-text attention)."""
        b, d, h, w = deepest.shape
        text_b = text.unsqueeze(0).expand(b, -1, -1)
        attn = None
        x = deepest
        if self.block is not None:
            pixels, text_b, attn = self.block(x.flatten(2).transpose(1, 2), text_b)
            x = pixels.transpose(1, 2).reshape(b, d, h, w)
        for level in range(len(feats) - 2, -1, -1):
            lateral = self.lateral[level](feats[level])
            x = F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=False) + lateral
            x = self.fuse[level](x)
        emb = F.normalize(self.embed(x), dim=1)  # B x E x H x W
        cls = F.normalize(self.text_out(text_b), dim=-1)  # B x K x E
        logits = self.log_tau.exp() * torch.einsum("behw,bke->bkhw", emb, cls) + self.bias.view(1, -1, 1, 1)
        return {"logits": logits, "pixel_embeddings": emb, "class_embeddings": cls, "text_attention": attn}
