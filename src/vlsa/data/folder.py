"""Generic dataset for a user's own data.

Layout:
    <root>/classes.yaml
    <root>/<domain>/images/<name>.png|.nii.gz
    <root>/<domain>/masks/<name>.png|.nii.gz      (same name as its image)

classes.yaml:
    channels: 3            # 1 (grey / MRI / CT) or 3 (RGB); default 1
    classes:               # foreground classes; mask value 0 is background
      - name: tumour
        value: 255         # the pixel value of this class in the mask files
        description: "an irregular bright mass ..."   # text prompt (optional)

Label indices follow the order of `classes` (first class -> 1). NIfTI volumes are split into 2D
slices along the last axis by the same preprocessing as M&Ms and `vlsa predict`
(`vlsa.data.resample.volume_planes`: in-plane resampling to `data.spacing`, per-slice percentile
normalisation); a dataset of volumes is volumetric: Dice/HD95/ASD per 3D volume, in mm, against
the original annotation. Splits: per domain, a salted hash of
the image name sends `test_fraction` of the images to `test` (see `vlsa.data.splits`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from vlsa.data.files import data_files, find_mask
from vlsa.data.integrity import plausible, unknown_values_message
from vlsa.data.io import existing_root, is_nifti, load_pair, nifti_labels, read_nifti, stem
from vlsa.data.resample import volume_planes
from vlsa.data.sample import Sample
from vlsa.data.spec import DatasetSpec
from vlsa.data.splits import hash_split
from vlsa.errors import DataError


def load_classes(path: Path) -> tuple[DatasetSpec, dict[int, int]]:
    """classes.yaml -> (spec, mask value -> label index)."""
    if not path.is_file():
        raise DataError(path, "classes.yaml not found (it names the classes and their mask values)")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataError(path, f"invalid YAML ({exc.__class__.__name__})") from None
    classes = doc.get("classes")
    if not isinstance(classes, list) or not classes:
        raise DataError(path, "'classes' must be a non-empty list of {name, value, description}")
    channels = doc.get("channels", 1)
    if channels not in (1, 3):
        raise DataError(path, f"'channels' must be 1 or 3, got {channels!r}")
    names, values, descriptions = [], {0: 0}, {}
    for i, entry in enumerate(classes, start=1):
        if not isinstance(entry, dict) or "name" not in entry or "value" not in entry:
            raise DataError(path, f"class #{i} needs 'name' and 'value'")
        value = entry["value"]
        if not isinstance(value, int) or value == 0 or value in values:
            raise DataError(path, f"class {entry['name']!r}: value must be a unique non-zero integer, got {value!r}")
        name = str(entry["name"])
        if name.strip().lower() == "background":
            raise DataError(path, f"class #{i}: the name 'background' is reserved for mask value 0")
        # names compared case-insensitively: 'Disc' and 'disc' would be one class to a reader of the tables
        if name.strip().lower() in {n.strip().lower() for n in names}:
            raise DataError(path, f"class #{i}: name {entry['name']!r} is used twice; each class needs its own name")
        names.append(str(entry["name"]))
        values[value] = i
        descriptions[str(entry["name"])] = str(entry.get("description", entry["name"]))
    spec = DatasetSpec(
        name="folder",
        label_names=("background", *names),
        regions={n: (i,) for i, n in enumerate(names, start=1)},
        channels=channels,
        descriptions=descriptions,
    )
    return spec, values


class FolderReader:
    """A user's dataset: one folder per domain with images/ and masks/."""

    def __init__(self, root: str | Path, test_fraction: float = 0.3, spacing: float | None = None):
        self.root = existing_root(root)
        self.spec, self.values = load_classes(self.root / "classes.yaml")
        self.test_fraction = test_fraction
        self.spacing = spacing
        if self._has_volumes():
            # volumes are scored per 3D volume in mm (as M&Ms), not per slice in pixels
            self.spec = replace(self.spec, volumetric=True)

    def _has_volumes(self) -> bool:
        """True when the images are NIfTI volumes; a dataset mixing volumes and 2D images is refused."""
        kinds = {is_nifti(p) for images in self.root.glob("*/images") if images.is_dir() for p in data_files(images)}
        if len(kinds) > 1:
            raise DataError(self.root, "mixes NIfTI volumes and 2D images (use one kind per dataset)")
        return kinds == {True}

    def domains(self) -> list[str]:
        found = sorted(p.name for p in self.root.iterdir() if (p / "images").is_dir())
        if not found:
            raise DataError(self.root, "no <domain>/images folders")
        return found

    def pairs(self, domain: str, split: str) -> list[tuple[Path, Path]]:
        image_dir, mask_dir = self.root / domain / "images", self.root / domain / "masks"
        if not image_dir.is_dir():
            raise DataError(image_dir, "folder not found")
        images = data_files(image_dir)
        if not images:
            raise DataError(image_dir, f"empty domain: no images for {domain}")
        test = hash_split([stem(p) for p in images], self.test_fraction, salt="folder-test")
        pairs = []
        for image in images:
            if (stem(image) in test) != (split == "test"):
                continue
            pairs.append((image, find_mask(mask_dir, image)))
        if not pairs:
            raise DataError(image_dir, f"empty domain: no {split} images for {domain}")
        return pairs

    def _labels(self, mask: np.ndarray, path: Path) -> np.ndarray:
        values = np.unique(mask)
        unknown = [int(v) for v in values if int(v) not in self.values]
        if unknown:
            raise DataError(path, unknown_values_message(path, unknown, sorted(self.values), len(values)))
        lut = np.zeros(int(max(values.max(), max(self.values))) + 1, dtype=np.int64)
        for value, index in self.values.items():
            lut[value] = index
        return lut[mask.astype(np.int64)]

    @plausible
    def samples(self, domain: str, split: str) -> Iterator[Sample]:
        for image_path, mask_path in self.pairs(domain, split):
            if is_nifti(image_path):
                yield from self._volume_samples(image_path, mask_path, domain)
                continue
            chw, mask = load_pair(image_path, mask_path, self.spec.channels)
            yield Sample(
                image=chw,
                label=self._labels(mask, mask_path),
                domain=domain,
                case_id=stem(image_path),
                name=stem(image_path),
            )

    def _volume_samples(self, image_path: Path, mask_path: Path, domain: str) -> Iterator[Sample]:
        image, affine, zooms = read_nifti(image_path)
        mask, _, _ = read_nifti(mask_path)
        if image.ndim == 2:
            image, mask = image[..., None], mask[..., None]
        if image.ndim != 3:
            raise DataError(image_path, f"expected a 2D or 3D volume, got shape {image.shape}")
        if mask.shape != image.shape:
            raise DataError(mask_path, f"mask shape {mask.shape} differs from image shape {image.shape}")
        labels = self._labels(nifti_labels(mask_path, mask), mask_path)
        name = stem(image_path)
        spacing = (float(zooms[0]), float(zooms[1])) if len(zooms) >= 2 else (1.0, 1.0)
        planes = volume_planes(image, zooms, self.spacing, labels)
        for z, (img, lab, original, target) in enumerate(planes):
            yield Sample(
                image=img,
                label=lab,
                domain=domain,
                case_id=name,
                name=f"{name}_z{z:03d}",
                volume_id=name,
                slice_index=z,
                spacing=target,
                slice_thickness=float(zooms[2]) if len(zooms) > 2 else 1.0,
                affine=affine,
                original_label=original,
                original_spacing=spacing,
            )
