"""Contour overlays of label maps on images (PNG grids)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from vlsa.data.spec import DatasetSpec

# one colour per evaluation region, in order
PALETTE = np.array([[0, 255, 0], [255, 0, 255], [0, 200, 255], [255, 220, 0], [255, 80, 80]], dtype=np.uint8)
PREDICTION_TINT = np.array([255, 255, 255], dtype=np.uint8)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """C x H x W float -> H x W x 3 uint8. RGB in [0, 1] is shown as it is (colour balance is what
    differs between sites); anything else is stretched to its 0.5-99.5 percentiles."""
    img = image if image.shape[0] == 3 else np.repeat(image[:1], 3, axis=0)
    if image.shape[0] == 3 and img.min() >= 0 and img.max() <= 1:
        return (img.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    lo, hi = np.percentile(img, [0.5, 99.5])
    img = np.clip((img - lo) / max(hi - lo, 1e-8), 0, 1)
    return (img.transpose(1, 2, 0) * 255).astype(np.uint8)


def boundary(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def draw_contours(rgb: np.ndarray, label: np.ndarray, spec: DatasetSpec, dashed: bool = False) -> np.ndarray:
    """Draw each region's contour in its palette colour (dashed for predictions)."""
    out = rgb.copy()
    for i, indices in enumerate(spec.regions.values()):
        edge = boundary(np.isin(label, indices))
        if dashed:
            yy, xx = np.indices(edge.shape)
            edge &= ((yy + xx) // 2) % 2 == 0
        out[edge] = PALETTE[i % len(PALETTE)]
    return out


def grid(tiles: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Rows of H x W x 3 tiles (sizes may differ) -> one image, each tile padded to the largest."""
    h = max(t.shape[0] for row in tiles for t in row)
    w = max(t.shape[1] for row in tiles for t in row)
    ncol = max(len(row) for row in tiles)
    out = np.zeros((len(tiles) * (h + pad) + pad, ncol * (w + pad) + pad, 3), dtype=np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            out[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return out


MAX_SIDE = 512  # overlays keep the native grid up to this many pixels on the long side


def fit_native(rgb: np.ndarray, truth: np.ndarray, pred: np.ndarray, max_side: int = MAX_SIDE):
    """Shrink an H x W x 3 image and its two H x W label maps (nearest) so the long side is at most
    `max_side` px; smaller images stay at their native size."""
    from PIL import Image

    h, w = truth.shape
    scale = max_side / max(h, w)
    if scale >= 1:
        return rgb, truth, pred
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    shrink = lambda a, m: np.asarray(Image.fromarray(a).resize(size, m))  # noqa: E731
    return (shrink(rgb, Image.BILINEAR), shrink(truth.astype(np.uint8), Image.NEAREST),
            shrink(pred.astype(np.uint8), Image.NEAREST))


def filled(rgb: np.ndarray, label: np.ndarray, spec: DatasetSpec, alpha: float = 0.35) -> np.ndarray:
    """Each region tinted in its palette colour with a solid contour, about 1 px per 200 px of image
    (regions drawn in spec order, so a nested one such as the cup lies on top of the disc)."""
    out = rgb.astype(np.float32)
    width = max(1, max(label.shape) // 200)
    for i, indices in enumerate(spec.regions.values()):
        mask = np.isin(label, indices)
        colour = PALETTE[i % len(PALETTE)].astype(np.float32)
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
        out[mask & ~ndimage.binary_erosion(mask, iterations=width, border_value=0)] = colour
    return out.astype(np.uint8)


def text_strip(text: str, width: int, height: int = 14, swatches: list[tuple[np.ndarray, str]] | None = None):
    """A black strip with white text, optionally a row of colour swatches with names (a legend)."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (max(width, 1), height), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    x = 2
    if text:
        draw.text((x, 1), text, fill=(255, 255, 255))
        x += int(draw.textlength(text)) + 8
    for colour, name in swatches or []:
        draw.rectangle([x, 3, x + 9, height - 4], fill=tuple(int(c) for c in colour))
        draw.text((x + 12, 1), name, fill=(255, 255, 255))
        x += 12 + int(draw.textlength(name)) + 8
    return np.asarray(strip)


def legend(spec: DatasetSpec, width: int) -> np.ndarray:
    swatches = [(PALETTE[i % len(PALETTE)], name) for i, name in enumerate(spec.regions)]
    return text_strip("left: ground truth, right: prediction;", width, swatches=swatches)


def case_panel(rgb: np.ndarray, truth: np.ndarray, pred: np.ndarray, spec: DatasetSpec, caption: str) -> np.ndarray:
    """[image + truth | image + prediction] at native resolution (capped), captioned above."""
    rgb, truth, pred = fit_native(rgb, truth, pred)
    pair = np.concatenate([filled(rgb, truth, spec), np.zeros((rgb.shape[0], 4, 3), np.uint8),
                           filled(rgb, pred, spec)], axis=1)
    return np.concatenate([text_strip(caption, pair.shape[1]), pair], axis=0)


def stack_panels(panels: list[np.ndarray], spec: DatasetSpec, pad: int = 4) -> np.ndarray:
    """Panels one under the other below a legend, on a black canvas as wide as the widest."""
    width = max(p.shape[1] for p in panels)
    rows = [legend(spec, width)]
    for p in panels:
        row = np.zeros((p.shape[0] + pad, width, 3), np.uint8)
        row[pad:, : p.shape[1]] = p
        rows.append(row)
    return np.concatenate(rows, axis=0)
