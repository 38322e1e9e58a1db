"""A tiny own-data folder dataset (three sites, grey PNGs, two classes with DoFE-like grey levels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = [("disc", 128, "a bright round region"), ("cup", 255, "the brightest centre of the disc")]


def write_classes(root: Path, classes=CLASSES, channels: int = 1) -> None:
    lines = [f"channels: {channels}", "classes:"]
    for name, value, description in classes:
        lines += [f"  - name: {name}", f"    value: {value}", f"    description: \"{description}\""]
    (root / "classes.yaml").write_text("\n".join(lines) + "\n")


def disc_image(rng, size: int, brightness: float, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """-> (image H x W [x 3] uint8, mask H x W with 0 / 128 (disc) / 255 (cup))."""
    yy, xx = np.indices((size, size))
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    r = rng.uniform(0.18, 0.28) * size
    d = np.hypot(yy - cy, xx - cx)
    mask = np.where(d < r, 128, 0).astype(np.uint8)
    mask[d < r * 0.5] = 255
    img = 60 + brightness * (d < r) + 0.5 * brightness * (d < r * 0.5) + rng.normal(0, 8, d.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    return (np.repeat(img[..., None], 3, axis=2) if channels == 3 else img), mask


def make_sites(root: Path, sites=("hospA", "hospB", "hospC"), per_site: int = 10, size: int = 40,
               classes=CLASSES, channels: int = 1, seed: int = 0) -> Path:
    """Write <root>/classes.yaml and <root>/<site>/{images,masks}/case<i>.png; sites differ in contrast."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    write_classes(root, classes, channels)
    for k, site in enumerate(sites):
        (root / site / "images").mkdir(parents=True, exist_ok=True)
        (root / site / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(per_site):
            img, mask = disc_image(rng, size, 60 + 30 * k, channels)
            Image.fromarray(img).save(root / site / "images" / f"case{i:02d}.png")
            Image.fromarray(mask).save(root / site / "masks" / f"case{i:02d}.png")
    return root


def make_scans(folder: Path, n: int = 2, size: int = 40, seed: int = 1) -> list[Path]:
    """A folder of new, unlabelled images (what `vlsa predict` is run on)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img, _ = disc_image(rng, size, 90)
        paths.append(folder / f"scan{i}.png")
        Image.fromarray(img).save(paths[-1])
    return paths
