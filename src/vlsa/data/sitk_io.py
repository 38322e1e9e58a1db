"""Reading volumes nibabel cannot (`.nrrd`, `.mha`, `.mhd`, `.nhdr`) through SimpleITK.

Complements `vlsa.data.io.read_nifti`: returns the same (data, affine, voxel sizes) triple, with
the array in nibabel's axis order (x, y, z) and the affine mapping voxel indices to RAS+ mm, so a
reader treats every 3D format the same way. SimpleITK is an optional dependency (`vlsa[nnunet]`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlsa.errors import DataError

SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


def is_sitk(path: str | Path) -> bool:
    return str(path).lower().endswith(SITK_SUFFIXES)


def read_sitk(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Read a 2D/3D image with SimpleITK -> (array x, y[, z], 4x4 RAS affine, voxel sizes in mm).

    Raises DataError when SimpleITK is missing, the file is missing/corrupt, empty or holds NaN/Inf.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        import SimpleITK as sitk
    except ImportError:
        raise DataError(path, "reading this format needs SimpleITK (pip install 'vlsa[nnunet]')") from None
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else exc.__class__.__name__
        raise DataError(path, f"cannot read image ({reason})") from None
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(path, f"{img.GetNumberOfComponentsPerPixel()} components per voxel; expected 1 (one file per channel)")
    data = sitk.GetArrayFromImage(img)  # z, y, x
    if data.size == 0:
        raise DataError(path, "image has zero size")
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise DataError(path, "image contains NaN or Inf values")
    data = data.transpose(tuple(range(data.ndim))[::-1])  # -> x, y, z
    dim = img.GetDimension()
    spacing = np.array(img.GetSpacing(), dtype=np.float64)
    direction = np.array(img.GetDirection(), dtype=np.float64).reshape(dim, dim)
    origin = np.array(img.GetOrigin(), dtype=np.float64)
    lps = np.eye(4)
    lps[:dim, :dim] = direction * spacing[None, :]
    lps[:dim, 3] = origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # ITK's LPS -> nibabel's RAS
    return data, affine, tuple(float(s) for s in spacing)
