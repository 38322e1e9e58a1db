"""GIN-IPA: global intensity non-linear augmentation + interventional pseudo-correlation augmentation.

Ouyang et al., "Causality-Inspired Single-Source Domain Generalization for
Medical Image Segmentation", IEEE Transactions on Medical Imaging 42(4), 2023 (arXiv 2111.12525).

- GIN: a shallow network of randomly drawn convolutions (kernel 1 or 3 px, two hidden channels,
  LeakyReLU with slope 0.2 between layers), redrawn for every image, maps the image to a new intensity/texture
  profile that keeps its shapes. The output is mixed with the input by alpha ~ U(0, 1) and rescaled
  to the input's Frobenius norm (the paper's `frob` output normalisation).
- IPA: two GIN draws of the same image are blended by a smooth random map (control points on a
  coarse grid, interpolated bicubically), so that appearance varies *within* the image: a
  pseudo-correlation between a region's appearance and its label is broken.
The paper trains on both kinds of image (GIN alone and GIN-IPA); here each augmented image is one or
the other with probability 1/2. The paper also ties the GIN and GIN-IPA versions of each image by a
consistency loss; that pairing is not built here (`data.augment.consistency` is RandConv's term
between two independent appearance draws, which can be combined with GIN-IPA).
With `data.augment.gin_ipa_p` = p < 1, a fraction 1 - p of the images is left as it came (as
RandConv's mixing variant leaves half), which keeps the source appearance in training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KERNEL_SIZES = (1, 3)
HIDDEN_CHANNELS, LAYERS = 2, 4
CONTROL_GRID = 4  # control points per side of the IPA blending map


def gin(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One GIN draw of one C x H x W image -> C x H x W, with the input's Frobenius norm."""
    c = x.shape[0]
    widths = [c] + [HIDDEN_CHANNELS] * (LAYERS - 1) + [c]
    y = x[None]
    for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
        k = KERNEL_SIZES[int(torch.randint(len(KERNEL_SIZES), (1,), generator=g))]
        w = torch.randn(cout, cin, k, k, generator=g).to(x.dtype)
        b = torch.randn(cout, generator=g).to(x.dtype)
        y = F.conv2d(F.pad(y, (k // 2,) * 4, mode="reflect") if k > 1 else y, w, b)
        if i < LAYERS - 1:
            y = F.leaky_relu(y, 0.2)
    alpha = torch.rand(1, generator=g).item()
    y = alpha * y[0] + (1 - alpha) * x
    return y * (x.norm() / y.norm().clamp_min(1e-6))


def blending_map(h: int, w: int, g: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """IPA's smooth random 1 x H x W map in [0, 1]: U(0, 1) control points, bicubic in between."""
    ctrl = torch.rand(1, 1, CONTROL_GRID, CONTROL_GRID, generator=g)
    return F.interpolate(ctrl, size=(h, w), mode="bicubic", align_corners=True)[0].clamp(0, 1).to(dtype)


def gin_ipa(images: torch.Tensor, g: torch.Generator, p: float = 1.0, p_ipa: float = 0.5) -> torch.Tensor:
    """GIN-IPA on B x C x H x W normalised images -> same shape. Each image is augmented with
    probability `p` (1, the paper's setting: every image) and otherwise kept as it came. An augmented
    image is the IPA blend of two GIN draws with probability `p_ipa`, else one GIN draw (so per image:
    IPA p * p_ipa, GIN alone p * (1 - p_ipa)), re-standardised to zero mean and unit std as the rest
    of the pipeline expects. Deterministic given `g`."""
    out = []
    for x in images:
        # p = 1 draws nothing here, so it reproduces the draws made before `p` existed
        if p < 1 and torch.rand(1, generator=g).item() >= p:
            out.append(x)
            continue
        y = gin(x, g)
        if torch.rand(1, generator=g).item() < p_ipa:
            m = blending_map(*x.shape[-2:], g, x.dtype)
            y = m * y + (1 - m) * gin(x, g)
        out.append((y - y.mean()) / y.std().clamp_min(1e-6))
    return torch.stack(out)
