"""Synthetic fundus optic disc / cup ROIs from four sites, in the DoFE layout.

Anatomy (per image): an orange-red retina with low-frequency illumination and choroidal texture;
a bright, slightly elliptical optic disc with a soft margin; a paler cup inside it (cup-to-disc
ratio drawn per site: Domain1 is glaucoma-heavy like Drishti-GS); vessels that leave the disc,
branch, taper and cross the rim; optional peripapillary atrophy (a pale crescent outside the disc,
which is *not* disc and makes the boundary ambiguous, as in real images).

Site appearance (why real sites differ): colour balance, gamma, contrast, brightness, blur,
sensor noise, JPEG compression, vignetting, and the disc's scale within the ROI.
Labels are written as DoFE masks (255 background, 128 rim, 0 cup); train/test per site in roughly
DoFE's proportions.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from vlsa.data.fundus import encode_dofe_mask
from vlsa.data.synth.fields import ellipse_distance, segment_distance, sigmoid, smooth_noise


@dataclass(frozen=True)
class FundusSite:
    name: str
    source: str  # the real dataset this site is modelled on
    train_fraction: float
    gains: tuple[float, float, float]  # RGB colour balance
    gamma: float
    contrast: float
    brightness: float
    blur: float  # Gaussian sigma, in pixels at 128 px
    noise: float
    jpeg_quality: int | None
    vignette: float
    disc_scale: float  # disc radius / ROI size
    cdr: tuple[float, float]  # mean, sd of the vertical cup-to-disc ratio
    ppa: float  # probability of peripapillary atrophy
    pigment: float  # fundus pigmentation (darker, browner retina)


SITES = (
    FundusSite("Domain1", "Drishti-GS", 0.50, (1.00, 0.95, 0.80), 0.85, 1.25, 0.03, 0.6, 0.015, None,
               0.15, 0.25, (0.66, 0.08), 0.2, 0.2),
    FundusSite("Domain2", "RIM-ONE-r3", 0.62, (0.95, 0.70, 0.75), 1.20, 0.80, -0.06, 1.6, 0.030, 70,
               0.35, 0.30, (0.55, 0.10), 0.5, 0.5),
    FundusSite("Domain3", "REFUGE (train, Zeiss)", 0.80, (0.85, 0.75, 0.55), 1.35, 1.05, -0.10, 0.9, 0.020, 85,
               0.55, 0.17, (0.40, 0.08), 0.3, 0.8),
    FundusSite("Domain4", "REFUGE (val, Canon)", 0.80, (1.05, 0.85, 0.50), 0.90, 1.15, 0.06, 0.4, 0.010, 92,
               0.25, 0.19, (0.44, 0.09), 0.1, 0.3),
)


def _draw_vessels(shape, start, cup_r, disc_r, rng) -> np.ndarray:
    """Darkness map of a vessel tree leaving the disc: trunks, random branches, tapering width."""
    h, w = shape
    dark = np.zeros(shape, dtype=np.float32)
    size = max(h, w)
    stack = []
    # superior and inferior arcades (two trunks each: artery + vein) plus a few small nasal vessels
    for base in (-np.pi / 2, np.pi / 2):
        for side in (-1, 1):
            angle = base + side * rng.uniform(0.25, 0.6)
            stack.append((start, angle, rng.uniform(0.017, 0.024) * size, side * 0.02))
    for _ in range(rng.integers(2, 4)):
        stack.append((start, rng.uniform(-0.6, 0.6) + (np.pi if rng.random() < 0.5 else 0), 0.012 * size, 0.0))
    step = size / 28
    drawn = 0
    while stack and drawn < 40:
        (y, x), angle, width, bend = stack.pop()
        drawn += 1
        while width > 0.004 * size and 0 <= y < h and 0 <= x < w:
            angle += bend + rng.normal(0, 0.12)
            ny, nx = y + step * np.sin(angle), x + step * np.cos(angle)
            pad = int(2 * width + 2)
            y0, y1 = int(max(0, min(y, ny) - pad)), int(min(h, max(y, ny) + pad + 1))
            x0, x1 = int(max(0, min(x, nx) - pad)), int(min(w, max(x, nx) + pad + 1))
            if y1 > y0 and x1 > x0:
                yy, xx = np.mgrid[y0:y1, x0:x1]
                d = segment_distance(yy, xx, (y, x), (ny, nx))
                profile = np.exp(-((d / width) ** 2))
                dark[y0:y1, x0:x1] = np.maximum(dark[y0:y1, x0:x1], profile)
            y, x = ny, nx
            width *= 0.93
            if rng.random() < 0.12 and width > 0.008 * size:
                stack.append(((y, x), angle + rng.choice([-1, 1]) * rng.uniform(0.5, 1.0), width * 0.7, 0.0))
    return dark


def render_fundus(site: FundusSite, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """One ROI -> (RGB uint8 H x W x 3, label H x W with 0 bg / 1 rim / 2 cup, vertical CDR)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # retina: base colour, pigmentation, illumination and choroidal texture
    pigment = np.clip(site.pigment + rng.normal(0, 0.1), 0, 1)
    retina = np.array([0.78, 0.34 - 0.1 * pigment, 0.14 - 0.05 * pigment], dtype=np.float32)
    illum = 1.0 + 0.12 * smooth_noise((size, size), 3, rng)
    choroid = 0.05 * smooth_noise((size, size), 14, rng) + 0.02 * smooth_noise((size, size), 30, rng)
    img = retina[None, None] * (illum + choroid)[..., None]

    # optic disc (vertically oval), with the cup displaced a little temporally
    r = size * site.disc_scale * rng.uniform(0.9, 1.1)
    cy, cx = size / 2 + rng.normal(0, 0.04 * size), size / 2 + rng.normal(0, 0.04 * size)
    ry, rx, tilt = r * rng.uniform(1.0, 1.12), r * rng.uniform(0.9, 1.0), rng.normal(0, 0.15)
    d_disc = ellipse_distance(yy, xx, cy, cx, ry, rx, tilt)
    cdr = float(np.clip(rng.normal(*site.cdr), 0.25, 0.85))
    temporal = rng.choice([-1, 1])
    ccx = cx + temporal * rng.uniform(0.0, 0.12) * rx * (1 - cdr)
    ccy = cy + rng.normal(0, 0.04) * ry * (1 - cdr)
    c_ry, c_rx = cdr * ry, cdr * rx * rng.uniform(0.85, 1.05)
    d_cup = ellipse_distance(yy, xx, ccy, ccx, c_ry, c_rx, tilt + rng.normal(0, 0.1))

    # peripapillary atrophy: a pale, mottled crescent just outside the temporal margin
    if rng.random() < site.ppa:
        ang = np.arctan2(yy - cy, (xx - cx) * temporal)
        crescent = (d_disc > 0.95) & (d_disc < 1.0 + rng.uniform(0.15, 0.35)) & (np.abs(ang) < rng.uniform(0.6, 1.3))
        ppa = ndimage.gaussian_filter(crescent.astype(np.float32), 1.0) * (0.7 + 0.3 * smooth_noise((size, size), 20, rng))
        img = img * (1 - 0.6 * ppa[..., None]) + np.array([0.85, 0.7, 0.5])[None, None] * 0.6 * ppa[..., None]

    w_disc = sigmoid((1.0 - d_disc) / 0.05)
    w_cup = sigmoid((1.0 - d_cup) / rng.uniform(0.08, 0.16))  # cup margins are gradual
    rim_col = np.array([0.95, 0.62, 0.40]) * rng.uniform(0.95, 1.05)
    cup_col = np.array([1.0, 0.90, 0.72])
    img = img * (1 - w_disc[..., None]) + rim_col[None, None] * w_disc[..., None]
    pallor = rng.uniform(0.7, 0.95)
    img = img * (1 - pallor * w_cup[..., None]) + cup_col[None, None] * pallor * w_cup[..., None]

    # vessels leave from inside the cup, cross the rim and branch over the retina
    dark = _draw_vessels((size, size), (ccy, ccx), min(c_ry, c_rx), r, rng)
    vessel_col = np.array([0.42, 0.07, 0.05])
    img = img * (1 - 0.8 * dark[..., None]) + vessel_col[None, None] * 0.8 * dark[..., None]

    # site appearance: colour balance, gamma, contrast, brightness, vignetting, blur, noise, JPEG
    img = img * np.asarray(site.gains)[None, None]
    img = np.clip(img, 0, 1) ** site.gamma
    img = (img - img.mean()) * site.contrast + img.mean() + site.brightness
    rr = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    img = img * (1 - site.vignette * np.clip(rr - 0.4, 0, None) ** 1.5)[..., None]
    blur = site.blur * size / 128 * rng.uniform(0.8, 1.2)
    if blur > 0:
        img = ndimage.gaussian_filter(img, sigma=(blur, blur, 0))
    img = img + rng.normal(0, site.noise, img.shape)
    rgb = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    if site.jpeg_quality is not None:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=site.jpeg_quality)
        rgb = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))

    label = np.zeros((size, size), dtype=np.int64)
    label[d_disc < 1.0] = 1
    label[(d_cup < 1.0) & (d_disc < 1.0)] = 2
    return rgb, label, cdr


def _file_name(site: FundusSite, index: int, cdr: float) -> str:
    glaucoma = cdr >= 0.6
    if site.name == "Domain1":
        return f"{'g' if glaucoma else 'n'}drishtiGS_{index:03d}"
    if site.name == "Domain2":
        return f"{'G' if glaucoma else 'N'}-{index}-{'LR'[index % 2]}"
    if site.name == "Domain3":
        return f"{'g' if glaucoma else 'n'}{index:04d}"
    return f"V{index:04d}"


def generate_fundus(out: str | Path, per_domain: int = 60, size: int = 128, seed: int = 0, progress=None) -> Path:
    """Write four synthetic sites to `out` in the DoFE layout; deterministic for a seed."""
    out = Path(out)
    for site_index, site in enumerate(SITES):
        rng = np.random.default_rng([seed, site_index])
        n_train = max(1, min(per_domain - 1, round(site.train_fraction * per_domain)))
        for i in range(per_domain):
            rgb, label, cdr = render_fundus(site, size, rng)
            split = "train" if i < n_train else "test"
            name = _file_name(site, i + 1, cdr)
            base = out / site.name / split / "ROIs"
            (base / "image").mkdir(parents=True, exist_ok=True)
            (base / "mask").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(base / "image" / f"{name}.png")
            Image.fromarray(encode_dofe_mask(label)).save(base / "mask" / f"{name}.png")
            if progress is not None:
                progress.update(1)
    return out
