r"""Generic dataset for a user's own data.

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

    subject_pattern: '^(?P<subject>.+)_\d+$'   # optional, see "Subjects" below

Label indices follow the order of `classes` (first class -> 1). NIfTI volumes are split into 2D
slices along the last axis by the same preprocessing as M&Ms and `vlsa predict`
(`vlsa.data.resample.volume_planes`: in-plane resampling to `data.spacing`, per-slice percentile
normalisation); a dataset of volumes is volumetric: Dice/HD95/ASD per 3D volume, in mm, against
the original annotation.

Splits: per domain, a salted hash of each image's *subject* sends `test_fraction` of the subjects
to `test` (`vlsa.data.splits.hash_split`, salt 'folder-test'), and the source validation split
holds out whole subjects too. Subjects: images that are slices or views of one patient must share
a subject key, or the patient lands in train and test. The key is, in this order:
  - `subjects.csv` at the root (columns `image,subject`, optional `domain`; `image` is the file
    name without suffix): every image must be listed;
  - `subject_pattern` in classes.yaml: a regex searched in the image name (the named group
    `subject`, else group 1, else the whole match), e.g. '^(?P<subject>.+)_\d+$' for
    `<patient>_<k>.png`; an image it does not match is an error naming it;
  - else the image name (each image its own subject). `vlsa verify` (and training) then warn when
    names look like numbered slices of fewer subjects (`p1_0.png`, `p1_1.png`, ...).
"""

from __future__ import annotations

import csv
import re
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

SUBJECTS_CSV = "subjects.csv"
# `<subject><sep><number>`, `<subject><sep>slice|sl|z|frame<number>`: names of numbered slices (`p1_0`, `case01_z03`)
SLICE_NAME = re.compile(r"^(?P<subject>.+?)[_\-. ]+(?:slice|sl|z|frame)?[_\-. ]*\d+$", re.IGNORECASE)


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


def load_subject_pattern(path: Path) -> re.Pattern | None:
    """classes.yaml's optional `subject_pattern`, compiled (DataError naming the file if invalid)."""
    doc = yaml.safe_load(path.read_text()) or {}
    pattern = doc.get("subject_pattern")
    if pattern is None:
        return None
    try:
        return re.compile(str(pattern))
    except re.error as exc:
        raise DataError(path, f"subject_pattern {pattern!r} is not a valid regex ({exc})") from None


def read_subjects_csv(path: Path) -> dict[tuple[str | None, str], str]:
    """subjects.csv -> {(domain or None, image name): subject}."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in (reader.fieldnames or [])]
        if "image" not in fields or "subject" not in fields:
            raise DataError(path, f"header must have 'image' and 'subject' columns, got {fields}")
        out: dict[tuple[str | None, str], str] = {}
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            image, subject = stem(row.get("image", "")), row.get("subject", "")
            if not image or not subject:
                raise DataError(path, f"line {line}: empty image or subject")
            key = (row.get("domain") or None, image)
            if key in out:
                raise DataError(path, f"line {line}: image {image} listed twice")
            out[key] = subject
    return out


def slice_like_groups(names: list[str]) -> dict[str, list[str]]:
    """Names that look like numbered slices of fewer subjects: prefix -> names, for prefixes shared
    by 2+ names; {} when all names share one prefix (`img_001`, `img_002`: a counter, not subjects)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        m = SLICE_NAME.match(name)
        if m:
            groups.setdefault(m.group("subject"), []).append(name)
    shared = {k: v for k, v in groups.items() if len(v) >= 2}
    return shared if len(groups) >= 2 else {}


class FolderReader:
    """A user's dataset: one folder per domain with images/ and masks/."""

    test_split = ("per domain, vlsa.data.splits.hash_split of the subject (subjects.csv, classes.yaml "
                  "subject_pattern, else the image name; salt 'folder-test', data.test_fraction)")

    def __init__(self, root: str | Path, test_fraction: float = 0.3, spacing: float | None = None):
        self.root = existing_root(root)
        self.spec, self.values = load_classes(self.root / "classes.yaml")
        self.subject_pattern = load_subject_pattern(self.root / "classes.yaml")
        csv_path = self.root / SUBJECTS_CSV
        self.subjects = read_subjects_csv(csv_path) if csv_path.is_file() else None
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
        subject = {p: self.subject_of(domain, p) for p in images}
        test = hash_split(subject.values(), self.test_fraction, salt="folder-test")
        pairs = []
        for image in images:
            if (subject[image] in test) != (split == "test"):
                continue
            pairs.append((image, find_mask(mask_dir, image)))
        if not pairs:
            raise DataError(image_dir, f"empty domain: no {split} images for {domain}")
        return pairs

    def subject_of(self, domain: str, image: Path) -> str:
        """The subject key of an image (see the module doc): subjects.csv, subject_pattern, or its name."""
        name = stem(image)
        if self.subjects is not None:
            found = self.subjects.get((domain, name), self.subjects.get((None, name)))
            if found is None:
                raise DataError(self.root / SUBJECTS_CSV, f"image {domain}/images/{image.name} has no row "
                                                          f"(add '{name},<subject>')")
            return found
        if self.subject_pattern is not None:
            m = self.subject_pattern.search(name)
            if m is None:
                raise DataError(image, f"subject_pattern {self.subject_pattern.pattern!r} (classes.yaml) does not "
                                       "match this image's name")
            if "subject" in self.subject_pattern.groupindex:
                return m.group("subject")
            return m.group(1) if self.subject_pattern.groups else m.group(0)
        return name

    @property
    def subject_rule(self) -> str:
        """Where the subject keys come from (`vlsa verify` prints it): whole subjects are split."""
        if self.subjects is not None:
            return f"{SUBJECTS_CSV} ({len(set(self.subjects.values()))} subjects): a subject's images stay in one split"
        if self.subject_pattern is not None:
            return (f"classes.yaml subject_pattern {self.subject_pattern.pattern!r}: a subject's images stay in "
                    "one split")
        return "none: each image is its own subject (give subjects.csv or subject_pattern for slices of one patient)"

    def split_warnings(self, domains: list[str]) -> list[str]:
        """Without a subject key: one line per domain whose image names look like numbered slices of
        fewer subjects, which the per-image split would scatter over train and test."""
        if self.subjects is not None or self.subject_pattern is not None:
            return []
        out = []
        for domain in domains:
            folder = self.root / domain / "images"
            groups = slice_like_groups([stem(p) for p in data_files(folder)]) if folder.is_dir() else {}
            if groups:
                prefix, names = next(iter(groups.items()))
                out.append(f"{folder}: image names look like slices of {len(groups)} subjects (e.g. "
                           f"{', '.join(names[:2])} share {prefix!r}), but each image is split on its own, so a "
                           f"subject's slices can land in train and test; give the subjects in {SUBJECTS_CSV} or "
                           "classes.yaml subject_pattern")
        return out

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
                case_id=self.subject_of(domain, image_path),  # validation holds out whole subjects too
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
                case_id=self.subject_of(domain, image_path),
                name=f"{name}_z{z:03d}",
                volume_id=name,
                slice_index=z,
                spacing=target,
                slice_thickness=float(zooms[2]) if len(zooms) > 2 else 1.0,
                affine=affine,
                original_label=original,
                original_spacing=spacing,
            )
