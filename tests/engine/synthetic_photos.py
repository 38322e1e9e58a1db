"""Small synthetic whole fundus photographs in the Drishti-GS1 layout, written by the tests: a red
fundus field on black, an optic disc (bright ellipse) with a paler cup at known positions and
sizes, a few vessels; soft maps (all 4 experts agree) and a cdrValues file per photo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SHAPE = (150, 180)  # H x W


@dataclass
class Disc:
    centre: tuple[float, float]  # row, col (pixel indices)
    radii: tuple[float, float]  # vertical, horizontal (px)
    cdr: float  # the cup's vertical (and horizontal) radius / the disc's


def ellipse(shape, centre, radii) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1


def draw_photo(disc: Disc, shape=SHAPE, seed: int = 0) -> np.ndarray:
    """-> H x W x 3 uint8 photo with the disc drawn."""
    rng = np.random.default_rng(seed)
    h, w = shape
    rows, cols = np.mgrid[:h, :w]
    r = np.hypot((rows - h / 2) / (0.47 * h), (cols - w / 2) / (0.47 * w))
    field = r <= 1
    img = np.zeros((h, w, 3), np.float32)
    img[field] = np.array([0.62, 0.26, 0.1]) * (1 - 0.35 * r[field, None] ** 2)
    for _ in range(3):  # vessels leaving the disc
        angle = rng.uniform(0, 2 * np.pi)
        t = np.linspace(0, 0.6 * w, 200)
        vr = (disc.centre[0] + t * np.sin(angle)).astype(int)
        vc = (disc.centre[1] + t * np.cos(angle)).astype(int)
        keep = (vr >= 0) & (vr < h) & (vc >= 0) & (vc < w)
        img[vr[keep], vc[keep]] *= 0.5
    img[ellipse(shape, disc.centre, disc.radii)] = [0.93, 0.76, 0.5]
    img[ellipse(shape, disc.centre, tuple(disc.cdr * r for r in disc.radii))] = [0.99, 0.93, 0.78]
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    img[~field] = 0
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def random_disc(rng: np.random.Generator, shape=SHAPE) -> Disc:
    h, w = shape
    ry = rng.uniform(10, 16)
    centre = (rng.uniform(0.3, 0.7) * h, rng.uniform(0.22, 0.78) * w)
    return Disc(centre, (ry, ry * rng.uniform(0.85, 1.0)), rng.uniform(0.35, 0.7))


def write_photo_case(root: Path, split: str, name: str, disc: Disc, shape=SHAPE, seed: int = 0) -> None:
    base = root / split
    (base / "Images").mkdir(parents=True, exist_ok=True)
    Image.fromarray(draw_photo(disc, shape, seed)).save(base / "Images" / f"{name}.png")
    case = base / "GT" / name
    (case / "SoftMap").mkdir(parents=True, exist_ok=True)
    disc_mask = ellipse(shape, disc.centre, disc.radii)
    cup_mask = ellipse(shape, disc.centre, tuple(disc.cdr * r for r in disc.radii))
    Image.fromarray(disc_mask.astype(np.uint8) * 255).save(case / "SoftMap" / f"{name}_ODsegSoftmap.png")
    Image.fromarray(cup_mask.astype(np.uint8) * 255).save(case / "SoftMap" / f"{name}_cupsegSoftmap.png")
    # the drawn ratio, as 4 experts would read it (their spread about it 0.02)
    readings = np.clip(disc.cdr + np.array([-0.03, -0.01, 0.01, 0.03]), 0, 1)
    (case / f"{name}_cdrValues.txt").write_text(" ".join(f"{v:.3f}" for v in readings))


def write_release(root: Path, train: int = 12, test: int = 6, seed: int = 0) -> dict[str, Disc]:
    """A Drishti-GS1-layout release of synthetic photos; -> name -> its drawn disc."""
    rng = np.random.default_rng(seed)
    discs = {}
    for split, count, start in (("Training", train, 100), ("Test", test, 1)):
        for i in range(count):
            name = f"drishtiGS_{start + i:03d}"
            discs[name] = random_disc(rng)
            write_photo_case(root, split, name, discs[name], seed=seed * 1000 + start + i)
    return discs
