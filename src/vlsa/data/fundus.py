"""Readers for retinal fundus optic disc / cup segmentation, in the layouts as distributed.

Label index view used by the engine (softmax over mutually exclusive indices):
    0 background, 1 disc rim (disc minus cup), 2 cup.
Two-channel view used by evaluation and by most papers (overlapping structures):
    disc = rim ∪ cup (indices 1, 2), cup (index 2); see `two_channel`.

DoFE layout (Drishti-GS, RIM-ONE-r3, REFUGE-train, REFUGE-val as Domain1..Domain4):
    <root>/Domain{1..4}/{train,test}/ROIs/{image,mask}/<name>.png
    mask grey levels: 255 background, 128 rim, 0 cup; decoded with the public loaders'
    thresholds (>200 background, 51..200 rim, <=50 cup) so JPEG-ish edges still decode.

RIGA+ layout (BinRushed, Magrabia, MESSIDOR_Base1/2/3):
    <root>/<Domain>_train.csv, <Domain>_test.csv (or one <Domain>.csv) with header `image,mask`
    and paths relative to <root> (a merged <Domain>.csv is split by image with the salted hash
    used by every reader, `test_fraction` to test, so no image is in both splits); mask grey levels 0 background, 128 cup, 255 rim
    (decoded <64 background, 64..191 cup, >=192 rim).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vlsa.data.files import data_files, find_mask, read_csv
from vlsa.data.integrity import check_grey_levels, plausible
from vlsa.data.io import existing_root, is_image, load_pair, stem
from vlsa.data.sample import Sample
from vlsa.data.spec import FUNDUS
from vlsa.data.splits import hash_split
from vlsa.errors import DataError

RIGA_DOMAINS = ("BinRushed", "Magrabia", "MESSIDOR_Base1", "MESSIDOR_Base2", "MESSIDOR_Base3")


def decode_dofe_mask(grey: np.ndarray) -> np.ndarray:
    """DoFE grey levels (255 bg, 128 rim, 0 cup) -> label indices (0 bg, 1 rim, 2 cup)."""
    label = np.zeros(grey.shape, dtype=np.int64)
    label[(grey > 50) & (grey <= 200)] = 1
    label[grey <= 50] = 2
    return label


def encode_dofe_mask(label: np.ndarray) -> np.ndarray:
    """Label indices -> DoFE grey levels (inverse of `decode_dofe_mask`)."""
    return np.array([255, 128, 0], dtype=np.uint8)[label]


def decode_riga_mask(grey: np.ndarray) -> np.ndarray:
    """RIGA+ grey levels (0 bg, 128 cup, 255 rim) -> label indices (0 bg, 1 rim, 2 cup)."""
    label = np.zeros(grey.shape, dtype=np.int64)
    label[grey >= 192] = 1
    label[(grey >= 64) & (grey < 192)] = 2
    return label


def encode_riga_mask(label: np.ndarray) -> np.ndarray:
    return np.array([0, 255, 128], dtype=np.uint8)[label]


def two_channel(label: np.ndarray) -> np.ndarray:
    """Index view (H x W) -> overlapping (disc, cup) binary view (2 x H x W)."""
    return np.stack([label >= 1, label == 2]).astype(np.uint8)


# the grey levels each decoder expects (level -> class), checked before decoding
ENCODINGS = {
    decode_dofe_mask: ("DoFE", {255: "background", 128: "rim", 0: "cup"}),
    decode_riga_mask: ("RIGA+", {0: "background", 128: "cup", 255: "rim"}),
}


def _fundus_sample(image_path: Path, mask_path: Path, domain: str, decode) -> Sample:
    image, grey = load_pair(image_path, mask_path, channels=3)
    dataset, levels = ENCODINGS[decode]
    check_grey_levels(mask_path, grey, levels, dataset, FUNDUS.num_classes)
    name = stem(image_path)
    return Sample(
        image=image,
        label=decode(grey),
        domain=domain,
        case_id=name,
        name=name,
    )


class DoFEReader:
    """Fundus OD/OC in the DoFE 4-domain layout."""

    spec = FUNDUS
    test_split = "as distributed: each site's train/ and test/ folders"

    def __init__(self, root: str | Path):
        self.root = existing_root(root)

    def domains(self) -> list[str]:
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name.startswith("Domain"))
        if not found:
            raise DataError(self.root, "no Domain* folders (expected DoFE layout DomainK/{train,test}/ROIs/...)")
        return found

    def pairs(self, domain: str, split: str) -> list[tuple[Path, Path]]:
        base = self.root / domain / split / "ROIs"
        image_dir, mask_dir = base / "image", base / "mask"
        if not base.parent.is_dir():  # a domain with test cases only is a target-only domain, not an error
            raise DataError(base.parent, f"empty domain: {domain} has no {split} split")
        if not image_dir.is_dir():
            raise DataError(image_dir, "folder not found")
        images = [p for p in data_files(image_dir) if is_image(p)]
        if not images:
            raise DataError(image_dir, f"empty domain: no images for {domain}/{split}")
        pairs = []
        for image in images:
            pairs.append((image, find_mask(mask_dir, image)))
        return pairs

    @plausible
    def samples(self, domain: str, split: str) -> Iterator[Sample]:
        for image, mask in self.pairs(domain, split):
            yield _fundus_sample(image, mask, domain, decode_dofe_mask)


class RigaReader:
    """Fundus OD/OC in the RIGA+ layout (csv lists of image,mask paths relative to the root)."""

    spec = FUNDUS
    test_split = "per site, vlsa.data.splits.hash_split of the case (salt 'riga-test', data.test_fraction)"

    def __init__(self, root: str | Path, test_fraction: float = 0.3):
        self.root = existing_root(root)
        self.test_fraction = test_fraction

    def domains(self) -> list[str]:
        found = [d for d in RIGA_DOMAINS if self._lists(d)]
        if not found:
            raise DataError(self.root, "no RIGA+ csv lists (<Domain>_train.csv / <Domain>_test.csv)")
        return found

    def _lists(self, domain: str) -> dict[str, Path]:
        lists = {}
        for split in ("train", "test"):
            path = self.root / f"{domain}_{split}.csv"
            if path.is_file():
                lists[split] = path
        merged = self.root / f"{domain}.csv"
        if merged.is_file():
            # a single list holds the whole domain: used for whichever split has no list of its own
            lists.setdefault("train", merged)
            lists.setdefault("test", merged)
        return lists

    def pairs(self, domain: str, split: str) -> list[tuple[Path, Path]]:
        lists = self._lists(domain)
        if split not in lists:
            raise DataError(self.root / f"{domain}_{split}.csv", "csv list not found")
        path = lists[split]
        pairs = self._read_list(path, domain, split)
        if path.name == f"{domain}.csv":
            pairs = self._split_merged(pairs, lists, domain, split)
            if not pairs:
                raise DataError(path, f"empty domain: no {split} images for {domain} after splitting the merged list")
        return pairs

    def _split_merged(self, pairs, lists, domain: str, split: str):
        """One <Domain>.csv holds train and test: never the same images in both. With the other
        split's own list, this split is the merged list minus it; otherwise whole cases (images)
        go to test by the salted hash used by every reader (`test_fraction`)."""
        other = "test" if split == "train" else "train"
        if lists[other].name != lists[split].name:
            taken = {image for image, _ in self._read_list(lists[other], domain, other)}
            return [(i, m) for i, m in pairs if i not in taken]
        test = hash_split([_riga_case(i) for i, _ in pairs], self.test_fraction, salt="riga-test")
        return [(i, m) for i, m in pairs if (_riga_case(i) in test) == (split == "test")]

    def _read_list(self, path: Path, domain: str, split: str) -> list[tuple[Path, Path]]:
        header, rows = read_csv(path)
        if not {"image", "mask"} <= set(header):
            raise DataError(path, "csv header must have columns 'image,mask'")
        pairs = [(self.root / row["image"], self.root / row["mask"]) for row in rows]
        if not pairs:
            raise DataError(path, f"empty domain: no rows for {domain}/{split}")
        for image, mask in pairs:
            if not image.is_file():
                raise DataError(image, f"listed in {path.name} but not found")
            if not mask.is_file():
                raise DataError(mask, f"mask listed in {path.name} but not found")
        return pairs

    @plausible
    def samples(self, domain: str, split: str) -> Iterator[Sample]:
        for image, mask in self.pairs(domain, split):
            sample = _fundus_sample(image, mask, domain, decode_riga_mask)
            sample.name = sample.case_id = _riga_case(image)
            yield sample


def _riga_case(image: Path) -> str:
    # RIGA names repeat across sub-folders (image1.tif in BinRushed1 and BinRushed2)
    return f"{image.parent.name}_{stem(image)}"
