"""nnU-Net v2 (Isensee et al., Nature Methods 2021) as a baseline row of the single-source DG table.

For one dataset x seed x source domain (a *unit*, in its own folder):
1. export the source domain's train cases with `export_nnunet` (nnU-Net v2 raw format) and the
   test cases of every domain as prediction inputs;
2. in a child process whose nnUNet_raw / nnUNet_preprocessed / nnUNet_results point into the
   unit folder (nnU-Net reads them at import), run nnU-Net's own fingerprinting, planning,
   preprocessing (2d configuration), training (fold 0, `Budget`) and prediction
   (`vlsa.baselines.nnunet_worker`);
3. read nnU-Net's prediction files with vlsa's readers and score them with vlsa's metrics
   (`vlsa.engine.inference.score`: per image for 2D data, per volume for slices) against the
   samples the other rows are scored on -> `metrics.json` of the same shape `vlsa evaluate` writes;
4. post-processing (vlsa.postprocess) by the rule every engine row gets (`eval.postprocess: auto`,
   `vlsa.engine.postprocessing.choose`), decided on nnU-Net's own validation fold (the source
   validation cases, predicted by nnU-Net too): `domains` holds the chosen numbers,
   `domains_postprocess_on` / `_off` both, `postprocess` the decision and its validation Dice.

A finished unit (its metrics.json) is read back, not redone, and every nnU-Net step is skipped
when its output exists, so an interrupted row continues where it stopped; a unit scored before
post-processing was decided (no `postprocess` key) is scored again, which only predicts the
validation fold when nnU-Net's trained model is still in the unit folder. `run_row` writes
`protocol.json` in the shape of `vlsa.engine.protocol.run_protocol`, which benchmarks/dg_table.py
collects. Needs `pip install 'vlsa[nnunet]'` (nnunetv2).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from vlsa.data.export_nnunet import export_nnunet
from vlsa.data.io import load_mask, read_nifti
from vlsa.data.splits import hash_pick
from vlsa.engine.geometry import geometry_for, labels_to_original, to_model
from vlsa.engine.inference import score
from vlsa.engine.protocol import dice_matrix, protocol_markdown
from vlsa.errors import ConfigError, VlsaError
from vlsa.utils.atomic import write_json, write_text

ROW = "nnU-Net v2"
DATASET_ID = 500
VALIDATION = "source-validation"  # the inputs/predictions folder of nnU-Net's validation fold


@dataclass(frozen=True)
class Budget:
    """nnU-Net's training schedule for the row: epochs x iterations, each a batch of `batch` patches."""

    epochs: int = 12
    iterations: int = 50
    batch: int = 8
    val_iterations: int = 5

    @property
    def total_iterations(self) -> int:
        return self.epochs * self.iterations

    def describe(self) -> str:
        return (f"nnU-Net v2 2d configuration, trained on the source train cases minus the validation cases "
                f"every other row holds out (nnU-Net fold 0 via splits_final.json), "
                f"{self.epochs} epochs x {self.iterations} iterations = {self.total_iterations} iterations x batch "
                f"{self.batch} (nnU-Net's default: 1000 x 250), patch size, network, normalisation, augmentation, "
                f"SGD (lr 0.01, poly) and mirroring test-time augmentation as nnU-Net plans them; last checkpoint")

    def as_dict(self) -> dict:
        return {**asdict(self), "total_iterations": self.total_iterations}


# the smoke run of benchmarks/nnunet_row.py --quick
QUICK_BUDGET = Budget(epochs=2, iterations=3, batch=2, val_iterations=1)


def available() -> bool:
    return importlib.util.find_spec("nnunetv2") is not None


def nnunet_env(unit: Path, threads: int) -> dict[str, str]:
    """The child's environment: nnU-Net's folders inside the unit, its worker and thread counts."""
    env = dict(os.environ)
    env.update({
        "nnUNet_raw": str(unit / "nnUNet_raw"),
        "nnUNet_preprocessed": str(unit / "nnUNet_preprocessed"),
        "nnUNet_results": str(unit / "nnUNet_results"),
        "nnUNet_n_proc_DA": "0",  # augmentation in the training process: no worker processes
        "nnUNet_def_n_proc": str(threads),
        "nnUNet_compile": "f",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")]),
    })
    return env


def on_model_grid(sample, size: int, volumetric: bool):
    """A copy of `sample` on the engine's model grid (`vlsa.engine.geometry`: a 2D image resized to
    size x size, a slice centre-padded/cropped to it), as every engine row sees it: the nnU-Net
    row with the same pixels per step (`run_configured`). 2D intensities are rounded to 8-bit
    values (the export writes PNG; nnU-Net z-scores them)."""
    import dataclasses

    geom = geometry_for(volumetric, sample.image.shape[-2:], size)
    image, label = to_model(sample.image, sample.label, geom)
    image = image.numpy()
    spacing = sample.spacing  # an unknown slice thickness is written thicker by the export (slice_thickness_for)
    if not volumetric:
        image = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.float32) / np.float32(255.0)  # as vlsa.data.io reads 8-bit
        spacing = tuple(float(sp * n / size) for sp, n in zip(sample.spacing, geom.native))
    return dataclasses.replace(sample, image=image, label=None if label is None else label.numpy(), spacing=spacing)


class ModelGridReader:
    """A reader whose samples are `on_model_grid` copies of `reader`'s (what nnU-Net is exported from
    for the real-data rows); spec, root and domains are the reader's."""

    def __init__(self, reader, size: int):
        self.reader, self.size = reader, size
        self.spec, self.root = reader.spec, reader.root

    def domains(self) -> list[str]:
        return self.reader.domains()

    def samples(self, domain: str, split: str):
        for s in self.reader.samples(domain, split):
            yield on_model_grid(s, self.size, self.spec.volumetric)


@dataclass(frozen=True)
class Scored:
    """One domain a unit predicts and scores: its metrics key, reader, domain, split and role;
    `dataset` names another dataset's domain (a `data.target_datasets` entry), None the run's own."""

    key: str
    reader: object
    domain: str
    split: str = "test"
    role: str = "target"
    dataset: str | None = None

    @property
    def folder(self) -> str:
        """The inputs/predictions folder name (NAME/DOMAIN keys: one path component)."""
        return self.key.replace("/", "__")


def own_domains(reader, source: str) -> list[Scored]:
    """Every domain of `reader`, test split, `source` as the source (the synthetic benchmarks' row)."""
    return [Scored(d, reader, d, "test", "source" if d == source else "target") for d in reader.domains()]


def configured_domains(config, reader, external: list) -> list[Scored]:
    """What `vlsa evaluate` scores for a run of `config`: its sources and targets (test split) and
    the domains of every opened `data.target_datasets` entry (`external`, from
    `open_target_datasets`; on the entry's split), as the engine rows are."""
    from vlsa.engine.data import domains_of

    sources, targets = domains_of(config, reader)
    out = [Scored(d, reader, d, "test", "source" if d in sources else "target") for d in [*sources, *targets]]
    for t in external:
        out += [Scored(key, t.reader, d, t.split, "target", t.dataset) for d, key in zip(t.domains, t.keys())]
    return out


def export_inputs(entries: list[Scored], unit: Path, volumetric: bool, size: int | None = None) -> dict[str, Path]:
    """The entries' cases as nnU-Net prediction inputs (images only; `size`: on the model grid,
    `on_model_grid`): key -> folder."""
    from vlsa.data.export_nnunet import write_samples
    from vlsa.engine.evaluate import split_samples

    folders = {}
    for entry in entries:
        folder = unit / "inputs" / entry.folder
        if not folder.is_dir():
            tmp = unit / "inputs" / f".{entry.folder}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            samples = split_samples(entry.reader, entry.domain, entry.split)
            if size is not None:
                samples = [on_model_grid(x, size, volumetric) for x in samples]
            for _ in write_samples(samples, tmp, volumetric):
                pass
            os.replace(tmp, folder)
        folders[entry.key] = folder
    return folders


def export_validation(raw: Path, unit: Path, val_cases: list[str]) -> Path:
    """The validation fold's images (copied from the exported raw dataset) as a prediction input."""
    folder = unit / "inputs" / VALIDATION
    if not folder.is_dir():
        tmp = unit / "inputs" / f".{VALIDATION}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "imagesTr").mkdir(parents=True)
        wanted = set(val_cases)
        for image in sorted((raw / "imagesTr").iterdir()):
            case = image.name.rsplit("_", 1)[0]  # <case>_XXXX<ending>
            if case in wanted:
                shutil.copy(image, tmp / "imagesTr" / image.name)
        os.replace(tmp, folder)
    return folder


def postprocess_decision(reader, source: str, folder: Path, val_fraction: float, seed: int,
                         size: int | None = None) -> dict:
    """The engine rows' post-processing rule (`vlsa.engine.postprocessing.choose`) on nnU-Net's
    predictions of the source validation cases (its fold 0 validation split)."""
    from vlsa.engine.data import split_train_val
    from vlsa.engine.postprocessing import RULE, choose

    spec = reader.spec
    _, val = split_train_val(list(reader.samples(source, "train")), val_fraction, seed)
    decision = {"mode": "auto", "rule": RULE, "decided_on": "nnU-Net's fold-0 validation cases (the source "
                "validation split every row holds out)", "val_cases": len({s.group for s in val})}
    if not val:
        return decision | {"applied": False, "reason": "no source validation split"}
    preds = load_predictions(val, folder, spec.volumetric, spec.num_classes, size)
    return decision | choose(SimpleNamespace(samples=val), preds, spec)


def write_splits(raw: Path, path: Path, val_fraction: float, seed: int) -> Path:
    """nnU-Net's splits_final.json with one fold: the validation cases every other row holds out.

    vlsa's engine holds out `val_fraction` of the source subjects (salted hash, `split_train_val`);
    nnU-Net's own 5-fold split would need >= 5 cases and hold out different ones."""
    import csv

    with open(raw / "domains.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    val_subjects = hash_pick([r["subject"] for r in rows], val_fraction, salt=f"val-{seed}")
    val = [r["case"] for r in rows if r["subject"] in val_subjects]
    train = [r["case"] for r in rows if r["subject"] not in val_subjects]
    write_json(path, [{"train": train, "val": val or train}])
    return path


def run_nnunet(unit: Path, inputs: dict[str, Path], budget: Budget, seed: int, threads: int,
               splits: Path) -> dict[str, Path]:
    """nnU-Net's plan/preprocess/train/predict in a child process; -> domain -> prediction folder."""
    outputs = {d: unit / "predictions" / folder.name for d, folder in inputs.items()}
    cmd = [sys.executable, "-m", "vlsa.baselines.nnunet_worker", "--dataset-id", str(DATASET_ID),
           "--epochs", str(budget.epochs), "--iterations", str(budget.iterations),
           "--val-iterations", str(budget.val_iterations), "--batch", str(budget.batch),
           "--seed", str(seed), "--threads", str(threads), "--splits", str(splits),
           "--inputs", *map(str, inputs.values()), "--outputs", *map(str, outputs.values())]
    log = unit / "nnunet.log"
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        code = subprocess.call(cmd, env=nnunet_env(unit, threads), stdout=fh, stderr=subprocess.STDOUT)
    if code != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise VlsaError(f"{log}: nnU-Net failed with exit status {code} ({tail[0][:200]})")
    return outputs


def load_predictions(samples, folder: Path, volumetric: bool, num_classes: int, size: int | None = None) -> list[np.ndarray]:
    """nnU-Net's label files -> one H0 x W0 label map per sample on its original annotation grid
    (slices cut from the volume files). `size`: the files are on the model grid (`on_model_grid`)
    and go back the way the engine maps its logits (`to_original` on one-hot maps, then argmax)."""
    preds, volumes = [], {}
    for s in samples:
        if volumetric:
            if s.volume_id not in volumes:
                volumes = {s.volume_id: np.rint(read_nifti(folder / f"{s.volume_id}.nii.gz")[0]).astype(np.int64)}
            pred = volumes[s.volume_id][:, :, s.slice_index]
        else:
            pred = load_mask(folder / f"{s.name}.png")
        expected = s.label.shape if size is None else (size, size)
        if pred.shape != expected:
            raise VlsaError(f"{folder}: nnU-Net prediction of {s.name} has shape {pred.shape}, expected {expected}")
        # scored like every row: on the original annotation grid (from the model grid first, with `size`)
        geom = None if size is None else geometry_for(volumetric, s.label.shape, size)
        preds.append(labels_to_original(pred, num_classes, getattr(s, "original_shape", None), geom))
    return preds


def read_record(record: Path | None, budget: Budget) -> dict | None:
    """A committed per-source result of an earlier session, when made with this budget and scoring."""
    from vlsa.engine.inference import SCORING_VERSION

    if record is None or not record.is_file():
        return None
    try:
        result = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    current = result.get("budget") == budget.as_dict() and result.get("scoring") == SCORING_VERSION
    return result if current and scored_like_the_engine(result) else None


def scored_like_the_engine(result: dict) -> bool:
    """Whether a unit result carries the post-processing decision every engine row's has (units
    scored before it existed hold the numbers without post-processing only)."""
    return "applied" in (result.get("postprocess") or {})


def run_unit(reader, dataset: str, source: str, unit: Path, budget: Budget, seed: int = 0, threads: int = 1,
             val_fraction: float = 0.2, record: Path | None = None, entries: list[Scored] | None = None,
             cases: bool = False, size: int | None = None) -> dict:
    """Train nnU-Net on `source`, predict every entry (default: every domain's test split,
    `own_domains`), score with vlsa's metrics (`cases`: with per-case Dice / HD95, what paired
    comparisons read; `size`: nnU-Net trained and predicting on the engine's model grid of that
    size, `ModelGridReader`, scored on the original grid). A finished unit is read back from unit/metrics.json, else from `record` (a
    committed copy from an earlier session, used only with the same budget and scoring); a new
    result is written to both."""
    from vlsa.engine.evaluate import case_scores, split_samples
    from vlsa.engine.inference import SCORING_VERSION

    if (unit / "metrics.json").is_file():
        done = json.loads((unit / "metrics.json").read_text())
        if scored_like_the_engine(done):
            return done
    recorded = read_record(record, budget)
    if recorded is not None:
        write_json(unit / "metrics.json", recorded)
        return recorded
    if not available():
        raise VlsaError("the nnU-Net row needs nnunetv2: pip install 'vlsa[nnunet]'")
    start = time.perf_counter()
    entries = entries or own_domains(reader, source)
    spec = reader.spec
    raw = unit / "nnUNet_raw" / f"Dataset{DATASET_ID}_{dataset}{source}"
    if not raw.is_dir():
        export_nnunet(reader if size is None else ModelGridReader(reader, size), raw, domains=[source], splits=["train"])
    splits = write_splits(raw, unit / "splits_final.json", val_fraction, seed)
    inputs = export_inputs(entries, unit, spec.volumetric, size)
    inputs[VALIDATION] = export_validation(raw, unit, json.loads(splits.read_text())[0]["val"])
    outputs = run_nnunet(unit, inputs, budget, seed, threads, splits)
    decision = postprocess_decision(reader, source, outputs[VALIDATION], val_fraction, seed, size)
    result = {"dataset": dataset, "source": [source], "units": "mm" if spec.volumetric else "px",
              "unit_of_evaluation": "volume" if spec.volumetric else "image", "method": ROW,
              "budget": budget.as_dict(), "scoring": SCORING_VERSION, "postprocess": decision,
              **({} if size is None else {"grid": f"model grid, {size} px (the engine rows' data.image_size)"}),
              "domains": {}, "domains_postprocess_off": {}, "domains_postprocess_on": {}}
    for entry in entries:
        samples = split_samples(entry.reader, entry.domain, entry.split)
        preds = load_predictions(samples, outputs[entry.key], spec.volumetric, spec.num_classes, size)
        # another dataset's domain: scored on the regions it annotates (Sunnybrook: no RV), named as evaluate names it
        info = {"role": entry.role} if entry.dataset is None else {"role": entry.role, "dataset": entry.dataset}
        for on in (False, True):  # both, as `vlsa evaluate` records them
            scores = score(SimpleNamespace(samples=samples), preds, spec, postprocess=on,
                           annotated=entry.reader.spec.annotated)
            extra = {"cases": case_scores(scores)} if cases else {}
            result[f"domains_postprocess_{'on' if on else 'off'}"][entry.key] = {**info, **scores.aggregate(), **extra}
        result["domains"][entry.key] = result[f"domains_postprocess_{'on' if decision['applied'] else 'off'}"][entry.key]
    result["wall_s"] = round(time.perf_counter() - start, 1)
    write_json(unit / "metrics.json", result)
    if record is not None:
        write_json(record, result)
    return result


def run_configured(config, out: str | Path, budget: Budget, threads: int = 1, log=print) -> dict:
    """nnU-Net v2 as one unit of `config`'s single-source protocol (benchmarks/dg_real.py): trained
    on the config's one source domain (its train cases minus the validation cases every engine row
    holds out), scored per case on what `vlsa evaluate` scores for an engine run of the config
    (`configured_domains`: the own test split and every `data.target_datasets` entry). nnU-Net
    trains and predicts on the engine's model grid (`data.image_size`: the pixels per step every
    row gets; at its own planning a 512 x 512 fundus patch costs ~10 s per batch-2 iteration on
    one CPU thread, hours for the row) and is scored on the original grid.
    -> out/protocol.json in the shape of `run_protocol` (runs: {source: metrics}). Resumable as
    `run_unit`. Raises ConfigError for a config with more than one source domain."""
    from vlsa.engine.data import domains_of, open_configured, open_target_datasets

    out = Path(out)
    reader = open_configured(config)
    sources, _ = domains_of(config, reader)
    if len(sources) != 1:
        raise ConfigError(f"config key 'data.source': the nnU-Net row trains on one source domain, got {sources}")
    external = open_target_datasets(config, reader.spec)
    entries = configured_domains(config, reader, external)
    source = sources[0]
    log(f"  {ROW} | {config.data.dataset} | seed {config.seed} | source {source}")
    run = run_unit(reader, config.data.dataset, source, out / source, budget, config.seed, threads,
                   config.data.val_fraction, entries=entries, cases=True, size=config.data.image_size)
    result = {"mode": "single-source", "dataset": config.data.dataset, "domains": [e.key for e in entries],
              "runs": {source: run}, "method": ROW, "budget": budget.as_dict()}
    if external:
        result["target_datasets"] = {t.name: t.record() for t in external}
    write_json(out / "protocol.json", result)
    return result


def finished(out: str | Path, sources: list[str], budget: Budget, records: Path | None = None) -> bool:
    """Whether every source unit of a row under `out` is done (on disk or in `records`)."""
    def done(unit: Path) -> bool:
        return unit.is_file() and scored_like_the_engine(json.loads(unit.read_text()))

    return all(done(Path(out) / s / "metrics.json") or read_record(records and records / f"{s}.json", budget)
               for s in sources)


def run_row(reader, dataset: str, out: str | Path, budget: Budget, seed: int = 0, threads: int = 1,
            sources: list[str] | None = None, val_fraction: float = 0.2, log=print,
            records: Path | None = None, write: bool = True) -> dict:
    """Every source domain of `reader` (or `sources`) -> out/<source>/ units; out/protocol.json (+ .md)
    as run_protocol. `records`: a folder of committed per-source results (<source>.json) read back
    instead of retraining, and written after each new unit. `write=False`: run the units only (a
    process doing part of a row), without protocol.json."""
    out = Path(out)
    domains = reader.domains()
    runs = {}
    for source in sources or domains:
        log(f"  nnU-Net v2 | {dataset} | seed {seed} | source {source}")
        runs[source] = run_unit(reader, dataset, source, out / source, budget, seed, threads, val_fraction,
                                record=records / f"{source}.json" if records else None)
    result = {"mode": "single-source", "dataset": dataset, "domains": domains, "runs": runs,
              "table": dice_matrix(runs, domains), "method": ROW, "budget": budget.as_dict()}
    if write:
        write_json(out / "protocol.json", result)
        write_text(out / "protocol.md", protocol_markdown(result))
    return result
