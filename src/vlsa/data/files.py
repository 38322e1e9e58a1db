"""Which files a dataset holds: listing, image <-> mask pairing, csv lists (any delimiter)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from vlsa.data.io import is_image, is_nifti, stem
from vlsa.errors import DataError


def data_files(folder: Path) -> list[Path]:
    """Image and NIfTI files of a folder, sorted; hidden files (macOS `._name.png`) are skipped."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and (is_image(p) or is_nifti(p)))


def find_mask(mask_dir: Path, image: Path) -> Path:
    """The mask of `image` in `mask_dir`: same stem, compared literally and case-insensitively,
    any image/NIfTI suffix (`n0001.PNG` -> `n0001.png`, `a.JPG` -> `a.png`, `case[2].png`).

    Raises DataError when there is none (listing same-stem files of other kinds, e.g. a labelme
    `.json`) or when several masks match.
    """
    key = stem(image).lower()
    if not mask_dir.is_dir():
        raise DataError(image, f"image has no mask: folder {mask_dir} not found")
    masks = [p for p in data_files(mask_dir) if stem(p).lower() == key]
    exact = [p for p in masks if p.name == image.name]
    if exact:
        return exact[0]
    if len(masks) == 1:
        return masks[0]
    if masks:
        raise DataError(image, f"several masks in {mask_dir}: {', '.join(p.name for p in masks)}")
    others = sorted(p.name for p in mask_dir.iterdir() if p.name.lower().startswith(key + "."))
    hint = f" (same-stem files there are not images/NIfTI: {', '.join(others[:5])})" if others else ""
    raise DataError(image, f"image has no mask in {mask_dir}{hint}")


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A csv file with its delimiter detected (`,` `;` tab `|`) -> (stripped header, rows of stripped
    cells). A UTF-8 byte-order mark is dropped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    lines = text.splitlines()
    if not lines:
        return [], []
    try:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)  # quoted newlines stay in their cell
    header = [h.strip() for h in next(reader, [])]
    rows = [{k: (v or "").strip() for k, v in zip(header, row)} for row in reader if any(c.strip() for c in row)]
    return header, rows


def parse_index(text: str) -> int | None:
    """A frame/row index written as `3`, `3.0` or ` 3 ` -> 3; None when it is not an integer."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(value) or value != int(value):
        return None
    return int(value)
