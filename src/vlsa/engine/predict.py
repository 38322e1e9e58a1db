"""Prediction on files: PNG/JPEG in -> label PNG out (same size and name, pixel = class index, or
the dataset's own mask values with `values='dataset'`; an input with an EXIF orientation gets a
label on its stored pixel grid carrying the same orientation tag);
NIfTI in -> NIfTI out with the input's shape and affine (slices resampled to the model's spacing
and back)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vlsa.data.io import (
    exif_orientation,
    is_image,
    is_nifti,
    load_image_colour,
    read_nifti,
    stem,
    to_stored_grid,
    write_nifti,
    write_png,
)
from vlsa.data.resample import normalise_percentile, volume_planes
from vlsa.engine.data import model_input
from vlsa.engine.evaluate import load_run
from vlsa.engine.geometry import geometry_for, to_original
from vlsa.engine.inference import check_tta, model_logits
from vlsa.engine.runinfo import resolve_device
from vlsa.engine.training_inputs import far_from_training
from vlsa.errors import DataError
from vlsa.preflight import UNSUPPORTED, existing_paths
from vlsa.report.overlay import draw_contours, grid, to_rgb


def collect_inputs(paths: list[str | Path]) -> list[Path]:
    existing_paths(paths)  # the type of each file is checked below (DICOM series were split off before)
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and (is_image(f) or is_nifti(f)))
            if not found:
                raise DataError(p, "no PNG/JPEG/NIfTI/DICOM files in folder")
            files.extend(found)
        elif p.is_file():
            if not (is_image(p) or is_nifti(p)):
                raise DataError(p, UNSUPPORTED)
            files.append(p)
    seen: dict[str, Path] = {}
    for f in files:
        if stem(f) in seen:
            raise DataError(None, f"{seen[stem(f)]} and {f} would both write the output {stem(f)!r}; "
                                  "predict them into separate --output folders")
        seen[stem(f)] = f
    return files


def check_no_overlap(inputs: list[str | Path], output: str | Path) -> None:
    """Refuse an --output that could write over (or mix with) the inputs: an input folder itself, a
    folder inside or around an input folder, an input file, or the folder an input file lies in."""
    out = Path(output).resolve()
    for raw in inputs:
        p = Path(raw).resolve()
        if p.is_dir():
            clash = out == p or p in out.parents or out in p.parents
        else:
            clash = out == p or out == p.parent
        if clash:
            raise DataError(output, f"output folder overlaps the input {raw}; predictions could overwrite "
                                    "the input images, choose an --output outside the inputs")


class Predictor:
    def __init__(self, run_dir: str | Path, device: str = "cpu", postprocess: str = "recorded", tta: str | None = None):
        """postprocess: 'recorded' (the run's decision, postprocess.json; VlsaError when there is
        none and the data to make it is absent), 'on' or 'off'. tta: 'off' or 'flip'
        (`vlsa.engine.inference.model_logits`), default the run's eval.tta; VlsaError for another."""
        self.config, self.spec, self.model = load_run(run_dir, device=device)
        check_tta(tta)
        self.device = resolve_device(device, "--device")  # "auto" -> cuda when present, as in training
        self.colour: set[Path] = set()  # inputs that were colour pictures (load_image_colour), for the warnings
        from vlsa.engine.postprocessing import recorded

        self.postprocess = recorded(run_dir, self.config, self.spec, self.model, self.device,
                                    choice=None if postprocess == "recorded" else postprocess)
        if tta is not None:  # after the post-processing decision, which is the run's (made with its own)
            self.config.eval.tta = tta

    def _labels(self, planes: list[np.ndarray], original: tuple[int, int] | None = None, volumes: int = 0):
        """C x H x W float planes -> (H x W label maps on each plane's own grid, H0 x W0 label maps
        on the `original` grid the planes were resampled from (the same maps when None)).
        `volumes` > 0: the planes are that many interleaved 3D volumes (plane k belongs to volume
        k % volumes, as a x, y, z, t array reshaped to x, y, z*t orders them), and post-processing
        works on each whole volume, as evaluation scores it; 0: each plane is its own image."""
        size, volumetric = self.config.data.image_size, self.spec.volumetric
        geoms = [geometry_for(volumetric, p.shape[-2:], size) for p in planes]
        batch = torch.stack([model_input(p, g, self.config) for p, g in zip(planes, geoms)])
        logits = model_logits(self.model, batch, self.config.eval.batch_size, self.device, tta=self.config.eval.tta)
        own = [to_original(lg, g).argmax(0).numpy().astype(np.uint8) for lg, g in zip(logits, geoms)]
        post = getattr(self, "postprocess", False)
        if post:
            own = self._plausible(own, volumes)
        if original is None or all(p.shape[-2:] == tuple(original) for p in planes):
            return own, own
        back = [to_original(lg, g, original).argmax(0).numpy().astype(np.uint8) for lg, g in zip(logits, geoms)]
        if post:
            back = self._plausible(back, volumes)
        return own, back

    def _plausible(self, labels: list[np.ndarray], volumes: int) -> list[np.ndarray]:
        """Anatomical post-processing (vlsa.postprocess) per image, or per 3D volume when `volumes` > 0
        (largest 3D component, as evaluation applies it; per plane it would keep one blob per slice)."""
        from vlsa.postprocess import postprocess

        if volumes <= 0:
            return [postprocess(lab, self.spec) for lab in labels]
        out = list(labels)
        for v in range(volumes):
            index = list(range(v, len(labels), volumes))
            fixed = postprocess(np.stack([labels[i] for i in index]), self.spec)  # D x H x W
            for i, lab in zip(index, fixed):
                out[i] = lab
        return out

    def predict_image(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return self.predict_images([path])[0]

    def predict_images(self, paths: list[Path]) -> list[tuple[np.ndarray, np.ndarray]]:
        """-> (C x H x W image in [0, 1], H x W label map) per file; the images go through the model in batches."""
        planes = []
        for path in paths:
            chw, colour = load_image_colour(path, self.spec.channels)  # C x H x W in [0, 1], any mode / bit depth
            if colour:
                self.colour.add(Path(path))  # a photograph into a grey model: far_from_training says so
            planes.append(normalise_percentile(chw) if self.spec.volumetric else chw)
        return list(zip(planes, self._labels(planes)[0])) if planes else []

    def predict_volume(self, path: Path):
        """-> (label volume with the input's spatial shape, a few (image, label) slices for overlays)."""
        data, affine, zooms = read_nifti(path)
        if data.ndim < 2 or data.ndim > 4:
            raise DataError(path, f"expected a 2D, 3D or 4D volume, got shape {data.shape}")
        if self.spec.channels != 1:
            raise DataError(path, "this model takes RGB images, not volumes")
        shape = data.shape
        vol = data.reshape(shape[0], shape[1], -1)  # x, y, (z*t)
        planes = [img for img, _, _, _ in volume_planes(vol, zooms, self.config.data.spacing)]
        frames = shape[3] if data.ndim == 4 else 1  # x, y, z, t -> t volumes of z slices each
        labels, back = self._labels(planes, original=shape[:2], volumes=frames if data.ndim >= 3 else 0)
        out = np.stack(back, axis=-1).reshape(shape).astype(np.uint8)
        return out, affine, list(zip(planes, labels))


def run_mask_values(run_dir: str | Path, predictor: Predictor) -> tuple[int, ...]:
    """Label index -> the run's dataset's own mask value (recorded in run.json at training; for
    older runs read from the run's dataset)."""
    from vlsa.engine.compat import mask_values, run_info

    values = run_info(run_dir).get("mask_values")
    if values is None:
        from vlsa.engine.data import open_configured

        values = mask_values(open_configured(predictor.config))
    values = tuple(int(v) for v in values)
    if len(values) != predictor.spec.num_classes or max(values) > 255 or min(values) < 0:
        raise DataError(Path(run_dir) / "run.json",
                        f"mask values {list(values)} do not fit {predictor.spec.num_classes} classes in 8 bits")
    return values


def predict_paths(run_dir, inputs: list[str], output: str | Path, overlay: bool = False, device: str = "cpu",
                  quiet: bool = False, values: str = "index", postprocess: str = "recorded", fmt: str = "nifti",
                  series_uid: str | None = None, tta: str | None = None) -> list[Path]:
    """Write one label file per input into `output`. values='index': pixel = class index (0, 1, ..);
    values='dataset': the training dataset's own mask values (e.g. DoFE 255/128/0, classes.yaml's).
    DICOM series (folders or files) go through `vlsa.engine.predict_dicom` (NIfTI per phase, a SEG
    per phase with fmt='dicom-seg', clinical.csv). Raises DataError when `output` overlaps an input,
    two inputs share an output name, an input cannot be read, DICOM is given to a whole-photo (fundus
    locator) run, or fmt='dicom-seg' is asked of non-DICOM input; then nothing is left in `output`
    (files are written to a staging folder inside it and moved in only when every input is done).
    Returns the files written, under `output`."""
    from vlsa.utils.atomic import staged_folder

    check_no_overlap(inputs, output)
    output = Path(output)
    with staged_folder(output) as stage:
        written = _predict_into(run_dir, inputs, stage, output, overlay, device, quiet, values, postprocess, fmt,
                                series_uid, tta)
    return [output / p.relative_to(stage) for p in written]


def _predict_into(run_dir, inputs, stage: Path, output: Path, overlay, device, quiet, values, postprocess, fmt,
                  series_uid, tta) -> list[Path]:
    """`predict_paths`'s work, every file written into `stage` (messages name `output`)."""
    from vlsa.data.io import read_nifti_header
    from vlsa.engine.clinical_indices import is_cardiac
    from vlsa.engine.predict_dicom import nifti_cine_indices, predict_dicom, split_inputs, write_clinical

    dicom, inputs = split_inputs(inputs)
    files = collect_inputs(inputs) if inputs else []
    if fmt == "dicom-seg" and files:
        raise DataError(files[0], "--format dicom-seg needs DICOM input (a SEG references its source images); "
                                  "this is not a DICOM series")
    predictor = Predictor(run_dir, device=device, postprocess=postprocess, tta=tta)
    lut = np.arange(predictor.spec.num_classes, dtype=np.uint8)
    if values == "dataset":
        lut = np.asarray(run_mask_values(run_dir, predictor), dtype=np.uint8)
    elif values != "index":
        raise DataError(None, f"--values {values!r}: choose index or dataset")
    from vlsa.engine.fundus_photo import has_locator, predict_photos

    if has_locator(run_dir):  # whole photos or crops of any scale: locate, ROI, segment, paste back, measure
        if dicom:  # never a silent "wrote 0 prediction(s)"
            raise DataError(dicom[0], "this run segments fundus photographs (PNG/JPEG/TIFF), not DICOM series")
        return predict_photos(run_dir, files, stage, overlay, device, quiet, lut, loaded=predictor, shown_as=output)
    from vlsa.engine.compat import run_info

    training_inputs, far = run_info(run_dir).get("training_inputs"), []
    written, done, subjects = [], {}, []
    chunk = max(1, predictor.config.eval.batch_size)
    for index, path in enumerate(tqdm(files, desc="predict", unit="file", disable=quiet or not files)):
        if index % chunk == 0:  # the next chunk's 2D images go through the encoder as one batch
            flat = [p for p in files[index : index + chunk] if not is_nifti(p)]
            done = dict(zip(flat, predictor.predict_images(flat)))
        name = stem(path)
        if is_nifti(path):
            labels, affine, slices = predictor.predict_volume(path)
            if labels.ndim == 4 and is_cardiac(predictor.spec):  # a cine: EDV/ESV/EF, ED/ES by LV volume
                subjects.append(nifti_cine_indices(name, labels, read_nifti_header(path).get_zooms(),
                                                   predictor.config.eval.lv_slice_ring))
            header = read_nifti_header(path)  # quiet, with the spacing read_nifti used
            header.set_data_dtype(np.uint8)
            header.set_slope_inter(1.0, 0.0)  # labels are stored as they are, never rescaled
            target = stage / f"{name}.nii.gz"
            write_nifti(target, lut[labels], affine, header=header)
            if overlay:
                shown = [s for s in slices if s[1].any()][:8] or slices[:1]
                tiles = [draw_contours(to_rgb(img), lab, predictor.spec) for img, lab in shown]
                write_png(stage / f"{name}_overlay.png", grid([tiles]))
        else:
            image, labels = done.pop(path)
            far.append((path, far_from_training(labels, training_inputs, predictor.spec,
                                                colour=Path(path) in predictor.colour)))
            target = stage / f"{name}.png"
            # the input's stored pixel grid and its EXIF orientation: "same size as the input" holds for
            # the stored pixels, and viewers turn label and image alike (the overlay is drawn as displayed)
            orientation = exif_orientation(path)
            write_png(target, lut[to_stored_grid(labels, orientation)], orientation=orientation)
            if overlay:
                write_png(stage / f"{name}_overlay.png", draw_contours(to_rgb(image), labels, predictor.spec))
        written.append(target)
    if not quiet:
        warn_far_inputs(far)
    if dicom:
        written += predict_dicom(predictor, dicom, stage, fmt, lut, quiet, series_uid, overlay,
                                 taken={stem(f) for f in files}, subjects=subjects)
    write_clinical(stage, subjects, quiet)
    return written


def warn_far_inputs(far: list[tuple[Path, list[str]]], shown: int = 5) -> None:
    """One stderr line per input far from the training inputs (`far_from_training`), the first
    `shown` of them, then how many there were in all."""
    flagged = [(path, reasons) for path, reasons in far if reasons]
    for path, reasons in flagged[:shown]:
        print(f"vlsa: warning: {path}: far from the images the run was trained on: {'; '.join(reasons)}; its "
              "segmentation is unreliable (e.g. a whole fundus photograph given to a model trained on disc-centred "
              "crops, or a photograph given to an MRI model)", file=sys.stderr)
    if len(flagged) > shown:
        print(f"vlsa: warning: {len(flagged)} of {len(far)} images are far from the training images "
              f"({shown} named above)", file=sys.stderr)
