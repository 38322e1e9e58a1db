"""Reading image and volume files with one-line errors instead of deep tracebacks."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vlsa.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii.gz", ".nii")


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


def stem(path: str | Path) -> str:
    """File name without its (possibly double) suffix: `a.nii.gz` -> `a`."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES + IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def read_image(path: str | Path, mode: str) -> np.ndarray:
    """Read a 2D image as uint8 (`mode` "RGB" -> H x W x 3, "L" -> H x W)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with Image.open(path) as im:
            im.load()
            if im.width == 0 or im.height == 0:
                raise DataError(path, "image has zero size")
            if mode == "L" and im.mode in ("I", "I;16", "I;16B", "F"):
                arr = np.asarray(im)
                return arr.astype(np.int64)
            return np.asarray(im.convert(mode))
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot read image ({exc.__class__.__name__}: {exc})") from None


def read_nifti(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Read a NIfTI file fully -> (data as float32 or int array, 4x4 affine, voxel sizes)."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except (ImageFileError, EOFError, OSError, zlib.error, ValueError) as exc:
        raise DataError(path, f"corrupt or truncated NIfTI ({exc.__class__.__name__}: {exc})") from None
    if data.size == 0:
        raise DataError(path, "NIfTI has zero size")
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise DataError(path, "NIfTI contains NaN or Inf values")
    zooms = tuple(float(z) for z in img.header.get_zooms())
    return data, np.asarray(img.affine, dtype=np.float64), zooms


def write_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray, header=None) -> None:
    """Write a NIfTI atomically (temporary name, then rename)."""
    import nibabel as nib

    from vlsa.utils.atomic import atomic_path

    img = nib.Nifti1Image(data, affine, header=header)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 PNG atomically."""
    from vlsa.utils.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
