"""Reader for ACDC (Bernard et al., IEEE TMI 2018; cine short-axis MRI, Dijon, Siemens 1.5 T / 3 T).

Two releases, detected from the folder:
- official NIfTI: <root>/[database/]{training,testing}/patientNNN/patientNNN_frameXX.nii.gz +
  `_gt.nii.gz` (XX = the 1-based cine frame), `Info.cfg` (`ED: 1`, `ES: 12`, `Group`, `Height`,
  `Weight`, `NbFrame`); spacing from the NIfTI header. Split: `training/` -> train; `testing/`
  -> test where its patients carry ground truth (the 2022 re-release does), else a salted hash of
  the training patients (`test_fraction`, `vlsa.data.splits.hash_split`) is the test split.
- SSL4MIS h5 copy: <root>/data/patientNNN_frame01.h5 / frame02.h5 (whole volumes, keys `image`
  float32 in [0, 1] and `label`, shape slices x H x W) and patientNNN_frameMM_slice_K.h5 (one 2D
  slice H x W each, reassembled in order of K; a gap in K is an error). frame01 = ED and frame02
  = ES (SSL4MIS renames the two annotated frames; on the real copy the LV cavity of frame01 is
  larger than frame02's in all 100 patients). Split: patients of train.list and val.list -> train
  (the engine holds out its own validation), test.list -> test; the *_slices.list files are
  per-slice copies of the same split and are not read.

Labels: ACDC's order is 1 RV, 2 MYO, 3 LV; they are mapped to vlsa's cardiac classes
(`vlsa.data.spec.CARDIAC`: 1 LV, 2 MYO, 3 RV) as they are read. One domain, `ACDC`.

Planes are rows x columns as SimpleITK and the h5 copy store them (NIfTI j x i), so both releases
give the same images, oriented as the DICOM they came from (Sunnybrook's too). Each volume goes
through `vlsa.data.resample.volume_planes` (in-plane resampling to `spacing`, per-plane percentile
normalisation) and keeps its annotation on its own grid, which metrics score against.

Spacing of the h5 copy: unknown (SSL4MIS dropped the headers). The reader says so once (a
warning), marks every sample `meta["spacing_known"] = False` (clinical volumes in mL are then
refused) and scores HD95/ASD in voxels of the original grid (in-plane pixels; a slice step counts
as 1). For training at a physical `spacing`, the h5 images are taken to have ACDC's nominal
in-plane spacing, `NOMINAL_SPACING_MM` (the middle of the release's 1.37-1.68 mm): a model then
sees ACDC and data of known spacing (Sunnybrook, 1.29-1.37 mm) at one scale, within about ±11 %
(docs/cardiac.md gives the measured LV sizes behind this choice). With `spacing=None` the h5
images stay on their native grid.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlsa.data.files import parse_index
from vlsa.data.integrity import plausible
from vlsa.data.io import existing_root, nifti_labels, read_nifti
from vlsa.data.resample import volume_planes
from vlsa.data.sample import Sample
from vlsa.data.spec import CARDIAC
from vlsa.data.splits import hash_split
from vlsa.errors import DataError

log = logging.getLogger(__name__)

DOMAIN = "ACDC"
# ACDC label -> vlsa index: 0 background, 1 RV -> 3, 2 MYO -> 2, 3 LV -> 1
ACDC_TO_VLSA = np.array([0, 3, 2, 1], dtype=np.int64)
NOMINAL_SPACING_MM = 1.5
H5_VOLUME = re.compile(r"^(patient\d+)_frame(\d+)\.h5$")
H5_SLICE = re.compile(r"^(patient\d+)_frame(\d+)_slice_(\d+)\.h5$")
H5_PHASES = {1: "ED", 2: "ES"}


@dataclass(frozen=True)
class ACDCVolume:
    """One annotated phase of one patient: an ED or ES volume."""

    patient: str
    phase: str  # "ED" | "ES"
    frame: int  # the release's frame number (NIfTI: 1-based cine frame; h5: 1 or 2)
    split: str  # "train" | "test"
    image: Path | None = None  # NIfTI frame, or h5 volume file
    label: Path | None = None  # NIfTI ground truth (h5 keeps both in one file)
    slices: tuple[Path, ...] = ()  # h5 slice files in order of K
    info: dict = field(default_factory=dict)  # Info.cfg fields: group, height, weight, nb_frames, ed_es


def read_info_cfg(path: Path) -> dict:
    """Info.cfg -> {'ed', 'es' (1-based frames), 'group', 'height', 'weight', 'nb_frames'}."""
    fields = {}
    for line in path.read_text(errors="replace").splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    ed, es = parse_index(fields.get("ED")), parse_index(fields.get("ES"))
    if ed is None or es is None:
        raise DataError(path, f"ED/ES are not frame numbers (ED: {fields.get('ED')!r}, ES: {fields.get('ES')!r})")
    if ed == es:
        raise DataError(path, f"ED and ES name the same frame {ed}")

    def number(key):
        try:
            return float(fields[key])
        except (KeyError, ValueError):
            return None

    return {"ed": ed, "es": es, "group": fields.get("Group"), "height": number("Height"),
            "weight": number("Weight"), "nb_frames": parse_index(fields.get("NbFrame"))}


def map_labels(path: Path, labels: np.ndarray) -> np.ndarray:
    """ACDC label values (1 RV, 2 MYO, 3 LV) -> vlsa cardiac indices (1 LV, 2 MYO, 3 RV)."""
    labels = nifti_labels(path, labels)
    bad = np.setdiff1d(np.unique(labels), np.arange(4))
    if bad.size:
        raise DataError(path, f"label values {bad.tolist()} outside ACDC's 0..3 (background, RV, MYO, LV)")
    return ACDC_TO_VLSA[labels]


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("image", "label") if k not in f]
            if missing:
                raise DataError(path, f"no {' or '.join(repr(k) for k in missing)} dataset (keys: {sorted(f.keys())})")
            image, label = np.asarray(f["image"][()]), np.asarray(f["label"][()])
    except OSError as exc:
        raise DataError(path, f"corrupt or truncated h5 file ({str(exc).splitlines()[0]})") from None
    if image.shape != label.shape:
        raise DataError(path, f"label shape {label.shape} differs from image shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise DataError(path, "image holds NaN or Inf values")
    return image.astype(np.float32), label


class ACDCReader:
    """ACDC, official NIfTI or SSL4MIS h5 -> 2D ED/ES slices grouped per volume (one domain)."""

    spec = CARDIAC

    def __init__(self, root: str | Path, spacing: float | None = None, test_fraction: float = 0.3,
                 nominal_spacing: float = NOMINAL_SPACING_MM):
        root = existing_root(root)
        for sub in ("database", "ACDC/database"):
            if (root / sub / "training").is_dir() or (root / sub / "testing").is_dir():
                root = root / sub
        self.root = root
        self.spacing = spacing
        self.test_fraction = test_fraction
        self.nominal_spacing = nominal_spacing
        h5_dir = self._h5_dir()
        if h5_dir is not None:
            self.layout = "h5"
            self.volumes = self._scan_h5(h5_dir)
            _warn_once(root, spacing, nominal_spacing)
        elif (root / "training").is_dir() or (root / "testing").is_dir():
            self.layout = "nifti"
            self.volumes = self._scan_nifti()
        else:
            raise DataError(root, "not an ACDC release: expected training/patientNNN/patientNNN_frameXX.nii.gz "
                                  "(official NIfTI) or data/patientNNN_frameMM.h5 (SSL4MIS)")

    # -- scanning ------------------------------------------------------------------------------
    def _h5_dir(self) -> Path | None:
        for folder in (self.root / "data", self.root):
            if folder.is_dir() and any(folder.glob("patient*.h5")):
                return folder
        return None

    def _scan_h5(self, folder: Path) -> list[ACDCVolume]:
        volumes: dict[tuple[str, int], Path] = {}
        slices: dict[tuple[str, int], dict[int, Path]] = {}
        for path in [*folder.glob("patient*.h5"), *(folder / "slices").glob("patient*.h5")]:
            if m := H5_VOLUME.match(path.name):
                volumes[(m[1], int(m[2]))] = path
            elif m := H5_SLICE.match(path.name):
                slices.setdefault((m[1], int(m[2])), {})[int(m[3])] = path
        patients = sorted({p for p, _ in [*volumes, *slices]})
        split = self._h5_split(folder.parent if folder.name == "data" else folder, patients)
        out = []
        for patient in patients:
            frames = sorted({f for p, f in [*volumes, *slices] if p == patient})
            if frames != sorted(H5_PHASES):
                raise DataError(folder, f"{patient}: h5 frames {frames}; expected frame01 (ED) and frame02 (ES)")
            for frame in frames:
                key = (patient, frame)
                ordered = ()
                if key not in volumes:
                    ks = sorted(slices[key])
                    missing = sorted(set(range(ks[0], ks[-1] + 1)) - set(ks))
                    if missing:
                        raise DataError(folder, f"{patient}_frame{frame:02d}: slice file(s) {missing} missing "
                                                f"(have {ks[0]}..{ks[-1]})")
                    ordered = tuple(slices[key][k] for k in ks)
                out.append(ACDCVolume(patient, H5_PHASES[frame], frame, split[patient], image=volumes.get(key),
                                      slices=ordered, info={"ed_es": {"ED": 1, "ES": 2}}))
        return out

    def _h5_split(self, base: Path, patients: list[str]) -> dict[str, str]:
        """patient -> split from SSL4MIS's train/val/test.list (a patient in none -> train), or by
        a salted hash of the patient id where the copy has no lists."""
        listed = {}
        for name in ("train", "val", "test"):
            path = base / f"{name}.list"
            if path.is_file():
                for line in path.read_text().split():
                    if m := re.match(r"(patient\d+)", line):
                        listed[m[1]] = "test" if name == "test" else "train"
        if listed:
            absent = sorted(p for p, s in listed.items() if s == "test" and p not in patients)
            if absent:
                raise DataError(base / "test.list", f"names patient(s) {absent[:5]} that have no h5 files")
            self.split_rule = "SSL4MIS lists: train.list + val.list -> train, test.list -> test"
            return {p: listed.get(p, "train") for p in patients}
        test = hash_split(patients, self.test_fraction, salt="acdc-test")
        self.split_rule = f"no .list files: salted hash of the patient id, test_fraction {self.test_fraction}"
        return {p: "test" if p in test else "train" for p in patients}

    def _scan_nifti(self) -> list[ACDCVolume]:
        out = []
        for folder, split in (("training", "train"), ("testing", "test")):
            base = self.root / folder
            if not base.is_dir():
                continue
            for case in sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith("patient")):
                out.extend(self._nifti_case(case, split))
        if not out:
            raise DataError(self.root, "no labelled ACDC patients (expected training/patientNNN/Info.cfg + "
                                       "patientNNN_frameXX_gt.nii.gz)")
        if not any(v.split == "test" for v in out):
            test = hash_split([v.patient for v in out], self.test_fraction, salt="acdc-test")
            out = [ACDCVolume(**{**v.__dict__, "split": "test" if v.patient in test else "train"}) for v in out]
            self.split_rule = f"testing/ has no ground truth: salted hash of training/ patients, test_fraction {self.test_fraction}"
        else:
            self.split_rule = "training/ -> train, testing/ -> test"
        return out

    def _nifti_case(self, case: Path, split: str) -> list[ACDCVolume]:
        patient = case.name
        gts = sorted(case.glob(f"{patient}_frame*_gt.nii*"))
        cfg = case / "Info.cfg"
        if not gts and split == "test":
            return []  # a testing patient without ground truth (the 2017 release)
        if not cfg.is_file():
            raise DataError(case, "no Info.cfg (ED/ES frames)")
        info = read_info_cfg(cfg)
        have = ", ".join(p.name.split("_")[1] for p in gts) or "none"
        out = []
        for phase, frame in (("ED", info["ed"]), ("ES", info["es"])):
            stem = f"{patient}_frame{frame:02d}"
            image, label = _nifti_file(case, stem), _nifti_file(case, f"{stem}_gt")
            if label is None:
                raise DataError(cfg, f"names {phase} frame {frame} but {stem}_gt.nii.gz is missing "
                                     f"(ground truth of: {have})")
            if image is None:
                raise DataError(label, f"ground truth without image {stem}.nii.gz")
            ed_es = {"ED": info["ed"], "ES": info["es"]}
            meta = {"group": info["group"], "height": info["height"], "weight": info["weight"],
                    "nb_frames": info["nb_frames"], "ed_es": ed_es, "info": cfg}
            out.append(ACDCVolume(patient, phase, frame, split, image=image, label=label, info=meta))
        return out

    # -- reading -------------------------------------------------------------------------------
    def domains(self) -> list[str]:
        return [DOMAIN]

    def patients(self) -> list[str]:
        return sorted({v.patient for v in self.volumes})

    def volumes_of(self, domain: str, split: str) -> list[ACDCVolume]:
        if domain != DOMAIN:
            raise DataError(self.root, f"empty domain: ACDC has one domain, {DOMAIN!r}, not {domain!r}")
        chosen = [v for v in self.volumes if v.split == split]
        if not chosen:
            raise DataError(self.root, f"empty domain: {DOMAIN} has no {split} patients ({self.split_rule})")
        return chosen

    @plausible
    def samples(self, domain: str, split: str) -> Iterator[Sample]:
        for volume in self.volumes_of(domain, split):
            yield from self.volume_samples(volume)

    def volume_samples(self, vol: ACDCVolume) -> Iterator[Sample]:
        """The slices of one ED/ES volume, z ascending (NIfTI k; h5 the volume's first axis / K)."""
        if self.layout == "nifti":
            image, affine, zooms = read_nifti(vol.image)
            label, _, _ = read_nifti(vol.label)
            if image.ndim != 3:
                raise DataError(vol.image, f"expected a 3D frame volume, got shape {image.shape}")
            if label.shape != image.shape:
                raise DataError(vol.label, f"ground truth shape {label.shape} differs from image shape {image.shape}")
            label = map_labels(vol.label, label)
            if not label.any():
                raise DataError(vol.info["info"], f"names {vol.phase} frame {vol.frame} but {vol.label.name} has "
                                                  "no labels (all background)")
            # rows x columns = NIfTI j x i, as SimpleITK (and the h5 copy) store planes
            image, label = image.transpose(1, 0, 2), label.transpose(1, 0, 2)
            zooms = (float(zooms[1]), float(zooms[0]), float(zooms[2]))
            affine = affine[:, [1, 0, 2, 3]]
            known, where = True, vol.label
        else:
            image, label, where = self._h5_volume(vol)
            zooms = (self.nominal_spacing, self.nominal_spacing, 1.0)
            affine, known = None, False
        yield from self._planes(vol, image, label, zooms, affine, known, where)

    def _h5_volume(self, vol: ACDCVolume):
        if vol.image is not None:
            image, label = _read_h5(vol.image)
            if image.ndim != 3:
                raise DataError(vol.image, f"expected a slices x H x W volume, got shape {image.shape}")
            return image.transpose(1, 2, 0), map_labels(vol.image, label).transpose(1, 2, 0), vol.image
        planes = [_read_h5(p) for p in vol.slices]
        for p, (img, _) in zip(vol.slices, planes):
            if img.ndim != 2 or img.shape != planes[0][0].shape:
                raise DataError(p, f"slice shape {img.shape} differs from {vol.slices[0].name}'s {planes[0][0].shape}")
        image = np.stack([img for img, _ in planes], axis=-1)
        label = np.stack([map_labels(p, lab) for p, (_, lab) in zip(vol.slices, planes)], axis=-1)
        return image, label, list(vol.slices)

    def _planes(self, vol, image, label, zooms, affine, known, where) -> Iterator[Sample]:
        native = (float(zooms[0]), float(zooms[1]))
        meta = {key: value for key, value in vol.info.items() if key != "info"}
        meta.update({"phase": vol.phase, "frame": vol.frame, "spacing_known": known, "layout": self.layout,
                     "original_shape": image.shape[:2]})
        meta["original_spacing"] = native if known else None
        if not known:
            meta["assumed_spacing"] = self.nominal_spacing if self.spacing is not None else None
        for z, (img, lab, original, target) in enumerate(volume_planes(image, zooms, self.spacing, label)):
            if not known:
                # scored in voxels of the stored grid: distances in pixels, never in invented mm
                original = np.ascontiguousarray(label[:, :, z]).astype(np.uint8)
                target = target if self.spacing is not None else (1.0, 1.0)
            yield Sample(
                image=img, label=lab, domain=DOMAIN, case_id=vol.patient,
                name=f"{vol.patient}_{vol.phase}_z{z:02d}", volume_id=f"{vol.patient}_{vol.phase}", slice_index=z,
                spacing=target, slice_thickness=float(zooms[2]) if known else 1.0, affine=affine,
                original_label=original, original_spacing=native if known else (1.0, 1.0),
                meta={**meta, "source": str(where[z] if isinstance(where, list) else where)})

    def summary(self) -> str:
        """One line for `vlsa verify`: patients, annotated phases, split and spacing."""
        n_train = len({v.patient for v in self.volumes if v.split == "train"})
        n_test = len({v.patient for v in self.volumes if v.split == "test"})
        release = "SSL4MIS h5" if self.layout == "h5" else "official NIfTI"
        spacing = ("voxel spacing unknown (HD95/ASD in voxels, no mL)" if self.layout == "h5"
                   else "spacing from the NIfTI headers")
        return (f"ACDC ({release}): {len(self.patients())} patients, {len(self.volumes)} annotated phases (ED + ES "
                f"volumes); train {n_train} / test {n_test} patients ({self.split_rule}); {spacing}")


_WARNED: set[tuple[str, float | None]] = set()


def _warn_once(root: Path, spacing: float | None, nominal: float) -> None:
    # once per dataset and process: training and evaluation open the reader more than once
    key = (str(root.resolve()), spacing)
    if key in _WARNED:
        return
    _WARNED.add(key)
    log.warning("%s: ACDC h5 (SSL4MIS) stores no voxel spacing: HD95/ASD are in voxels, volumes in mL are refused%s",
                root, f"; in-plane resampling to {spacing} mm assumes ACDC's nominal {nominal} mm"
                if spacing is not None else "")


def _nifti_file(folder: Path, stem: str) -> Path | None:
    for suffix in (".nii.gz", ".nii"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None
