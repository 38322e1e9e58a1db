"""Reader for nnU-Net v2 raw datasets (Isensee et al., nnU-Net, Nature Methods 2021), plus a domain map.

Layout (nnU-Net v2 `dataset_format.md`):
    <root>/dataset.json           channel_names, labels, numTraining, file_ending
    <root>/imagesTr/<case>_<XXXX><file_ending>   one file per channel (XXXX = 0000, 0001, ...);
                                  a 2D RGB image may be one file holding the 3 channels
    <root>/labelsTr/<case><file_ending>          label values as in dataset.json `labels`
    <root>/domains.csv            case,domain[,split][,subject]   (vlsa's addition, see below)

nnU-Net has no notion of domain (site, scanner, vendor), so the domain of each case comes from
`domains.csv` beside dataset.json (columns `case,domain`; optional `split` = train|test fixes the
case's split, optional `subject` groups cases of one subject, e.g. ED and ES volumes, so splits
never separate them) or from a regex `domain_pattern` searched in the case name (config key
`data.domain_pattern`; the named group `domain`, else the first group, else the whole match).
A case with no domain is an error naming it. Cases without a `split` are split per domain by a
salted hash of the subject (`test_fraction` to test), as in the other readers.

2D files (`.png`, `.bmp`, `.tif`) are decoded by `vlsa.data.io` like every reader's: 8-bit
images / 255, deeper ones by their own range to [0, 1]; label files hold the label values. 3D files (`.nii.gz`,
`.nii` through nibabel; `.nrrd`, `.mha`, `.mhd`, `.nhdr` through SimpleITK) are split into 2D
slices along the last axis by `vlsa.data.resample.volume_planes`, the preprocessing of the M&Ms
reader and `vlsa predict` (in-plane resampling to `spacing` mm when given, per-slice percentile
normalisation), and grouped per volume (`volume_id` = case) for per-volume metrics; each slice keeps
its annotation on the original grid, which Dice/HD95 are scored against in mm of the original spacing.

Region-based labels (a label mapped to a list of values, `regions_class_order`) and nnU-Net's
`ignore` label are refused: vlsa trains a softmax over mutually exclusive labels. A dataset
written by `vlsa export nnunet` carries a `vlsa` key in dataset.json (evaluation regions, class
descriptions, whether intensities are already normalised) that nnU-Net ignores and this reader
uses, so an exported dataset reads back to the same samples.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlsa.data.integrity import plausible
from vlsa.data.io import existing_root, load_image, load_mask, read_nifti
from vlsa.data.resample import volume_planes
from vlsa.data.sample import Sample
from vlsa.data.sitk_io import read_sitk
from vlsa.data.spec import DatasetSpec
from vlsa.data.splits import hash_split
from vlsa.errors import ConfigError, DataError

ENDINGS_2D = (".png", ".bmp", ".tif")
ENDINGS_3D = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class NNUNetCase:
    case: str
    domain: str
    subject: str
    split: str | None  # fixed by domains.csv, else None (hash split)
    images: tuple[Path, ...]  # one file per channel, or one RGB(A) file
    label: Path


@dataclass(frozen=True)
class NNUNetInfo:
    """What dataset.json says, checked."""

    spec: DatasetSpec
    channel_names: tuple[str, ...]
    file_ending: str
    num_training: int
    normalised: bool  # intensities already normalised by vlsa (exported datasets)

    @property
    def volumetric(self) -> bool:
        return self.file_ending.lower() in ENDINGS_3D


def load_dataset_json(path: Path) -> NNUNetInfo:
    """Parse and check dataset.json; DataError naming the file and the problem otherwise."""
    if not path.is_file():
        raise DataError(path, "dataset.json not found (the root must be an nnU-Net DatasetXXX_Name folder)")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"invalid JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(doc, dict):
        raise DataError(path, "expected a JSON object")
    if "modality" in doc and "channel_names" not in doc:
        raise DataError(path, "nnU-Net v1 format ('modality'); convert it with nnUNetv2_convert_old_nnUNet_dataset")
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    if missing:
        raise DataError(path, f"missing key(s) {', '.join(missing)}")
    if "regions_class_order" in doc:
        raise DataError(path, "region-based labels ('regions_class_order') are not supported; "
                              "give every label one integer value")
    labels = _labels(path, doc["labels"])
    channels = _channels(path, doc["channel_names"])
    ending = doc["file_ending"]
    if not isinstance(ending, str) or ending.lower() not in ENDINGS_2D + ENDINGS_3D:
        raise DataError(path, f"file_ending {ending!r} not supported (choose from {', '.join(ENDINGS_2D + ENDINGS_3D)})")
    num = doc["numTraining"]
    if not isinstance(num, int) or num < 1:
        raise DataError(path, f"numTraining must be a positive integer, got {num!r}")
    meta = doc.get("vlsa") if isinstance(doc.get("vlsa"), dict) else {}
    names = tuple(labels)
    regions = {n: (i,) for i, n in enumerate(names) if i > 0}
    if isinstance(meta.get("regions"), dict):
        regions = {str(k): tuple(int(v) for v in vals) for k, vals in meta["regions"].items()}
    descriptions = {r: str(meta.get("descriptions", {}).get(r, r)) for r in regions}
    spec = DatasetSpec(
        name=str(meta.get("name", "nnunet")),
        label_names=names,
        regions=regions,
        channels=len(channels),
        volumetric=ending.lower() in ENDINGS_3D,
        descriptions=descriptions,
    )
    return NNUNetInfo(spec, channels, ending, num, bool(meta.get("normalised", False)))


def _labels(path: Path, labels) -> tuple[str, ...]:
    """labels {name: value} -> names in value order (value i at index i)."""
    if not isinstance(labels, dict) or not labels:
        raise DataError(path, "'labels' must be a non-empty object {name: value}")
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise DataError(path, f"region-based label {name!r}: {value} is not supported; "
                                  "give every label one integer value")
        if not isinstance(value, int) or isinstance(value, bool):
            raise DataError(path, f"label {name!r}: value must be an integer, got {value!r}")
    if "ignore" in labels:
        raise DataError(path, "the 'ignore' label (sparse annotation) is not supported")
    by_value = sorted(labels.items(), key=lambda kv: kv[1])
    values = [v for _, v in by_value]
    if values != list(range(len(values))):
        raise DataError(path, f"label values must be consecutive integers 0..{len(values) - 1}, got {values}")
    return tuple(n for n, _ in by_value)


def _channels(path: Path, channel_names) -> tuple[str, ...]:
    if not isinstance(channel_names, dict) or not channel_names:
        raise DataError(path, "'channel_names' must be a non-empty object {\"0\": name, ...}")
    keys = sorted(channel_names, key=lambda k: int(k) if str(k).isdigit() else -1)
    if [str(k) for k in keys] != [str(i) for i in range(len(keys))]:
        raise DataError(path, f"channel_names keys must be \"0\"..\"{len(keys) - 1}\", got {list(channel_names)}")
    return tuple(str(channel_names[k]) for k in keys)


def domain_from_pattern(pattern: re.Pattern, case: str) -> str | None:
    """The domain a regex finds in a case name: group `domain`, else group 1, else the match."""
    m = pattern.search(case)
    if m is None:
        return None
    if "domain" in pattern.groupindex:
        return m.group("domain")
    return m.group(1) if pattern.groups else m.group(0)


def read_domains_csv(path: Path) -> dict[str, dict[str, str]]:
    """domains.csv -> case -> {'domain', 'split' (may be ''), 'subject' (may be '')}."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in (reader.fieldnames or [])]
        if "case" not in fields or "domain" not in fields:
            raise DataError(path, f"header must have 'case' and 'domain' columns, got {fields}")
        rows: dict[str, dict[str, str]] = {}
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            case, domain, split = row.get("case", ""), row.get("domain", ""), row.get("split", "")
            if not case or not domain:
                raise DataError(path, f"line {line}: empty case or domain")
            if case in rows:
                raise DataError(path, f"line {line}: case {case} listed twice")
            if split and split not in SPLITS:
                raise DataError(path, f"line {line}: split {split!r} must be train or test")
            rows[case] = {"domain": domain, "split": split, "subject": row.get("subject", "")}
    return rows


class NNUNetReader:
    """An nnU-Net v2 raw dataset (imagesTr/labelsTr) with one domain per case."""

    test_split = ("domains.csv's split column where given, else per domain vlsa.data.splits.hash_split of the "
                  "subject (salt 'nnunet-test', data.test_fraction)")

    def __init__(self, root: str | Path, spacing: float | None = None, test_fraction: float = 0.3,
                 domain_pattern: str | None = None):
        self.root = existing_root(root)
        self.info = load_dataset_json(self.root / "dataset.json")
        self.spec = self.info.spec
        self.spacing = spacing
        self.test_fraction = test_fraction
        self.domain_pattern = domain_pattern
        self.cases = self._scan()

    # -- scanning ------------------------------------------------------------------------------
    def _scan(self) -> list[NNUNetCase]:
        ending = self.info.file_ending
        labels_dir, images_dir = self.root / "labelsTr", self.root / "imagesTr"
        for folder in (labels_dir, images_dir):
            if not folder.is_dir():
                raise DataError(folder, "folder not found")
        names = sorted(p.name[: -len(ending)] for p in labels_dir.iterdir() if p.name.endswith(ending)
                       and not p.name.startswith("."))
        if not names:
            raise DataError(labels_dir, f"no label files ending in {ending}")
        if len(names) != self.info.num_training:
            raise DataError(self.root / "dataset.json",
                            f"numTraining is {self.info.num_training} but labelsTr holds {len(names)} cases")
        known = set(names)
        for p in sorted(images_dir.iterdir()):
            m = re.fullmatch(r"(.+)_\d{4}" + re.escape(ending), p.name)
            if m and m.group(1) not in known:
                raise DataError(p, f"image of case {m.group(1)} has no label labelsTr/{m.group(1)}{ending}")
        domains = self._domain_map(names)
        return [NNUNetCase(n, domains[n]["domain"], domains[n]["subject"] or n, domains[n]["split"] or None,
                           self._channel_files(n), labels_dir / f"{n}{ending}") for n in names]

    def _channel_files(self, case: str) -> tuple[Path, ...]:
        ending, count = self.info.file_ending, len(self.info.channel_names)
        files = [self.root / "imagesTr" / f"{case}_{i:04d}{ending}" for i in range(count)]
        present = [f.is_file() for f in files]
        if all(present):
            return tuple(files)
        if not self.info.volumetric and count == 3 and present[0] and not any(present[1:]):
            return (files[0],)  # one RGB file holds the channels (nnU-Net's natural-image convention)
        i = present.index(False)
        raise DataError(files[i], f"missing channel {i} ({self.info.channel_names[i]}) of case {case}: "
                                  f"dataset.json names {count} channel(s)")

    def _domain_map(self, names: list[str]) -> dict[str, dict[str, str]]:
        if self.domain_pattern:
            try:
                pattern = re.compile(self.domain_pattern)
            except re.error as exc:
                raise ConfigError(f"config key 'data.domain_pattern': invalid regex {self.domain_pattern!r} ({exc})") from None
            out = {}
            for n in names:
                domain = domain_from_pattern(pattern, n)
                if not domain:
                    raise DataError(self.root / "labelsTr" / f"{n}{self.info.file_ending}",
                                    f"case {n} has no domain (data.domain_pattern {self.domain_pattern!r} does not match it)")
                out[n] = {"domain": domain, "split": "", "subject": ""}
            return out
        csv_path = self.root / "domains.csv"
        if not csv_path.is_file():
            raise DataError(self.root, "no domains.csv (case,domain) beside dataset.json and no data.domain_pattern: "
                                       "nnU-Net datasets carry no domains, so vlsa needs one per case")
        rows = read_domains_csv(csv_path)
        for n in names:
            if n not in rows:
                raise DataError(csv_path, f"case {n} has no domain (add a row '{n},<domain>')")
        return {n: rows[n] for n in names}

    # -- reader interface ----------------------------------------------------------------------
    def domains(self) -> list[str]:
        return sorted({c.domain for c in self.cases})

    def cases_of(self, domain: str, split: str) -> list[NNUNetCase]:
        cases = [c for c in self.cases if c.domain == domain]
        if not cases:
            raise DataError(self.root, f"empty domain: no cases for domain {domain!r}")
        free = [c.subject for c in cases if c.split is None]
        test = hash_split(free, self.test_fraction, salt="nnunet-test")
        chosen = [c for c in cases if (c.split or ("test" if c.subject in test else "train")) == split]
        if not chosen:
            raise DataError(self.root, f"empty domain: domain {domain!r} has no {split} cases")
        return chosen

    @plausible
    def samples(self, domain: str, split: str) -> Iterator[Sample]:
        for case in self.cases_of(domain, split):
            yield from self.case_samples(case)

    def case_samples(self, case: NNUNetCase) -> Iterator[Sample]:
        if self.info.volumetric:
            yield from self._volume_samples(case)
        else:
            yield self._image_sample(case)

    # -- 2D ------------------------------------------------------------------------------------
    def _image_sample(self, case: NNUNetCase) -> Sample:
        if len(case.images) == 1 and len(self.info.channel_names) == 3:
            image = load_image(case.images[0], 3)  # one RGB file, channels R, G, B
        else:
            planes = [load_image(p, 1)[0] for p in case.images]
            for p, plane in zip(case.images[1:], planes[1:]):
                if plane.shape != planes[0].shape:
                    raise DataError(p, f"size {plane.shape[::-1]} differs from channel 0's {planes[0].shape[::-1]}")
            image = np.stack(planes)
        label = load_mask(case.label)
        if label.shape != image.shape[1:]:
            raise DataError(case.label, f"label size {label.shape[::-1]} differs from image size {image.shape[1:][::-1]}")
        return Sample(image=np.ascontiguousarray(image, dtype=np.float32), label=self._check_labels(label, case.label),
                      domain=case.domain, case_id=case.subject, name=case.case)

    # -- 3D ------------------------------------------------------------------------------------
    def _read_volume(self, path: Path):
        data, affine, zooms = read_nifti(path) if str(path).lower().endswith((".nii", ".nii.gz")) else read_sitk(path)
        if data.ndim == 2:
            data, zooms = data[..., None], (*zooms[:2], 1.0)
        if data.ndim != 3:
            raise DataError(path, f"expected a 3D volume (one file per channel), got shape {data.shape}")
        return data, affine, tuple(zooms[:3]) if len(zooms) >= 3 else (*zooms, 1.0)

    def _volume_samples(self, case: NNUNetCase) -> Iterator[Sample]:
        """Slices through `volume_planes`, the preprocessing of every volumetric reader and of
        `vlsa predict`: each keeps its annotation on the original grid (`original_label`), which
        Dice/HD95 are scored against in mm of the original spacing."""
        channels, affine, zooms = [], None, None
        for p in case.images:
            data, a, z = self._read_volume(p)
            if channels and data.shape != channels[0].shape:
                raise DataError(p, f"shape {data.shape} differs from channel 0's {channels[0].shape}")
            channels.append(data)
            affine, zooms = (a, z) if affine is None else (affine, zooms)
        label, _, _ = self._read_volume(case.label)
        if label.shape != channels[0].shape:
            raise DataError(case.label, f"label shape {label.shape} differs from image shape {channels[0].shape}")
        label = self._check_labels(label, case.label)
        spacing = (float(zooms[0]), float(zooms[1]))
        norm = not self.info.normalised
        first = volume_planes(channels[0], zooms, self.spacing, label, normalise=norm)
        others = [volume_planes(vol, zooms, self.spacing, normalise=norm) for vol in channels[1:]]
        for z, ((img, lab, original, target), *more) in enumerate(zip(first, *others)):
            yield Sample(
                image=np.concatenate([img, *(m[0] for m in more)]).astype(np.float32),
                label=lab,
                domain=case.domain,
                case_id=case.subject,
                name=f"{case.case}_z{z:02d}",
                volume_id=case.case,
                slice_index=z,
                spacing=target,
                slice_thickness=float(zooms[2]),
                affine=affine,
                original_label=original,
                original_spacing=spacing,
                meta={"original_spacing": spacing, "original_shape": label.shape[:2]},
            )

    def _check_labels(self, label: np.ndarray, path: Path) -> np.ndarray:
        values = np.unique(label)
        rounded = np.rint(values)
        known = np.arange(self.spec.num_classes)
        bad = [v.item() for v, r in zip(values, rounded) if v != r or r not in known]
        if bad:
            raise DataError(path, f"label values {bad} not in dataset.json labels "
                                  f"(0..{self.spec.num_classes - 1}: {', '.join(self.spec.label_names)})")
        return np.rint(label).astype(np.int64)
