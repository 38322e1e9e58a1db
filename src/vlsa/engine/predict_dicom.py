"""`vlsa predict` on DICOM: a series in (a folder of its files, or one file), read by
`vlsa.data.dicom.read_dicom` (slices along the normal, cine phases by temporal position / trigger
time, spacing and orientation from the header, rescale applied); out, per cine phase:

- `<name>.nii.gz` (one phase) or `<name>_phaseNN.nii.gz` (NN from 01, in temporal order): the
  label volume W x H x Z (columns, rows, slices) with the series' affine (RAS+ mm, as dcm2niix
  writes the image), so it lies on the images in any NIfTI viewer;
- with `--format dicom-seg` also `<name>[_phaseNN].seg.dcm`: a DICOM Segmentation referencing that
  phase's source images (`vlsa.data.dicom_seg`);
- for a cardiac model, `clinical.csv` / `clinical.json` in the output folder: one row per series
  (the columns of `vlsa.engine.clinical_indices`, `_true` empty), ED and ES being the phases of
  largest and smallest predicted LV volume (`vlsa.clinical.choose_ed_es`); a single-phase series
  has no ED/ES and its indices are refused (one warning line). A 4D (x, y, z, t) NIfTI cine gets
  the same row (`nifti_cine_indices`).

Slices are resampled to the model's `data.spacing` and back, and post-processed per 3D phase
volume, exactly as `Predictor.predict_volume` treats NIfTI input.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlsa.clinical import CARDIAC_INDICES, LV, cardiac_indices, choose_ed_es, lv_slices_included
from vlsa.data.dicom import DicomVolume, list_series, read_dicom, read_header
from vlsa.data.io import is_image, is_nifti, stem
from vlsa.data.resample import volume_planes
from vlsa.engine.clinical_indices import COLUMNS, SubjectIndices, clinical_csv, is_cardiac
from vlsa.errors import DataError
from vlsa.utils.atomic import write_json, write_text

log = logging.getLogger(__name__)

FORMATS = ("nifti", "dicom-seg")


def is_dicom_input(path: str | Path) -> bool:
    """A DICOM file (by its header, whatever its name), or a folder holding DICOM images and no
    PNG/JPEG/NIfTI files (those are predicted as images)."""
    p = Path(path)
    if p.is_file():
        return not (is_image(p) or is_nifti(p)) and read_header(p) is not None
    if p.is_dir():
        files = [f for f in p.iterdir() if f.is_file()]
        return not any(is_image(f) or is_nifti(f) for f in files) and bool(list_series(p))
    return False


def split_inputs(inputs: list[str | Path]) -> tuple[list[Path], list[str | Path]]:
    """(DICOM series inputs, the other inputs) in the order given."""
    dicom, other = [], []
    for raw in inputs:
        if is_dicom_input(raw):
            dicom.append(Path(raw))
        else:
            other.append(raw)
    return dicom, other


def series_name(path: Path) -> str:
    """Output name of a series: its folder's name, or the file's name without suffix."""
    return path.name if path.is_dir() else stem(path)


@dataclass
class SeriesPrediction:
    """One series predicted: the volume as read and its labels P x Z x H x W uint8 (class indices)."""

    name: str
    volume: DicomVolume
    labels: np.ndarray
    shown: list  # a few (image, label) planes for overlays

    def phase_name(self, p: int) -> str:
        return self.name if self.volume.phases == 1 else f"{self.name}_phase{p + 1:02d}"


def predict_series(predictor, source: Path, series_uid: str | None = None) -> SeriesPrediction:
    """Read one series and predict every phase (each phase one 3D volume for post-processing).
    Raises DataError for a model that does not take greyscale volumes."""
    if predictor.spec.channels != 1 or not predictor.spec.volumetric:
        raise DataError(source, "this model segments RGB photographs, not DICOM MR/CT series")
    vol = read_dicom(source, series_uid=series_uid)
    slice_mm, row_mm, col_mm = vol.spacing
    out = np.zeros(vol.pixels.shape, dtype=np.uint8)  # P x Z x H x W
    shown = []
    for p in range(vol.phases):
        planes = [img for img, _, _, _ in volume_planes(vol.planes(p), (row_mm, col_mm, slice_mm),
                                                        predictor.config.data.spacing)]
        own, back = predictor._labels(planes, original=vol.pixels.shape[2:], volumes=1)
        out[p] = np.stack(back)
        if p == 0:
            shown = list(zip(planes, own))
    return SeriesPrediction(series_name(source), vol, out, shown)


def nifti_labels(labels: np.ndarray) -> np.ndarray:
    """Z x H x W labels of one phase -> the W x H x Z array `DicomVolume.affine` maps."""
    return np.ascontiguousarray(np.asarray(labels).transpose(2, 1, 0))


def write_phase_nifti(path: Path, labels: np.ndarray, affine: np.ndarray) -> Path:
    """The NIfTI of one phase: uint8 labels, qform and sform = the series' affine (code 1, scanner)."""
    import nibabel as nib

    from vlsa.data.io import write_nifti

    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    header.set_xyzt_units("mm")
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    write_nifti(path, labels.astype(np.uint8), affine, header=header)
    return path


def cine_indices(name: str, labels: np.ndarray, spacing, domain: str = "", trigger_times=None,
                 lv_ring: float = 0.0) -> SubjectIndices:
    """Clinical indices of a predicted cine series, ED/ES = the phases of largest/smallest
    predicted LV volume (`choose_ed_es`). labels: P x Z x H x W class indices; spacing: (slice,
    row, col) mm; lv_ring: `eval.lv_slice_ring`, the slice-inclusion convention applied to every
    phase before ED/ES are chosen (0: off; the written label maps are not changed). A single phase
    or an LV absent from every phase gives no index (one warning)."""
    empty = {k: math.nan for k in CARDIAC_INDICES}
    if labels.shape[0] < 2:
        why = "one phase: ED and ES need a cine series of at least two phases"
        log.warning("%s: %s; no clinical indices", name, why)
        return SubjectIndices(name, domain, empty, refused={k: why for k in CARDIAC_INDICES})
    predicted = any(np.count_nonzero(phase == LV) for phase in labels)
    labels = np.stack([lv_slices_included(phase, lv_ring) for phase in labels]) if lv_ring > 0 else labels
    lv = [int(np.count_nonzero(phase == LV)) for phase in labels]
    try:
        ed, es = choose_ed_es(lv)
    except ValueError:
        # say which: a model that found no LV, or LV the slice-inclusion rule took from every slice
        # (no slice's LV ringed by myocardium, e.g. an undertrained model's MYO)
        why = ("no LV predicted in any phase" if not predicted else
               f"the predicted LV was dropped from every slice by the slice-inclusion rule (eval.lv_slice_ring "
               f"{lv_ring}: no slice's LV is ringed by myocardium on that much of its border; the label maps keep it)")
        log.warning("%s: %s; no clinical indices", name, why)
        return SubjectIndices(name, domain, empty, refused={k: why for k in CARDIAC_INDICES})
    res = cardiac_indices(labels[ed], labels[es], tuple(float(v) for v in spacing), rv=True)
    phases = {"rule": "ED/ES = phases of largest/smallest predicted LV volume", "ed_phase": ed + 1, "es_phase": es + 1,
              "lv_voxels_per_phase": lv, "spacing_mm": [float(v) for v in spacing], "lv_slice_ring": lv_ring}
    if trigger_times is not None:
        phases.update(ed_trigger_ms=trigger_times[ed], es_trigger_ms=trigger_times[es])
    return SubjectIndices(name, domain, dict(res.values), refused=res.refused, phases=phases)


def nifti_cine_indices(name: str, labels: np.ndarray, zooms, lv_ring: float = 0.0) -> SubjectIndices:
    """`cine_indices` of a predicted x, y, z, t NIfTI label volume (a 4D cine, e.g. M&Ms' _sa.nii.gz)."""
    return cine_indices(name, np.asarray(labels).transpose(3, 2, 1, 0), (zooms[2], zooms[1], zooms[0]), lv_ring=lv_ring)


def write_clinical(output: Path, subjects: list[SubjectIndices], quiet: bool = False) -> None:
    """clinical.csv / clinical.json of `vlsa predict` (nothing without a cine series)."""
    if not subjects:
        return
    write_text(output / "clinical.csv", clinical_csv(subjects))
    write_json(output / "clinical.json", {"columns": COLUMNS, "subjects": [s.record() for s in subjects]})
    if not quiet:
        for s in subjects:
            print(summary_line(s))


def predict_dicom(predictor, inputs: list[Path], output: Path, fmt: str = "nifti", lut: np.ndarray | None = None,
                  quiet: bool = False, series_uid: str | None = None, overlay: bool = False,
                  taken: set[str] | None = None, subjects: list[SubjectIndices] | None = None) -> list[Path]:
    """Predict each DICOM series in `inputs` into `output` (see the module docstring); -> the label
    files written (NIfTI, and SEGs with fmt='dicom-seg'). lut: class index -> value written in the
    NIfTI (`--values`); SEG segments are always the class indices. taken: output names already
    used by other inputs. subjects: where a cardiac model's clinical indices are collected (None:
    written here as clinical.csv/json). Raises DataError for an unknown format or two series with
    one name."""
    from vlsa.data.dicom_seg import write_seg

    if fmt not in FORMATS:
        raise DataError(None, f"--format {fmt!r}: choose {' or '.join(FORMATS)}")
    names = set(taken or ())
    for path in inputs:
        if series_name(path) in names:
            raise DataError(path, f"another input also writes the output {series_name(path)!r}; "
                                  "predict them into separate --output folders")
        names.add(series_name(path))
    lut = np.arange(predictor.spec.num_classes, dtype=np.uint8) if lut is None else lut
    written, collected = [], [] if subjects is None else subjects
    for path in inputs:
        pred = predict_series(predictor, path, series_uid)
        vol = pred.volume
        headers = {Path(ds.filename).resolve(): ds for ds in vol.headers}
        for p in range(vol.phases):
            name = pred.phase_name(p)
            written.append(write_phase_nifti(output / f"{name}.nii.gz", nifti_labels(lut[pred.labels[p]]), vol.affine))
            if fmt == "dicom-seg":
                sources = [headers[Path(f).resolve()] for f, _ in vol.sources[p]]
                written.append(write_seg(output / f"{name}.seg.dcm", sources, pred.labels[p],
                                         predictor.spec.label_names, description=f"vlsa {name}"))
        if overlay:
            _overlay(output / f"{pred.name}_overlay.png", pred.shown, predictor.spec)
        if is_cardiac(predictor.spec):
            domain = str(vol.headers[0].get("Manufacturer", "")) if vol.headers else ""
            collected.append(cine_indices(pred.name, pred.labels, vol.spacing, domain, vol.trigger_times,
                                          predictor.config.eval.lv_slice_ring))
    if subjects is None:
        write_clinical(output, collected, quiet)
    return written


def summary_line(s: SubjectIndices) -> str:
    """`SCD0000101: ED phase 2, ES phase 1; LV EDV 180.3 mL, ESV 120.1 mL, EF 33.4 %, ...`"""
    if not s.phases:
        return f"{s.subject}: no clinical indices ({next(iter(s.refused.values()), '')})"
    shown = [("LV EDV", "lv_edv", "mL"), ("ESV", "lv_esv", "mL"), ("EF", "lv_ef", "%"), ("LV mass", "lv_mass", "g"),
             ("RV EDV", "rv_edv", "mL"), ("RV EF", "rv_ef", "%")]
    values = ", ".join(f"{label} {s.pred[k]:.1f} {unit}" for label, k, unit in shown if np.isfinite(s.pred.get(k, math.nan)))
    return f"{s.subject}: ED phase {s.phases['ed_phase']}, ES phase {s.phases['es_phase']}; {values}"


def _overlay(path: Path, shown: list, spec) -> None:
    from vlsa.data.io import write_png
    from vlsa.report.overlay import draw_contours, grid, to_rgb

    chosen = [s for s in shown if s[1].any()][:8] or shown[:1]
    write_png(path, grid([[draw_contours(to_rgb(img), lab, spec) for img, lab in chosen]]))
