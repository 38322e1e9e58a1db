"""Reader for Drishti-GS1 (Sivaswamy et al., ISBI 2014 / JMSI 2015; Aravind Eye Hospital, Madurai)
as released: whole fundus photographs, 4-expert soft maps of the optic disc and cup, and the four
experts' cup-to-disc ratios.

Layout (a `Drishti-GS1_files/` top folder, once or twice nested as unzipping leaves it, is accepted):
    <root>/{Training,Test}/Images/drishtiGS_NNN.{png,jpg}
    <root>/{Training,Test}/GT/drishtiGS_NNN/SoftMap/drishtiGS_NNN_{OD,cup}segSoftmap.png
    <root>/{Training,Test}/GT/drishtiGS_NNN/drishtiGS_NNN_cdrValues.txt   (4 numbers, one line)
    (the official Test ground truth is `Test/Test_GT/` instead of `Test/GT/`; both are read)
One domain, `DrishtiGS1` (one hospital, one camera). Its official split is the domain split:
Training -> `train` (the engine holds out validation cases from it), Test -> `test`.

Labels (`vlsa.data.spec.FUNDUS`: 0 background, 1 rim, 2 cup; disc = rim ∪ cup). A soft map's value
counts the experts (of 4) who marked the pixel, scaled to 8 bits: round(n x 255 / 4) = 0, 64, 128,
191, 255. A pixel belongs to a structure when at least `agreement` experts marked it (default 2,
i.e. soft value >= 128, the usual threshold); the count is recovered as round(value x 4 / 255), so
191 (3 x 63.75 rounded) and 64 decode as 3 and 1. A cup pixel outside the disc (13 pixels of the
101 images at agreement 1, none at 2 or more) counts as disc: the cup lies inside the disc
anatomically, so those pixels are a contouring slip of the disc.

Whole photos -> disc-centred ROIs (`vlsa.roi`): each sample is the square of side
round(`roi_scale` x D) centred on the disc's bounding box, D = the longer extent of the disc marked
by >= 2 experts (the reference disc, whatever `agreement` is: the crop box, and so the labels of
every agreement level, stay pixel-aligned), padded with 0 where it leaves the photo. The default
2.5 puts the disc at 0.40 of the side, as in the DoFE benchmark's crops (docs/fundus.md has the
measurements). `sample.meta`: `roi_box` (top, left, bottom, right in photo pixels, may pass the
edges), `photo_shape` (H, W), `cdr_experts` (the 4 experts' CDRs), `cdr_mean`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vlsa import roi
from vlsa.data.files import data_files
from vlsa.data.integrity import check_grey_levels, plausible
from vlsa.data.io import existing_root, is_image, load_mask, load_pair, stem
from vlsa.data.sample import Sample
from vlsa.data.spec import FUNDUS
from vlsa.errors import DataError

DOMAIN = "DrishtiGS1"
SPLITS = {"train": "Training", "test": "Test"}
TOP_FOLDER = "Drishti-GS1_files"
EXPERTS = 4
ROI_AGREEMENT = 2  # the reference disc the ROI is placed on (majority of the 4 experts)
DEFAULT_ROI_SCALE = 2.5
SOFT_LEVELS = {round(n * 255 / EXPERTS): f"{n} of {EXPERTS} experts" for n in range(EXPERTS + 1)}


def soft_level(agreement: int) -> int:
    """The soft-map value of `agreement` experts (1..4 -> 64, 128, 191, 255)."""
    return round(agreement * 255 / EXPERTS)


# soft value (0..255) -> experts: a table, since the maps of a whole photo are ~10^6 pixels each
_EXPERTS_OF_VALUE = np.rint(np.arange(256) * EXPERTS / 255).astype(np.int8)


def expert_count(soft: np.ndarray) -> np.ndarray:
    """Soft-map values (H x W, 0..255) -> the number of experts who marked each pixel (H x W int8)."""
    return _EXPERTS_OF_VALUE[np.clip(soft, 0, 255)]


def check_soft_map(path: Path, soft: np.ndarray) -> None:
    """Refuse a soft map whose values are not the expert levels 0, 64, 128, 191, 255 (within 8, e.g.
    after a colour-profile conversion): a binary 0/1 map, a map resized with interpolation, a
    probability map. Raises DataError naming the file and the values found."""
    if soft.size and 0 <= soft.min() and soft.max() <= 255:
        found = np.flatnonzero(np.bincount(soft.ravel(), minlength=256))
        if set(found.tolist()) <= set(SOFT_LEVELS):
            return  # exact levels: the common case, without the per-pixel distance check
    check_grey_levels(path, soft, SOFT_LEVELS, "Drishti-GS1 soft-map", FUNDUS.num_classes, tolerance=8, max_off=0.0)


def decode_soft_maps(disc_soft: np.ndarray, cup_soft: np.ndarray, agreement: int) -> np.ndarray:
    """Disc and cup soft maps (H x W) -> label indices (H x W int64: 0 bg, 1 rim, 2 cup) at
    `agreement` (1..4) experts; a cup pixel outside the disc counts as disc (module docstring)."""
    disc = expert_count(disc_soft) >= agreement
    cup = expert_count(cup_soft) >= agreement
    label = np.zeros(disc.shape, dtype=np.int64)
    label[disc | cup] = 1
    label[cup] = 2
    return label


def read_cdr_values(path: Path) -> list[float]:
    """A `_cdrValues.txt` file -> the 4 experts' cup-to-disc ratios (spaces, tabs or commas between).

    Raises DataError naming the file when it is missing or does not hold exactly 4 numbers in [0, 1].
    """
    if not path.is_file():
        raise DataError(path, "cdrValues file not found (the 4 experts' cup-to-disc ratios)")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    fields = text.replace(",", " ").split()
    try:
        values = [float(f) for f in fields]
    except ValueError:
        values = []
    if len(values) != EXPERTS or not all(math.isfinite(v) for v in values):
        shown = text.strip()[:60].replace("\n", " ")
        raise DataError(path, f"expected {EXPERTS} cup-to-disc ratios (one per expert) on one line, got {shown!r}")
    if not all(0.0 <= v <= 1.0 for v in values):
        raise DataError(path, f"cup-to-disc ratios {values} outside [0, 1]")
    return values


def find_release_root(root: Path) -> Path:
    """The folder holding Training/ and Test/: `root` itself or its `Drishti-GS1_files/` (once or
    twice nested, as unzipping the release into a folder of that name leaves it)."""
    for candidate in (root, root / TOP_FOLDER, root / TOP_FOLDER / TOP_FOLDER):
        if any((candidate / folder).is_dir() for folder in SPLITS.values()):
            return candidate
    raise DataError(root, f"no Training/ or Test/ folder (expected the Drishti-GS1 layout "
                          f"[{TOP_FOLDER}/]{{Training,Test}}/Images/drishtiGS_NNN.jpg (or .png) + GT/)")


class DrishtiReader:
    """Drishti-GS1 whole photographs -> disc-centred ROIs with labels at an expert agreement level.

    `label_rule` and `roi_rule` state the rules in words (evaluation writes `label_rule` into
    metrics.json).
    """

    spec = FUNDUS

    def __init__(self, root: str | Path, agreement: int = 2, roi_scale: float = DEFAULT_ROI_SCALE):
        if not (isinstance(agreement, int) and 1 <= agreement <= EXPERTS):
            raise DataError(None, f"Drishti-GS1 agreement must be 1..{EXPERTS} experts, got {agreement!r}")
        if not roi_scale > 1:
            raise DataError(None, f"Drishti-GS1 ROI scale must be > 1 (x the disc diameter), got {roi_scale!r}")
        self.root = find_release_root(existing_root(root))
        self.agreement = agreement
        self.roi_scale = float(roi_scale)
        self.label_rule = (f"disc/cup: pixels marked by >= {agreement} of {EXPERTS} experts "
                           f"(soft map >= {soft_level(agreement)}); cup pixels outside the disc count as disc")
        self.roi_rule = (f"disc-centred square ROI: side {self.roi_scale:g} x the disc diameter (longer extent of "
                         f"the >= {ROI_AGREEMENT}-expert disc), centred on its bounding box, padded with 0")

    def domains(self) -> list[str]:
        return [DOMAIN]

    def _split_dir(self, domain: str, split: str) -> Path:
        if domain != DOMAIN:
            raise DataError(self.root, f"unknown Drishti-GS1 domain {domain!r} (the one domain is {DOMAIN})")
        if split not in SPLITS:
            raise DataError(self.root, f"unknown split {split!r} (train = Training, test = Test)")
        return self.root / SPLITS[split]

    def _gt_dir(self, split_dir: Path) -> Path:
        for name in ("GT", f"{split_dir.name}_GT"):
            if (split_dir / name).is_dir():
                return split_dir / name
        raise DataError(split_dir, f"no ground-truth folder GT/ (or {split_dir.name}_GT/)")

    def cases(self, domain: str, split: str) -> list[tuple[Path, Path]]:
        """(image, case ground-truth folder) of every image of a split, sorted by name."""
        split_dir = self._split_dir(domain, split)
        image_dir = split_dir / "Images"
        if not image_dir.is_dir():
            raise DataError(image_dir, "folder not found")
        images = [p for p in data_files(image_dir) if is_image(p)]
        if not images:
            raise DataError(image_dir, f"empty domain: no images for {domain}/{split}")
        gt = self._gt_dir(split_dir)
        return [(image, gt / stem(image)) for image in images]

    @plausible
    def samples(self, domain: str, split: str) -> Iterator[Sample]:
        for image, case_dir in self.cases(domain, split):
            yield self._sample(image, case_dir, domain)

    @plausible
    def photos(self, domain: str, split: str) -> Iterator[Sample]:
        """The whole photographs of a split, whatever `roi_scale` is: image C x H x W and label H x W
        on the photo's own grid, `meta["disc_box"]` the reference disc's bounding box (top, left,
        bottom, right), `meta["roi_box"]` the ROI `samples` would cut. For the whole-photo disc
        locator and evaluation at the photo's resolution."""
        for image, case_dir in self.cases(domain, split):
            yield self._sample(image, case_dir, domain, whole=True)

    def _sample(self, image_path: Path, case_dir: Path, domain: str, whole: bool = False) -> Sample:
        name = stem(image_path)
        disc_path, cup_path = (soft_map_path(case_dir, name, kind) for kind in ("OD", "cup"))
        cdrs = read_cdr_values(case_dir / f"{name}_cdrValues.txt")
        image, disc_soft = load_pair(image_path, disc_path, channels=3)
        cup_soft = load_mask(cup_path)
        if cup_soft.shape != disc_soft.shape:
            h, w = image.shape[1:]
            raise DataError(cup_path, f"soft map size {cup_soft.shape[1]}x{cup_soft.shape[0]} differs from image "
                                      f"size {w}x{h} ({image_path.name})")
        check_soft_map(disc_path, disc_soft)
        check_soft_map(cup_path, cup_soft)
        reference = expert_count(disc_soft) >= ROI_AGREEMENT
        if not reference.any():
            raise DataError(disc_path, f"no pixel is marked as disc by {ROI_AGREEMENT} or more experts: "
                                       "cannot place the disc-centred ROI")
        box = roi.disc_box(reference, self.roi_scale)
        label = decode_soft_maps(disc_soft, cup_soft, self.agreement)
        meta = {"roi_box": list(box), "photo_shape": list(image.shape[1:]), "cdr_experts": cdrs,
                "cdr_mean": float(np.mean(cdrs)), "agreement": self.agreement}
        if whole:
            meta["disc_box"] = list(roi.bounding_box(reference))
            return Sample(image=image, label=label, domain=domain, case_id=name, name=name, meta=meta)
        return Sample(image=roi.crop(image, box), label=roi.crop(label, box), domain=domain, case_id=name,
                      name=name, meta=meta)


def soft_map_path(case_dir: Path, name: str, kind: str) -> Path:
    """`<case>/SoftMap/<name>_{OD,cup}segSoftmap.png`, its file name matched case-insensitively.
    Raises DataError naming the expected file when it is missing."""
    expected = case_dir / "SoftMap" / f"{name}_{kind}segSoftmap.png"
    if expected.is_file():
        return expected
    if expected.parent.is_dir():
        for path in expected.parent.iterdir():
            if path.name.lower() == expected.name.lower():
                return path
    what = "optic disc" if kind == "OD" else "optic cup"
    raise DataError(expected, f"{what} soft map not found (ground truth of image {name})")
