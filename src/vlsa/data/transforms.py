"""Training augmentation on batches of model-size tensors.

Every random draw comes from an explicit `torch.Generator`, seeded per training step, so a resumed
run draws exactly what an uninterrupted run would have drawn.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

from vlsa.config import appearance_on
from vlsa.data.gin_ipa import gin_ipa


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def random_affine(b: int, cfg, g: torch.Generator) -> torch.Tensor:
    """B x 2 x 3 affine matrices (normalised coordinates): random flip, rotation and scale."""
    angle = _uniform(b, -cfg.rotate, cfg.rotate, g) * math.pi / 180
    scale = _uniform(b, 1 - cfg.scale, 1 + cfg.scale, g)
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(b)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack([torch.stack([cos * flip, -sin, torch.zeros(b)], 1),
                        torch.stack([sin * flip, cos, torch.zeros(b)], 1)], 1)


def warp(maps: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp B x C x H x W maps (images or feature maps of any resolution) bilinearly."""
    grid = F.affine_grid(theta.to(maps.dtype), list(maps.shape), align_corners=False)
    return F.grid_sample(maps, grid.to(maps.device), mode="bilinear", padding_mode="border", align_corners=False)


def warp_labels(labels: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, [labels.shape[0], 1, *labels.shape[-2:]], align_corners=False)
    return F.grid_sample(labels[:, None].float(), grid.to(labels.device), mode="nearest", padding_mode="zeros",
                         align_corners=False)[:, 0].long()


def spatial(images: torch.Tensor, labels: torch.Tensor, cfg, g: torch.Generator):
    """Random flip, rotation and scale (same warp for image and label). B x C x H x W, B x H x W."""
    theta = random_affine(images.shape[0], cfg, g)
    return warp(images, theta), warp_labels(labels, theta)


def intensity(images: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """Mild brightness/contrast jitter on normalised images (whole image, all channels)."""
    if strength <= 0:
        return images
    b = images.shape[0]
    shift = _uniform(b, -strength, strength, g).view(b, 1, 1, 1)
    gain = _uniform(b, 1 - strength, 1 + strength, g).view(b, 1, 1, 1)
    return images * gain + shift


def colour(images: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """Strong appearance randomisation, the usual cheap DG baseline: per-channel gain and bias,
    gamma on a [0, 1] rescaling, Gaussian blur or noise. Applied to normalised images."""
    if strength <= 0:
        return images
    b, c = images.shape[:2]
    lo = images.amin(dim=(2, 3), keepdim=True)
    hi = images.amax(dim=(2, 3), keepdim=True)
    x = (images - lo) / (hi - lo).clamp_min(1e-6)
    gamma = torch.exp(_uniform(b, -strength, strength, g)).view(b, 1, 1, 1)
    x = x.clamp_min(0) ** gamma
    gain = _uniform(b * c, 1 - strength, 1 + strength, g).view(b, c, 1, 1)
    bias = _uniform(b * c, -strength / 2, strength / 2, g).view(b, c, 1, 1)
    x = x * gain + bias
    sigma = _uniform(b, 0, 1.5 * strength, g)
    blurred = _gaussian_blur(x, sigma)
    noise = torch.randn(x.shape, generator=g) * _uniform(b, 0, 0.1 * strength, g).view(b, 1, 1, 1)
    x = blurred + noise
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return (x - mean) / std


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample isotropic Gaussian blur (sigma in pixels, 0 = none)."""
    radius = 3
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    out = []
    for xi, si in zip(x, sigma):
        if si < 0.3:
            out.append(xi)
            continue
        k = torch.exp(-(t**2) / (2 * si**2))
        k = (k / k.sum()).to(x.dtype)
        c = xi.shape[0]
        xi = F.conv2d(F.pad(xi[None], (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        xi = F.conv2d(F.pad(xi, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
        out.append(xi[0])
    return torch.stack(out)


def view_generator(image: torch.Tensor, view: int) -> torch.Generator:
    """The generator of appearance view `view` of one C x H x W image: seeded by the image's
    content and the view index only, so every seed, method and process draws the same view."""
    data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    digest = hashlib.sha1(data + b"|view|" + str(int(view)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def appearance_views(images: torch.Tensor, views: torch.Tensor, cfg) -> torch.Tensor:
    """Appearance-augmented views of B x C x H x W normalised images: image i becomes its view
    `views[i]` (0 = the image as read; v >= 1 = colour then intensity jitter drawn by
    `view_generator(image, v)`, then RandConv and GIN-IPA where enabled). Deterministic, so a frozen backbone's features of the views form a
    bank that the (content-keyed, disk-backed) feature cache shares across runs and processes."""
    zoom = view_zoom_theta(images, views, cfg)  # drawn from the image as read, before any jitter
    out = []
    for i, (image, v) in enumerate(zip(images, views.tolist())):
        if v == 0:
            out.append(image)
            continue
        g = view_generator(image, v)
        x = colour(image[None], cfg.colour, g)
        x = intensity(x, cfg.intensity, g)
        x = random_conv(x, g) if cfg.randconv else x
        x = gin_ipa(x, g, cfg.gin_ipa_p) if cfg.gin_ipa else x
        out.append((warp(x, zoom[i : i + 1]) if zoom is not None else x)[0])
    return torch.stack(out) if out else images


def view_zoom_theta(images: torch.Tensor, views: torch.Tensor, cfg) -> torch.Tensor | None:
    """B x 2 x 3 zoom matrices of bank views (`data.augment.view_zoom`): for view v >= 1 of an
    image, a factor in [1 - scale, 1 + scale] drawn from the image's content and v (a generator of
    its own, so the colour draws of `appearance_views` stay as they were), identity for view 0;
    None when view_zoom is off. The same matrix zooms the view's image (before the frozen encoder)
    and its labels, so the encoder sees what a re-scaled ROI gives it, not a warped feature map."""
    if not cfg.view_zoom:
        return None
    thetas = []
    for image, v in zip(images, views.tolist()):
        s = 1.0
        if v:
            g = view_generator(image, v + ZOOM_STREAM)
            s = float(_uniform(1, 1 - cfg.scale, 1 + cfg.scale, g))
        thetas.append(torch.tensor([[1 / s, 0.0, 0.0], [0.0, 1 / s, 0.0]]))
    return torch.stack(thetas)


ZOOM_STREAM = 1 << 20  # view_zoom's generator: view v's zoom is drawn by view_generator(image, v + this)


def has_appearance(cfg) -> bool:
    """Whether the augment section `cfg` changes appearance (`config.appearance_on`)."""
    return appearance_on(dict(cfg))


def random_conv(images: torch.Tensor, g: torch.Generator, p: float = 0.5, kernel_sizes=(1, 3, 5, 7)) -> torch.Tensor:
    """RandConv, the mixing variant: Xu, Liu, Yang, Niethammer, "Robust and Generalizable Visual
    Representation Learning via Random Convolutions", ICLR 2021. With probability `p` per image, a
    randomly initialised C -> C convolution (kernel size drawn from `kernel_sizes`, weights
    N(0, 1/(k^2 C)) as in the paper's Kaiming-normal init) filters the image and the result is mixed
    with the input by alpha ~ U(0, 1); each image is then re-standardised (zero mean, unit std).
    B x C x H x W normalised images -> same shape."""
    out = []
    c = images.shape[1]
    for x in images:
        if torch.rand(1, generator=g).item() >= p:
            out.append(x)
            continue
        k = kernel_sizes[int(torch.randint(len(kernel_sizes), (1,), generator=g))]
        w = torch.randn(c, c, k, k, generator=g) * (1.0 / (k * k * c)) ** 0.5
        y = F.conv2d(F.pad(x[None], (k // 2,) * 4, mode="reflect") if k > 1 else x[None], w.to(x.dtype))[0]
        alpha = torch.rand(1, generator=g).item()
        y = alpha * x + (1 - alpha) * y
        out.append((y - y.mean()) / y.std().clamp_min(1e-6))
    return torch.stack(out)


def augment_features(feats: list[torch.Tensor], labels: torch.Tensor, cfg, g: torch.Generator, copies: int = 1):
    """The spatial augmentation applied to cached frozen-backbone features instead of images
    (features of a frozen CNN/ViT are roughly equivariant to these small warps). Appearance
    augmentation reaches cached features through the bank of views (`appearance_views`), chosen
    before the features are looked up. Labels are B x H x W; each feature map holds `copies`
    stacked batches of B (e.g. two appearance views, for the consistency term) that all get the
    same warp, so their predictions stay pixel-aligned. Returns (warped maps, warped B x H x W labels)."""
    # with view_zoom the bank views carry the zoom (in image space): the feature warp keeps flip and rotation
    theta = random_affine(labels.shape[0], cfg.model_copy(update={"scale": 0.0}) if cfg.view_zoom
                          else cfg, g)
    shared = theta.repeat(copies, 1, 1)
    return [warp(f, shared) for f in feats], warp_labels(labels, theta)


def appearance(images: torch.Tensor, cfg, g: torch.Generator) -> torch.Tensor:
    """One draw of the appearance policy on B x C x H x W normalised images: colour, intensity,
    then RandConv and GIN-IPA when enabled (the order `augment` applies them)."""
    images = colour(images, cfg.colour, g)
    images = intensity(images, cfg.intensity, g)
    images = random_conv(images, g) if cfg.randconv else images
    return gin_ipa(images, g, cfg.gin_ipa_p) if cfg.gin_ipa else images


def augment(images: torch.Tensor, labels: torch.Tensor, cfg, g: torch.Generator, draws: int = 1):
    """The whole policy on images (non-cached models): spatial warp, then `draws` independent
    appearance draws of the warped batch (colour, intensity, RandConv, GIN-IPA), stacked along the batch:
    B x C x H x W, B x H x W -> draws*B x C x H x W, B x H x W."""
    images, labels = spatial(images, labels, cfg, g)
    return torch.cat([appearance(images, cfg, g) for _ in range(draws)]), labels
