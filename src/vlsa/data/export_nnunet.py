"""Write any dataset vlsa reads in nnU-Net v2 raw format (DatasetXXX_Name), plus domains.csv.

Output (nnU-Net v2 `dataset_format.md`):
    <out>/dataset.json                    channel_names, labels, numTraining, file_ending, + `vlsa` key
    <out>/imagesTr/<case>_0000<ending>    2D: one RGB PNG (3 channels) or one grey PNG per channel
                                          3D: one float32 NIfTI (x, y, z) per channel
    <out>/labelsTr/<case><ending>         label indices 0..K-1 (uint8)
    <out>/domains.csv                     case,domain,split,subject

2D datasets become 8-bit PNGs holding the samples' intensities exactly (the readers scale 8-bit
images to [0, 1]); volumetric datasets become one NIfTI per volume (slices stacked along z in
slice order) with the samples' already-normalised intensities and an affine whose voxel sizes are
the samples' (row, col) spacing and slice thickness. The `vlsa` key of dataset.json (ignored by
nnU-Net) keeps the evaluation regions, class descriptions and the fact that intensities are
already normalised, so `NNUNetReader` reads the export back to the same samples.
Everything is written into a temporary sibling folder and renamed at the end: an interrupted or
failed export leaves nothing behind.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vlsa.data.domains import check_domains
from vlsa.data.sample import Sample
from vlsa.errors import DataError, VlsaError

DATASET_NAME = re.compile(r"Dataset\d{3}_[A-Za-z0-9_.-]+")
SPLITS = ("train", "test")
log = logging.getLogger(__name__)


@dataclass
class ExportSummary:
    out: Path
    cases: int
    domains: dict[str, int]  # domain -> cases


def as_uint8(image: np.ndarray, name: str) -> np.ndarray:
    """C x H x W float in [0, 1] holding 8-bit values -> uint8, exactly; DataError otherwise."""
    scaled = np.rint(image.astype(np.float64) * 255.0)
    back = scaled.astype(np.float32) / np.float32(255.0)  # exactly what vlsa.data.io computes from 8-bit
    if scaled.min() < 0 or scaled.max() > 255 or not np.array_equal(back, image):
        raise DataError(name, "2D intensities are not 8-bit values in [0, 1]; they cannot be written as PNG exactly")
    return scaled.astype(np.uint8)


def channel_names(spec) -> dict[str, str]:
    """nnU-Net channel names; nnU-Net z-scores every channel named neither CT nor noNorm."""
    if not spec.volumetric and spec.channels == 3:
        return {"0": "R", "1": "G", "2": "B"}
    return {str(i): "zscore" if spec.volumetric else f"channel{i}" for i in range(spec.channels)}


def slice_thickness_for(sample: Sample) -> float:
    """The slice thickness (mm) written for `sample`: its own, or, where its reader does not know it
    (`meta["spacing_known"] is False`: ACDC's h5 copy records 1.0 mm), twice its largest in-plane
    spacing if that is more. Why: nnU-Net's 2d configuration cuts volumes along the axis of largest
    spacing, so a 1.0 mm placeholder beside 1.5 mm pixels would make it cut across the short-axis
    planes; any thickness above the in-plane spacing keeps it cutting along them."""
    thickness = float(sample.slice_thickness)
    if (sample.meta or {}).get("spacing_known") is False:
        thickness = max(thickness, 2.0 * float(max(sample.spacing)))
    return thickness


def affine_for(sample: Sample) -> np.ndarray:
    """The sample's affine with voxel sizes (row spacing, col spacing, `slice_thickness_for`) in mm."""
    sizes = np.array([*sample.spacing, slice_thickness_for(sample)], dtype=np.float64)
    if sample.affine is None:
        return np.diag([*sizes, 1.0])
    affine = np.array(sample.affine, dtype=np.float64)
    norms = np.linalg.norm(affine[:3, :3], axis=0)
    affine[:3, :3] = affine[:3, :3] / np.where(norms > 0, norms, 1.0) * sizes
    return affine


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def write_image_2d(folder: Path, case: str, sample: Sample) -> None:
    """One RGB PNG for 3 channels, else one grey PNG per channel: folder/<case>_XXXX.png."""
    pixels = as_uint8(sample.image, sample.name)
    if pixels.shape[0] == 3:
        (folder / f"{case}_0000.png").write_bytes(_png_bytes(pixels.transpose(1, 2, 0)))
        return
    for c, plane in enumerate(pixels):
        (folder / f"{case}_{c:04d}.png").write_bytes(_png_bytes(plane))


def write_volume(folder: Path, case: str, slices: list[Sample]) -> None:
    """Stack a volume's slices (C x H x W each) along z -> one float32 NIfTI (H, W, Z) per channel."""
    import nibabel as nib

    slices = sorted(slices, key=lambda s: s.slice_index or 0)
    shapes = {s.image.shape for s in slices}
    if len(shapes) != 1:
        raise DataError(case, f"slices of one volume differ in shape {sorted(shapes)}")
    affine = affine_for(slices[0])
    volume = np.stack([s.image for s in slices], axis=-1).astype(np.float32)  # C x H x W x Z
    for c, channel in enumerate(volume):
        nib.save(nib.Nifti1Image(channel, affine), str(folder / f"{case}_{c:04d}.nii.gz"))


def write_label(folder: Path, case: str, label: np.ndarray, ending: str, affine: np.ndarray | None = None) -> None:
    label = label.astype(np.uint8)
    if ending == ".png":
        (folder / f"{case}.png").write_bytes(_png_bytes(label))
    else:
        import nibabel as nib

        nib.save(nib.Nifti1Image(label, affine), str(folder / f"{case}{ending}"))


def iter_cases(samples: Iterable[Sample], volumetric: bool) -> Iterator[tuple[str, list[Sample]]]:
    """Samples -> (case name, its samples): one sample per 2D case, all slices of a volume for 3D.

    Readers yield a volume's slices together; a volume seen again later is an error."""
    if not volumetric:
        for s in samples:
            yield s.name, [s]
        return
    current, group, done = None, [], set()
    for s in samples:
        if s.group != current:
            if group:
                yield current, group
                done.add(current)
            if s.group in done:
                raise DataError(s.name, f"slices of volume {s.group} are not contiguous in the reader's output")
            current, group = s.group, []
        group.append(s)
    if group:
        yield current, group


def dataset_json(spec, ending: str, num_training: int, name: str, source: str) -> dict:
    return {
        "channel_names": channel_names(spec),
        "labels": {n: i for i, n in enumerate(spec.label_names)},
        "numTraining": num_training,
        "file_ending": ending,
        "name": name,
        "description": f"exported by vlsa from {source}",
        "vlsa": {"name": spec.name, "regions": {k: list(v) for k, v in spec.regions.items()},
                 "descriptions": dict(spec.descriptions), "normalised": bool(spec.volumetric)},
    }


def write_cases(reader, out: Path, selection: list[tuple[str, str]], labels: bool = True, progress=None) -> list[list[str]]:
    """Write the (domain, split) selection's cases into out/imagesTr (+ labelsTr).

    Returns domains.csv rows [case, domain, split, subject]. `out` must exist. Raises DataError on a
    case name seen twice (nnU-Net needs unique case names) or on data PNG cannot hold exactly."""
    spec = reader.spec
    if spec.num_classes > 256:
        raise DataError(reader.root, f"{spec.num_classes} classes do not fit 8-bit label files")
    rows, seen, said = [], set(), set()
    for domain, split in selection:
        for case, samples in write_samples(reader.samples(domain, split), out, spec.volumetric, labels, seen, said):
            rows.append([case, domain, split, samples[0].case_id])
            if progress is not None:
                progress.update(1)
    return rows


def write_samples(samples: Iterable[Sample], out: Path, volumetric: bool, labels: bool = False,
                  seen: set | None = None, said: set | None = None) -> Iterator[tuple[str, list[Sample]]]:
    """Write samples as nnU-Net cases into out/imagesTr (+ labelsTr with `labels`), yielding each
    (case, its samples) once written: one PNG case per 2D sample, one NIfTI per volume. Case names
    as `iter_cases` gives them (what nnU-Net's prediction files are named after). Raises DataError
    on a case name seen twice or on data PNG cannot hold exactly. `seen` (case names) and `said`
    (warnings given) may be shared by the calls of one export."""
    ending = ".nii.gz" if volumetric else ".png"
    images, label_dir = out / "imagesTr", out / "labelsTr"
    said = set() if said is None else said
    images.mkdir(parents=True, exist_ok=True)
    if labels:
        label_dir.mkdir(parents=True, exist_ok=True)
    seen = set() if seen is None else seen
    for case, group in iter_cases(samples, volumetric):
        if case in seen:
            raise DataError(group[0].name, f"case name {case} appears twice; nnU-Net needs unique case names")
        seen.add(case)
        if volumetric:
            if "thickness" not in said and slice_thickness_for(group[0]) != group[0].slice_thickness:
                said.add("thickness")  # once per export: the reader has already warned that spacing is missing
                log.warning("%s: slice thickness unknown; written as %.2f mm (twice the in-plane spacing) so that "
                            "nnU-Net's 2d configuration cuts along the slices", case, slice_thickness_for(group[0]))
            write_volume(images, case, group)
            if labels:
                ordered = sorted(group, key=lambda s: s.slice_index or 0)
                write_label(label_dir, case, np.stack([s.label for s in ordered], axis=-1), ending,
                            affine_for(ordered[0]))
        else:
            write_image_2d(images, case, group[0])
            if labels:
                write_label(label_dir, case, group[0].label, ending)
        yield case, group


def export_nnunet(reader, out: str | Path, domains: list[str] | None = None, splits: Iterable[str] = SPLITS,
                  quiet: bool = True) -> ExportSummary:
    """Export `reader`'s (domain, split) cases to the nnU-Net v2 raw folder `out` (DatasetXXX_Name).

    Every exported case goes to imagesTr/labelsTr (nnU-Net trains on imagesTr); domains.csv keeps
    its domain, its vlsa split and its subject. Raises VlsaError if `out` is misnamed or exists.
    """
    out = Path(out)
    if not DATASET_NAME.fullmatch(out.name):
        raise VlsaError(f"{out}: an nnU-Net dataset folder must be named DatasetXXX_Name (XXX = 3 digits)")
    if out.exists():
        raise VlsaError(f"{out}: already exists (remove it or choose another DatasetXXX_Name)")
    available = reader.domains()
    domains = list(domains or available)
    check_domains(domains, available, "export", reader.root)
    splits = list(splits)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        from tqdm import tqdm

        with tqdm(desc="export nnU-Net", unit="case", disable=quiet) as bar:
            rows = write_cases(reader, tmp, [(d, s) for d in domains for s in splits], progress=bar)
        ending = ".nii.gz" if reader.spec.volumetric else ".png"
        doc = dataset_json(reader.spec, ending, len(rows), out.name.split("_", 1)[1], str(reader.root))
        (tmp / "dataset.json").write_text(json.dumps(doc, indent=2) + "\n")
        with open(tmp / "domains.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["case", "domain", "split", "subject"])
            writer.writerows(rows)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    counts: dict[str, int] = {}
    for _, domain, _, _ in rows:
        counts[domain] = counts.get(domain, 0) + 1
    return ExportSummary(out, len(rows), counts)
