"""The one place files become arrays: images, label masks, NIfTI volumes.

Every reader (fundus DoFE/RIGA+, M&Ms, folder) and `vlsa predict` decode through here, so an
image or mask reads the same everywhere, and a file that cannot be read as what it claims to be
is one `DataError` line naming the file and the problem. Which files (listing, image<->mask
pairing, csv lists) is `vlsa.data.files`.

Images (photographs, scans) -> `load_image`: float32 C x H x W in [0, 1].
    PIL modes 1, L, P (palette colours), LA/RGBA (alpha dropped), RGB, CMYK/YCbCr/LAB (converted
    to RGB); 8-bit data / 255; 16-bit (I;16, I;16B, 16-bit RGB PNG), 32-bit (I) and float (F)
    data are scaled by the image's own range (min -> 0, max -> 1) *before* any 8-bit step, so a
    12-bit image in a 16-bit file does not saturate. EXIF orientation is applied (the image as
    every viewer and annotation tool shows it). Multi-page TIFFs and NaN/Inf pixels are refused.
    `vlsa predict` writes a label map on the input's *stored* pixel grid with the input's EXIF
    orientation tag (`to_stored_grid`, `write_png(orientation=)`): pixel (r, c) of the file labels
    stored pixel (r, c) of the input, and a viewer (or `load_mask`) turns both the same way.
Masks -> `load_mask`: int64 H x W of the label values the file stores.
    1 -> 0/255 (black/white); L, I;16*, I -> values; P -> the stored palette indices, never the
    display colours; F -> values, which must be integers; RGB -> the grey level when R = G = B
    (JPEG: nearly equal), refused when coloured; LA/RGBA -> the alpha channel when it carries
    the label (colour constant, alpha varying), the colour when alpha is constant or only marks
    a uniform background transparent, refused (naming alpha) otherwise.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vlsa.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
LOSSY_SUFFIXES = (".jpg", ".jpeg")


def existing_root(root: str | Path) -> Path:
    """A dataset root that must exist, as a Path (one-line error otherwise)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset root not found")
    return root


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def is_image(path: str | Path) -> bool:
    return str(path).lower().endswith(IMAGE_SUFFIXES)


def is_lossy(path: str | Path) -> bool:
    """JPEG files: their grey levels are smeared by compression, so they cannot hold exact labels."""
    return str(path).lower().endswith(LOSSY_SUFFIXES)


def stem(path: str | Path) -> str:
    """File name without its (possibly double) suffix: `a.nii.gz` -> `a`."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES + IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def describe_values(values, limit: int = 6) -> str:
    """At most `limit` values of a list, with the count when there are more: `[0, 1, 2, ...] (44 values)`."""
    values = [int(v) for v in values]
    if len(values) <= limit:
        return str(values)
    return f"[{', '.join(map(str, values[:limit]))}, ...] ({len(values)} values)"


# ----------------------------------------------------------------------------------- 2D images

@dataclass
class _Decoded:
    pixels: np.ndarray      # H x W or H x W x C, dtype as stored (uint8, uint16, int32, float32)
    mode: str               # PIL mode of the file
    orientation: int        # EXIF orientation tag (1 = as stored)
    stored_size: tuple[int, int]  # (W, H) before the EXIF orientation


def _sixteen_bit_colour(path: Path, im: Image.Image) -> np.ndarray | None:
    """16-bit RGB/RGBA PNG: PIL keeps only the high byte; decode the low byte too (same decoder,
    little-endian raw mode) and put the two together. None when the file is not such a PNG."""
    tile = getattr(im, "tile", None) or []
    if im.format != "PNG" or len(tile) != 1 or tile[0].args not in ("RGB;16B", "RGBA;16B"):
        return None
    high = np.asarray(im.convert(im.mode)).astype(np.uint16)
    with Image.open(path) as low_im:
        low_im.tile = [low_im.tile[0]._replace(args=tile[0].args.replace("16B", "16L"))]
        try:
            low_im.load()
        except (ValueError, OSError):
            return None
        low = np.asarray(low_im).astype(np.uint16)
    return high * 256 + low


def _decode(path: str | Path, palette_indices: bool) -> _Decoded:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                raise DataError(path, f"has {frames} pages/frames; expected a single 2D image")
            stored_size = im.size
            deep = _sixteen_bit_colour(path, im)  # before anything loads the pixels (getexif may)
            orientation = int(im.getexif().get(0x0112, 1) or 1)
            im.load()
            if im.width == 0 or im.height == 0:
                raise DataError(path, "image has zero size")
            mode = im.mode
            if deep is not None:
                pixels = deep
            elif mode == "P" and not palette_indices:
                pixels = np.asarray(im.convert("RGBA" if "transparency" in im.info else "RGB"))
            elif mode == "PA" and not palette_indices:
                pixels = np.asarray(im.convert("RGBA"))
            elif mode == "PA":
                pixels = np.stack([np.asarray(im.getchannel(0)), np.asarray(im.getchannel("A"))], axis=-1)
            elif mode == "1":
                pixels = np.asarray(im).astype(np.uint8) * 255
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"):
                pixels = np.asarray(im.convert("RGBA" if mode in ("RGBa", "La") else "RGB"))
            elif mode.startswith("I;16"):
                pixels = np.asarray(im).astype(np.uint16)
            else:
                pixels = np.asarray(im)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(path, f"cannot read image ({exc.__class__.__name__}: {exc})") from None
    if np.issubdtype(pixels.dtype, np.floating) and not np.all(np.isfinite(pixels)):
        raise DataError(path, "image contains NaN or Inf values")
    pixels = _orient(pixels, orientation)
    return _Decoded(pixels, mode, orientation, stored_size)


_ORIENT = {  # EXIF orientation -> the array operation ImageOps.exif_transpose applies
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (2..8) to an H x W (x C) array."""
    op = _ORIENT.get(orientation)
    return pixels if op is None else np.ascontiguousarray(op(pixels))


# the inverse of each: mirrors (2, 4), the half turn (3) and the two diagonal reflections (5, 7) undo
# themselves; the quarter turns (6, 8) undo each other
_UNORIENT = {**_ORIENT, 6: _ORIENT[8], 8: _ORIENT[6]}


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag of a 2D image file (1 = as stored, also when there is none)."""
    try:
        with Image.open(path) as im:
            return int(im.getexif().get(0x0112, 1) or 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot read image ({exc.__class__.__name__}: {exc})") from None


def to_stored_grid(array: np.ndarray, orientation: int) -> np.ndarray:
    """An H x W (x C) array on the image as displayed (`load_image` applies the EXIF orientation)
    -> the same array on the file's stored pixel grid: the inverse of the orientation."""
    op = _UNORIENT.get(orientation)
    return array if op is None else np.ascontiguousarray(op(array))


def _unit_range(pixels: np.ndarray) -> np.ndarray:
    """8-bit data / 255; deeper or float data by the image's own range (min -> 0, max -> 1)."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    data = pixels.astype(np.float64)
    low, high = float(data.min()), float(data.max())
    if high <= low:
        return np.zeros(data.shape, dtype=np.float32)
    return ((data - low) / (high - low)).astype(np.float32)


def _to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """H x W or H x W x {2,3,4} as stored -> C x H x W in [0, 1] with C = `channels`.

    Alpha is dropped before the range is taken (a photograph's transparency is not its intensity).
    """
    if pixels.ndim == 3:
        pixels = pixels[..., 0] if pixels.shape[2] <= 2 else pixels[..., :3]
    unit = _unit_range(pixels)
    if channels == 3:
        rgb = unit if unit.ndim == 3 else np.repeat(unit[..., None], 3, axis=2)
        return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
    if unit.ndim == 3:  # ITU-R 601-2 luma, as PIL's convert("L")
        unit = unit @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.ascontiguousarray(unit[None], dtype=np.float32)


def load_image(path: str | Path, channels: int) -> np.ndarray:
    """Read a 2D image -> float32 C x H x W in [0, 1], C = `channels` (1 or 3).

    Raises DataError (file named) for a missing, corrupt, multi-page or NaN-holding file.
    """
    return load_image_colour(path, channels)[0]


# a stored colour image whose channels differ by more than this (of the range) on more than
# COLOUR_PIXELS of its pixels is a colour picture, not a grey one saved as RGB or through JPEG
COLOUR_SPREAD, COLOUR_PIXELS = 16 / 255, 0.01


def load_image_colour(path: str | Path, channels: int) -> tuple[np.ndarray, bool]:
    """`load_image`, and whether the stored pixels are a colour picture (R, G, B differing by more
    than COLOUR_SPREAD on more than COLOUR_PIXELS of the pixels): what a grey model's caller
    warns about, since converting a photograph to luma makes it a grey image it never saw."""
    pixels = _decode(path, palette_indices=False).pixels
    colour = False
    if pixels.ndim == 3 and pixels.shape[2] >= 3:
        rgb = _unit_range(pixels[..., :3])
        colour = bool(np.mean(rgb.max(axis=2) - rgb.min(axis=2) > COLOUR_SPREAD) > COLOUR_PIXELS)
    return _to_channels(pixels, channels), colour


def _grey_of_colour(path: Path, rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 mask -> H x W grey levels (luma when R, G, B differ by at most 16, as after JPEG);
    refused when they differ by more: a colour-coded mask."""
    rgb = rgb.astype(np.int64)
    spread = int(np.abs(rgb - rgb[..., :1]).max()) if rgb.size else 0
    if spread == 0:
        return rgb[..., 0]
    if spread <= 16:  # JPEG or a grey converted through a colour profile: nearly grey
        return np.rint(rgb @ np.array([0.299, 0.587, 0.114])).astype(np.int64)
    where = np.argwhere(np.abs(rgb - rgb[..., :1]).max(axis=-1) > 0)[0]
    colour = tuple(int(c) for c in rgb[tuple(where)])
    raise DataError(path, f"mask is in colour (e.g. RGB {colour} at row {where[0]}, column {where[1]}); "
                          "save label values in one channel (greyscale or palette PNG)")


def _mask_of_alpha(path: Path, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Colour part (H x W or H x W x 3) and alpha (H x W) -> the channel that carries the label."""
    colour_grey = colour if colour.ndim == 2 else None
    colour_varies = colour.min() != colour.max() if colour.size else False
    alpha_varies = alpha.min() != alpha.max() if alpha.size else False
    if not alpha_varies:
        return colour_grey if colour_grey is not None else _grey_of_colour(path, colour)
    if not colour_varies:
        return alpha.astype(np.int64)  # the label lives in the alpha channel
    flat = colour if colour.ndim == 2 else colour.reshape(*colour.shape[:2], -1)
    hidden = flat[alpha == 0]
    uniform_background = set(np.unique(alpha).tolist()) <= {0, int(alpha.max())} and (
        hidden.size == 0 or np.all(hidden == hidden.reshape(-1, *flat.shape[2:])[0]))
    if uniform_background:  # alpha only makes a uniform background transparent
        return colour_grey if colour_grey is not None else _grey_of_colour(path, colour)
    raise DataError(path, "mask has both varying colour and varying alpha (transparency); cannot tell which "
                          "carries the label: save the label values in one channel")


def load_mask(path: str | Path) -> np.ndarray:
    """Read a 2D label mask -> int64 H x W of the label values the file stores (see the module doc).

    Raises DataError for colour masks, ambiguous alpha, non-integer float values, or anything
    `load_image` refuses.
    """
    path = Path(path)
    decoded = _decode(path, palette_indices=True)
    pixels, mode = decoded.pixels, decoded.mode
    if np.issubdtype(pixels.dtype, np.floating):
        bad = pixels[pixels != np.rint(pixels)]
        if bad.size:
            raise DataError(path, f"mask holds non-integer values (e.g. {float(bad.flat[0]):g}); labels must be integers")
        pixels = np.rint(pixels)
    if pixels.ndim == 2:
        return pixels.astype(np.int64)
    if pixels.shape[2] == 2 or mode in ("LA", "La", "PA"):
        return _mask_of_alpha(path, pixels[..., 0], pixels[..., -1])
    if pixels.shape[2] == 4:
        return _mask_of_alpha(path, pixels[..., :3], pixels[..., 3])
    return _grey_of_colour(path, pixels[..., :3])


def load_pair(image_path: Path, mask_path: Path, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """An image and its mask -> (float32 C x H x W in [0, 1], int64 H x W label values).

    Raises DataError naming the mask when the sizes differ (and saying so when the image's EXIF
    orientation is what makes them differ).
    """
    decoded = _decode(image_path, palette_indices=False)
    image = _to_channels(decoded.pixels, channels)
    mask = load_mask(mask_path)
    if mask.shape != image.shape[1:]:
        h, w = image.shape[1:]
        hint = ""
        if decoded.orientation != 1 and mask.shape[::-1] == decoded.stored_size:
            hint = f"; the image's EXIF orientation {decoded.orientation} turns it, the mask matches the stored pixels"
        raise DataError(mask_path, f"mask size {mask.shape[1]}x{mask.shape[0]} differs from image size {w}x{h} "
                                   f"({Path(image_path).name}){hint}")
    return image, mask


def read_image(path: str | Path, mode: str) -> np.ndarray:
    """8-bit view kept for callers of the former API: "RGB" -> uint8 H x W x 3 image (`load_image`),
    "L" -> the mask's label values H x W (`load_mask`; uint8 when they fit)."""
    if mode == "L":
        mask = load_mask(path)
        return mask.astype(np.uint8) if mask.size and 0 <= mask.min() and mask.max() <= 255 else mask
    return np.rint(load_image(path, 3).transpose(1, 2, 0) * 255.0).astype(np.uint8)


# ----------------------------------------------------------------------------------- NIfTI

class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _raw_pixdim(path: Path, img) -> list[float]:
    """pixdim as stored in the file (nibabel replaces 0 by 1 and negatives by their size on load)."""
    import nibabel as nib
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as fh:
            return [float(v) for v in nib.Nifti1Header.from_fileobj(fh, check=False)["pixdim"]]
    except Exception:  # noqa: BLE001 - only for the message; the loaded header is the fallback
        return [float(v) for v in img.header["pixdim"]]


def _spacing(path: Path, img, fixed_pixdim: bool) -> tuple[float, ...]:
    """Voxel sizes: pixdim when valid, else the column norms of a valid sform (one-line error otherwise)."""
    zooms = [float(z) for z in img.header.get_zooms()]
    spatial = min(3, len(zooms))
    if not fixed_pixdim and all(np.isfinite(z) and z > 0 for z in zooms[:spatial]):
        return tuple(zooms)
    sform, code = img.header.get_sform(coded=True)
    if sform is not None and code > 0 and np.all(np.isfinite(sform)):
        norms = np.linalg.norm(np.asarray(sform)[:3, :3], axis=0)
        if np.all(norms > 0):
            return tuple(float(n) for n in norms[:spatial]) + tuple(zooms[spatial:])
    raw = ", ".join(f"{v:g}" for v in _raw_pixdim(path, img)[1:1 + spatial])
    raise DataError(path, f"voxel size (pixdim {raw}) is zero, negative or not a number, and the header has "
                          "no valid sform affine to take it from")


def _quiet_load(path: Path, with_data: bool):
    """nib.load with nibabel's header messages captured (they do not name the file) -> (image,
    messages, data or None)."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    if not path.is_file():
        raise DataError(path, "file not found")
    logger = logging.getLogger("nibabel.global")
    collect, propagate = _Collect(), logger.propagate
    logger.addHandler(collect)
    logger.propagate = False
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj) if with_data else None
    except (ImageFileError, EOFError, OSError, zlib.error, ValueError) as exc:
        raise DataError(path, f"corrupt or truncated NIfTI ({exc.__class__.__name__}: {exc})") from None
    finally:
        logger.removeHandler(collect)
        logger.propagate = propagate
    return img, collect.messages, data


def read_nifti_header(path: str | Path):
    """A copy of a NIfTI's header, read quietly, with pixdim holding the voxel sizes `read_nifti`
    finds (so a file written with it states a valid spacing). Raises DataError like `read_nifti`."""
    path = Path(path)
    img, messages, _ = _quiet_load(path, with_data=False)
    header = img.header.copy()
    zooms = _spacing(path, img, any("pixdim" in m for m in messages))
    header["pixdim"][1:1 + len(zooms)] = zooms
    return header


def read_nifti(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Read a NIfTI file fully -> (data as float32 or int array, 4x4 affine, voxel sizes in mm).

    Voxel sizes come from pixdim, or from the sform affine when pixdim is 0/negative/NaN; nibabel's
    own header warnings are captured, never printed without the file name.
    Raises DataError for a missing, corrupt or truncated file, zero size, NaN/Inf voxels, or a
    voxel size that neither pixdim nor the affine gives.
    """
    path = Path(path)
    img, messages, data = _quiet_load(path, with_data=True)
    if data.size == 0:
        raise DataError(path, "NIfTI has zero size")
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise DataError(path, "NIfTI contains NaN or Inf values")
    zooms = _spacing(path, img, any("pixdim" in m for m in messages))
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise DataError(path, "NIfTI affine holds NaN or Inf")
    return data, affine, zooms


def nifti_labels(path: str | Path, data: np.ndarray) -> np.ndarray:
    """A label volume -> int64, refusing non-integer values (a mask resampled with interpolation)."""
    if np.issubdtype(data.dtype, np.floating):
        rounded = np.rint(data)
        off = np.abs(data - rounded) > 1e-3
        if off.any():
            raise DataError(path, f"label volume holds non-integer values (e.g. {float(data[off].flat[0]):g}); "
                                  "was it resampled with linear interpolation?")
        data = rounded
    return data.astype(np.int64)


def write_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray, header=None) -> None:
    """Write a NIfTI atomically (temporary name, then rename)."""
    import nibabel as nib

    from vlsa.utils.atomic import atomic_path

    img = nib.Nifti1Image(data, affine, header=header)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def write_png(path: str | Path, array: np.ndarray, orientation: int = 1) -> None:
    """Write a uint8 PNG atomically; `orientation` 2..8: with that EXIF orientation tag (eXIf chunk),
    so viewers (and `load_mask`) turn it as they turn the image it belongs to."""
    from vlsa.utils.atomic import atomic_path

    extra = {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = int(orientation)
        extra["exif"] = exif
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG", **extra)
