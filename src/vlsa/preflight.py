"""Checks a command makes before it imports the engine (torch and MONAI take 6-8 s to import on a
2-core machine), so a mistyped path fails in a fraction of a second with the same one-line error
the engine would give. The engine keeps its own checks for library callers; these only move the
failure earlier. Only light modules are imported here."""

from __future__ import annotations

from pathlib import Path

from vlsa.data.domains import missing_target_root
from vlsa.errors import DataError, VlsaError


def check_roots(data) -> None:
    """The dataset folders a run's data section (vlsa.config.DataConfig) names, each checked to exist.
    A root of None (a synthetic dataset, generated) is left to the engine. Raises DataError
    (data.root) or ConfigError (a target dataset's root, naming the --set that points it elsewhere)."""
    if data.root is not None and not Path(data.root).expanduser().is_dir():
        raise DataError(data.root, "dataset root not found (config key 'data.root')")
    for name, target in data.target_datasets.items():
        if target.root is not None and not Path(target.root).expanduser().is_dir():
            raise missing_target_root(name, target.root)


def existing_run(run_dir: str | Path) -> Path:
    """A run directory that must exist, as a Path. Raises VlsaError naming it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise VlsaError(f"{run_dir}: run directory not found")
    return run_dir


UNSUPPORTED = "unsupported file type (expected PNG/JPEG/BMP/TIFF, NIfTI or DICOM)"


def existing_paths(paths: list[str | Path]) -> None:
    """Every file or folder given to `vlsa predict` must exist. Raises DataError naming the first
    that does not."""
    for p in map(Path, paths):
        if not p.exists():
            raise DataError(p, "input not found")


def existing_inputs(paths: list[str | Path]) -> None:
    """`existing_paths`, and every file an image, a NIfTI volume or a DICOM file (by its header,
    whatever its name; folders are left to the engine). Raises DataError naming the first that is
    not."""
    from vlsa.data.dicom import read_header  # pydicom: light beside torch
    from vlsa.data.io import is_image, is_nifti

    existing_paths(paths)
    for p in map(Path, paths):
        if p.is_file() and not (is_image(p) or is_nifti(p)) and read_header(p) is None:
            raise DataError(p, UNSUPPORTED)
