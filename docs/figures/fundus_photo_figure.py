"""Makes docs/figures/fundus_photo_overlay.png: `vlsa predict --overlay` of a trained fundus run
with its disc locator on a SYNTHETIC photograph drawn here (no real image goes into git).

    python docs/figures/fundus_photo_figure.py --run RUN   (RUN trained by `vlsa train --config drishti_sdg`)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

SHAPE = (600, 700)


def synthetic_fundus(seed: int = 7) -> np.ndarray:
    """-> H x W x 3 uint8: a red-orange fundus field with vignetting, curved vessels leaving an
    optic disc (soft yellow ellipse) with a paler cup, blurred as a camera would."""
    rng = np.random.default_rng(seed)
    h, w = SHAPE
    rows, cols = np.mgrid[:h, :w].astype(np.float32)
    r = np.hypot((rows - h / 2) / (0.48 * h), (cols - w / 2) / (0.46 * w))
    img = np.zeros((h, w, 3), np.float32)
    img[:] = np.array([0.78, 0.36, 0.14]) * np.clip(1 - 0.45 * r**2, 0, 1)[..., None]
    centre, radii = (290.0, 480.0), (58.0, 52.0)
    vessels = np.zeros((h, w), np.float32)
    for k in range(7):
        angle = 2 * np.pi * k / 7 + rng.uniform(-0.2, 0.2)
        bend = rng.uniform(-0.004, 0.004)
        t = np.linspace(0, 700, 1400)
        vr = centre[0] + t * np.sin(angle + bend * t)
        vc = centre[1] + t * np.cos(angle + bend * t)
        keep = (vr >= 0) & (vr < h) & (vc >= 0) & (vc < w)
        vessels[vr[keep].astype(int), vc[keep].astype(int)] = 1
    vessels = ndimage.gaussian_filter(ndimage.binary_dilation(vessels, iterations=1).astype(np.float32), 1.2)
    img *= (1 - 0.4 * np.clip(vessels, 0, 1))[..., None]
    d = np.hypot((rows - centre[0]) / radii[0], (cols - centre[1]) / radii[1])
    disc = ndimage.gaussian_filter((d <= 1).astype(np.float32), 4)
    cup = ndimage.gaussian_filter((np.hypot((rows - centre[0] + 4) / (0.55 * radii[0]),
                                            (cols - centre[1] - 6) / (0.5 * radii[1])) <= 1).astype(np.float32), 6)
    img = img * (1 - disc[..., None]) + np.array([0.95, 0.72, 0.42]) * disc[..., None]
    img = img * (1 - cup[..., None]) + np.array([1.0, 0.9, 0.7]) * cup[..., None]
    img *= (1 - 0.4 * np.clip(vessels * disc, 0, 1))[..., None]
    img += rng.normal(0, 0.01, img.shape)
    img[r > 1] = 0
    return (np.clip(ndimage.gaussian_filter(img, (1, 1, 0)), 0, 1) * 255 + 0.5).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--out", default=str(Path(__file__).with_name("fundus_photo_overlay.png")))
    args = parser.parse_args()
    from vlsa.engine.predict import predict_paths

    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "in" / "synthetic_fundus.png"
        photo.parent.mkdir()
        Image.fromarray(synthetic_fundus()).save(photo)
        predict_paths(args.run, [str(photo)], Path(tmp) / "out", overlay=True)
        overlay = Image.open(Path(tmp) / "out" / "synthetic_fundus_overlay.png").convert("RGB")
        print((Path(tmp) / "out" / "measures.csv").read_text())
    # a small file: 64 colours are plenty for a contour picture
    overlay.quantize(64, dither=Image.Dither.NONE).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
