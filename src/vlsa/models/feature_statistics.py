"""Feature-statistics uncertainty (DSU): resample each feature map's channel mean and std in training.

Li et al., "Uncertainty Modeling for Out-of-Distribution Generalization", ICLR 2022. A domain
shift moves the per-channel statistics of deep features (style); DSU treats each image's channel
mean mu and std sigma as uncertain, with a spread estimated over the batch, and re-normalises the
map to a draw around them. Here it acts on the pyramid the decoder reads, which for a cached frozen
encoder is the only place left to add appearance variation per step: the feature bank holds a
few fixed views of each image (`data.augment.views`), and the frozen features under a blur or a
gamma shift move more than a decoder trained on those views absorbs (docs/benchmarks.md).
"""

from __future__ import annotations

import torch

EPS = 1e-6


def resample_statistics(x: torch.Tensor, chosen: torch.Tensor, eps_mu: torch.Tensor,
                        eps_sigma: torch.Tensor) -> torch.Tensor:
    """One map B x C x H x W -> the same shape, images where `chosen` (B, bool) re-normalised to
    mu + eps_mu * spread(mu), sigma + eps_sigma * spread(sigma) (eps_*: B x C standard normal draws;
    spread: the std over the batch, per channel). The others are returned unchanged. Needs B >= 2."""
    mu = x.mean(dim=(2, 3), keepdim=True)
    sigma = (x.var(dim=(2, 3), keepdim=True) + EPS).sqrt()
    spread_mu = (mu.var(dim=0, keepdim=True) + EPS).sqrt()
    spread_sigma = (sigma.var(dim=0, keepdim=True) + EPS).sqrt()
    beta = mu + eps_mu[..., None, None].to(x) * spread_mu
    gamma = sigma + eps_sigma[..., None, None].to(x) * spread_sigma
    styled = (x - mu) / sigma * gamma + beta
    return torch.where(chosen.to(x.device)[:, None, None, None], styled, x)


def perturb_pyramid(pyramid: list[torch.Tensor], p: float, g: torch.Generator) -> list[torch.Tensor]:
    """DSU on every level of a decoder pyramid (each B x C_l x H_l x W_l), each image with
    probability `p` (the same images on every level, an independent draw per level and channel).
    The draws come from the training step's generator `g` (CPU), so a resumed run repeats them.
    A batch of one has no spread to estimate and is returned as is."""
    b = pyramid[0].shape[0]
    if p <= 0 or b < 2:
        return pyramid
    chosen = torch.rand(b, generator=g) < p
    out = []
    for level in pyramid:
        c = level.shape[1]
        eps_mu, eps_sigma = torch.randn(b, c, generator=g), torch.randn(b, c, generator=g)
        out.append(resample_statistics(level, chosen, eps_mu, eps_sigma))
    return out
