"""EM Aggregation: cluster deep pixel features into K compact semantic centres.

After the EM attention unit of EMANet (Li et al., ICCV 2019), as the VLSA paper uses it:
    E-step: z_nk = softmax_k(λ · x̂_nᵀ μ_k)          responsibilities of pixel n to centre k
    M-step: μ_k = Σ_n z_nk x_n / Σ_n z_nk, then μ_k ← μ_k / ||μ_k||
T iterations without gradient; one final E-step with gradient; each pixel is re-expressed from
the centres (x̃ = μ zᵀ), then 1x1 conv + norm, plus a residual connection.

Choices where the description is silent (documented in docs/method.md):
- the E-step uses cosine similarity (x̂ = x / ||x||) scaled by λ (default 10): the centres are
  unit-norm, so normalising the pixels too makes λ a temperature that does not depend on the
  feature scale, which is what changes most between domains;
- the initial bases are a running average of the per-batch converged bases (momentum 0.9),
  updated only in training and saved in the checkpoint (a buffer);
- `text_anchor`: the first C of the K initial centres are the (projected) class text embeddings
  of the current forward pass, so C clusters start at, and are named by, the classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EMAggregation(nn.Module):
    def __init__(self, channels: int, k: int = 64, iters: int = 3, lam: float = 10.0, momentum: float = 0.9):
        super().__init__()
        self.k, self.iters, self.lam, self.momentum = k, iters, lam, momentum
        bases = F.normalize(torch.randn(1, channels, k), dim=1)
        self.register_buffer("bases", bases)  # 1 x C x K, unit columns
        self.conv_in = nn.Conv2d(channels, channels, 1)
        self.conv_out = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.GroupNorm(8 if channels % 8 == 0 else 1, channels))
        self.act = nn.ReLU(inplace=False)

    def e_step(self, x_hat: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        # x_hat B x C x N (unit columns), mu B x C x K -> z B x N x K (rows sum to 1)
        return torch.softmax(self.lam * torch.einsum("bcn,bck->bnk", x_hat, mu), dim=2)

    @staticmethod
    def m_step(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # x B x C x N, z B x N x K -> mu B x C x K (unit columns)
        weights = z / (z.sum(dim=1, keepdim=True) + 1e-6)
        return F.normalize(torch.einsum("bcn,bnk->bck", x, weights), dim=1)

    def cluster(self, x: torch.Tensor, anchors: torch.Tensor | None = None):
        """x B x C x N (anchors 1 x C x A) -> (centres B x C x K, unit pixels x̂), no gradient."""
        b = x.shape[0]
        mu = self.bases.expand(b, -1, -1).clone()
        if anchors is not None:
            n = min(anchors.shape[-1], self.k)
            mu[:, :, :n] = F.normalize(anchors[..., :n].detach(), dim=1)  # 1 (or B) x C x n broadcasts
        x_hat = F.normalize(x, dim=1)
        with torch.no_grad():
            for _ in range(self.iters):
                z = self.e_step(x_hat, mu)
                mu = self.m_step(x, z)
        return mu, x_hat

    def forward(self, feats: torch.Tensor, anchors: torch.Tensor | None = None):
        """feats B x C x H x W (anchors: C x A class embeddings) -> (B x C x H x W, z B x HW x K)."""
        identity = feats
        x = self.conv_in(feats)
        b, c, h, w = x.shape
        x = x.flatten(2)  # B x C x N
        anchor = None if anchors is None else anchors.t().unsqueeze(0)  # 1 x C x A
        mu, x_hat = self.cluster(x, anchor)
        z = self.e_step(x_hat, mu)  # with gradient to the features
        recon = torch.einsum("bck,bnk->bcn", mu, z).reshape(b, c, h, w)
        out = self.act(identity + self.conv_out(self.act(recon)))
        if self.training:
            self._update_bases(mu)
        return out, z

    @torch.no_grad()
    def _update_bases(self, mu: torch.Tensor) -> None:
        batch_mean = mu.mean(dim=0, keepdim=True)
        batch_mean = self.reduce_across_ranks(batch_mean)
        self.bases.mul_(self.momentum).add_(batch_mean, alpha=1 - self.momentum)
        self.bases.copy_(F.normalize(self.bases, dim=1))

    @staticmethod
    def reduce_across_ranks(t: torch.Tensor) -> torch.Tensor:
        """Average batch statistics over distributed ranks so every rank keeps identical bases."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            t = t.clone()
            dist.all_reduce(t)
            t /= dist.get_world_size()
        return t
