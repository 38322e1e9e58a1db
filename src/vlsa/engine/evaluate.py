"""Evaluate a trained run on every domain's test split: per-class Dice / HD95 / ASD per domain,
written as metrics.json / .csv / .md with overlays of each domain's worst cases, and printed as a
table. A subset of domains, another dataset folder or every image of the targets (`split='all'`)
is written as metrics_<what>.* beside them, never over them.

The domains are the run's own dataset's (plain names) and every `data.target_datasets` entry's
(keys NAME/DOMAIN), each read with its own reader. Roles come from (dataset, resolved root,
domain): a domain is a source only when the run trained on that dataset at that root and that
domain; the domains of `--data` elsewhere or of another dataset are targets whatever their names.
Regions a dataset or case does not annotate are "not annotated" (vlsa.metrics)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from vlsa.config import load_config
from vlsa.data.domains import check_domains, open_reader
from vlsa.data.integrity import is_empty_split
from vlsa.engine.checkpoint import load_checkpoint, load_model_state, spec_from_dict
from vlsa.engine.clinical_indices import ClinicalTable
from vlsa.engine.compat import check_compatible, run_info
from vlsa.engine.data import domains_of, open_configured, open_target_datasets, prepare, reader_options
from vlsa.engine.inference import SCORING_VERSION, predict_prepared, score, scored_maps
from vlsa.engine.runinfo import resolve_device
from vlsa.errors import DataError, VlsaError
from vlsa.models import build_model
from vlsa.preflight import existing_run
from vlsa.report.clinical import clinical_markdown, clinical_rows
from vlsa.report.overlay import case_panel, stack_panels, to_rgb
from vlsa.report.tables import (
    console,
    domain_table,
    metrics_csv,
    metrics_markdown,
    small_sample_note,
    unfinished,
)
from vlsa.report.vcdr import fundus_markdown
from vlsa.utils.atomic import write_json, write_text


def load_run(run_dir: str | Path, which: str = "best", device: str = "cpu"):
    """-> (config, spec, model in eval mode) from a run directory."""
    run_dir = existing_run(run_dir)
    state = load_checkpoint(run_dir / "checkpoints" / f"{which}.pt")
    config = load_config(run_dir / "config.yaml")
    if state.get("config_hash") != config.digest():
        raise VlsaError(f"{run_dir / 'checkpoints' / (which + '.pt')}: checkpoint was made for another model configuration "
                        f"than {run_dir / 'config.yaml'} (config hash {state.get('config_hash')} != {config.digest()})")
    spec = spec_from_dict(state["spec"])
    model = build_model(config, spec)
    load_model_state(model, state, run_dir / "checkpoints" / f"{which}.pt")
    model.to(resolve_device(device, "--device")).eval()
    return config, spec, model


def overlay_tiles(images: list[np.ndarray], samples, preds: list[np.ndarray], spec, count: int, scores):
    """The `count` worst cases of a domain (lowest mean Dice first) as one PNG array: a legend, then
    per case [truth | prediction] at native resolution (long side capped at 512 px), captioned with
    its name and Dice (mean over the regions it annotates). images: native C x H x W float arrays;
    preds: the native H x W label maps that were scored (`scored_maps`: post-processed when
    post-processing applied, as `vlsa predict` writes them). For volumes the slice with the most
    foreground in truth or prediction stands for its volume."""
    if count <= 0 or not samples:
        return None
    dice = {cid: float(np.mean(list(c["dice"].values()))) if c["dice"] else float("nan")
            for cid, c in zip(scores.case_ids, scores.cases)}
    worst = sorted(dice, key=lambda cid: (np.isnan(dice[cid]), dice[cid]))[:count]
    panels = []
    for cid in worst:
        members = [i for i, s in enumerate(samples) if s.group == cid]
        i = max(members, key=lambda j: int((samples[j].label > 0).sum() + (preds[j] > 0).sum()))
        name = cid if not spec.volumetric else f"{cid} slice {samples[i].slice_index}"
        original = getattr(samples[i], "original_label", None)  # shown on the grid that was scored
        truth, image = (samples[i].label if original is None else original), images[i]
        if image.shape[-2:] != truth.shape:  # a resampled slice: its image back to the original grid
            image = F.interpolate(torch.from_numpy(image)[None], size=truth.shape, mode="bilinear")[0].numpy()
        panels.append(case_panel(to_rgb(image), truth, preds[i], spec, f"{name}  Dice {dice[cid]:.3f}"))
    return stack_panels(panels, spec)


def case_scores(scores) -> dict:
    """Per case (image, or volume): Dice and HD95 of each region it annotates and their mean, what
    paired comparisons over cases (a few real target images or volumes) read."""
    out = {}
    for cid, case in zip(scores.case_ids, scores.cases):
        row = {}
        for m in ("dice", "hd95"):
            values = {r: float(v) for r, v in case[m].items()}
            row[m] = {**values, "mean": float(np.mean(list(values.values()))) if values else float("nan")}
        out[cid] = row
    return out


def results_name(domains: list[str] | None, full: list[str], data_is_other: bool, data, split: str,
                 tta: str | None = None) -> str:
    """'metrics' for the run's full evaluation; 'metrics_<what>' for anything else, so a subset,
    another dataset, another split or another test-time augmentation (`tta`, when not the run's)
    never replaces the results protocols and reports read."""
    parts = [f"tta-{tta}"] if tta is not None else []
    if data_is_other:
        parts.append(f"data-{Path(data).resolve().name}")
    if domains is not None and list(domains) != list(full):
        parts.append("+".join(d.replace("/", "-") for d in domains))  # NAME/DOMAIN keys: one file name
    if split != "test":
        parts.append(f"split-{split}")
    return "metrics" if not parts else "metrics_" + "_".join(parts)


def split_samples(reader, domain: str, split: str) -> list:
    """The samples of one split, or of both (`all`: every labelled image of the domain)."""
    if split != "all":
        return list(reader.samples(domain, split))
    out = []
    for part in ("train", "test"):
        try:
            out.extend(reader.samples(domain, part))
        except DataError as exc:
            if not is_empty_split(exc):  # a split with no cases is skipped; a bad file is not
                raise
    if not out:
        raise DataError(reader.root, f"empty domain: no images for {domain}")
    return out


@dataclass(frozen=True)
class Evaluated:
    """One domain to evaluate: its metrics.json key, reader, name in that reader, role, dataset."""

    key: str
    reader: object
    domain: str
    role: str
    dataset: str
    split: str | None = None  # a target dataset's own `split` (test or all); None: the evaluation's


@dataclass
class Plan:
    """What an evaluation can score: every domain by key, the keys of the full evaluation, the
    target datasets opened, the reader of the run's data (or of --data) and whether --data is
    another root than the run's."""

    entries: dict[str, Evaluated]
    full: list[str]
    external: list
    reader: object
    data_is_other: bool


def evaluation_plan(run_dir: Path, config, spec, data, dataset: str | None = None) -> Plan:
    """The domains to evaluate and their roles (source only for the run's dataset, its resolved
    root and its source domains). `dataset`: the reader of `data` when it is another dataset than
    the run's (e.g. Sunnybrook's DICOM for an ACDC run); all its domains are targets.
    Raises VlsaError for data whose classes differ from the run's."""
    other_reader = dataset is not None and dataset != config.data.dataset
    if other_reader and data is None:
        raise VlsaError(f"--dataset {dataset}: names the reader of --data; give the folder with --data")
    reader = (open_reader(dataset, data, **reader_options(config.data)) if other_reader
              else open_configured(config, root=data))
    run_root = run_info(run_dir).get("dataset_root")
    data_is_other = data is not None and (other_reader or run_root is None
                                          or Path(data).resolve() != Path(run_root).resolve())
    dataset = dataset or config.data.dataset
    if data_is_other:  # another root: every domain is unseen, whatever its name
        check_compatible(run_dir, spec, reader)
        entries = {d: Evaluated(d, reader, d, "target", dataset) for d in reader.domains()}
        return Plan(entries, list(entries), [], reader, True)
    sources, targets = domains_of(config, reader)
    entries = {d: Evaluated(d, reader, d, "source" if d in sources else "target", dataset) for d in reader.domains()}
    full = [*sources, *targets]
    external = open_target_datasets(config, spec)
    for t in external:
        for d, key in zip(t.domains, t.keys()):
            entries[key] = Evaluated(key, t.reader, d, "target", t.dataset, t.split)
        full += t.keys()
    return Plan(entries, full, external, reader, False)


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, domains: list[str] | None = None,
                 device: str = "cpu", quiet: bool = False, split: str = "test", dataset: str | None = None,
                 tta: str | None = None) -> dict:
    """Score a run per domain. The full evaluation (every domain of the run's dataset and of its
    target datasets, test split, the run's data) writes metrics.json/.csv/.md; a subset, `--data`
    elsewhere or `split='all'` writes metrics_<what>.* beside it. `split='all'` scores every image
    of the target domains (they were never trained on); a target dataset's domains are scored on its
    entry's `split` (test, or all its labelled images). Each domain records the `units` of its
    distances (mm where every case's spacing is known, else px).
    `tta` ("off" or "flip", `vlsa.engine.inference.model_logits`): the test-time augmentation when it
    is not the run's eval.tta (the results then go to metrics_tta-<tta>.*; post-processing keeps the
    run's decision, made with the run's own).
    Raises VlsaError for unknown domains, an unknown `tta` or data whose classes differ from the run's."""
    run_dir = Path(run_dir)
    config, spec, model = load_run(run_dir, device=device)
    if split not in ("test", "all"):
        raise VlsaError(f"--split {split!r}: choose test or all")
    from vlsa.engine.inference import check_tta

    tta = check_tta(tta)
    other_tta = tta if tta is not None and tta != config.eval.tta else None
    found = evaluation_plan(run_dir, config, spec, data, dataset)
    plan, full, external, reader = found.entries, found.full, found.external, found.reader
    sources = list(config.data.source)
    targets = [k for k in full if plan[k].role == "target"]
    chosen = domains or (targets if split == "all" else full)
    check_domains(chosen, list(plan), "evaluation", reader.root)
    seen_sources = sorted(k for k in chosen if plan[k].role == "source")
    if split == "all" and seen_sources:
        raise VlsaError(f"--split all scores every image, including the training images of sources "
                        f"{seen_sources}; choose target domains only")
    name = results_name(domains, full if split == "test" else targets, found.data_is_other, data, split, other_tta)
    result = {"dataset": config.data.dataset, "source": sources, "units": "mm" if spec.volumetric else "px",
              "unit_of_evaluation": "volume" if spec.volumetric else "image", "split": split,
              "data": str(reader.root), "file": f"{name}.json", "scoring": SCORING_VERSION, "domains": {}}
    if getattr(reader, "label_rule", None) is not None:
        result["label_rule"] = reader.label_rule
    if external:
        result["target_datasets"] = {t.name: t.record() for t in external}
    from vlsa.engine.postprocessing import decide
    from vlsa.engine.runstate import check_no_training_cases, run_state, split_rule

    dev = resolve_device(device, "--device")  # once: load_run already accepted it
    pp = decide(run_dir, config, spec, model, dev)  # with the run's eval.tta: the decision is the run's
    result["postprocess"] = pp
    if other_tta is not None:
        config.eval.tta = other_tta
    result["tta"] = config.eval.tta
    # what these numbers were computed from: reused (protocols) only while both match a finished run
    result["run_state"], result["split_rule"] = run_state(run_dir), split_rule(reader, config)
    if (note := unfinished(result, str(run_dir))) is not None:  # also in metrics.md; a protocol never reuses these
        print(f"vlsa: warning: {run_dir}: {note}", file=sys.stderr)
    result["domains_postprocess_off"], result["domains_postprocess_on"] = {}, {}
    overlay_rows = {}
    from vlsa.engine.fundus_eval import FundusMeasures  # vCDR vs experts; whole photos with a locator

    fundus_measures = FundusMeasures(run_dir, config, spec, reader, dev)
    clinical = ClinicalTable(spec, config.eval.lv_slice_ring)  # EDV/ESV/EF/mass per subject where a domain has ED and ES volumes
    for key in tqdm(chosen, desc="evaluate", unit="domain", disable=quiet):
        entry = plan[key]
        samples = split_samples(entry.reader, entry.domain, entry.split or split)
        if entry.reader is reader:  # the run's own dataset: its test split must not hold a training case
            check_no_training_cases(run_dir, entry.domain, samples)
        images = [s.image for s in samples]  # native images for the overlays (prepare drops its copies)
        prepared = prepare(samples, config, spec)
        native, _ = predict_prepared(model, prepared, config.eval.batch_size, dev, tta=config.eval.tta)
        scored, flipped, maps, scores = domain_scores(entry, reader, prepared, native, spec, pp["applied"])
        result["domains"][key] = scored
        # both, so a table can show post-processing off (or on) from the same run
        result[f"domains_postprocess_{'on' if pp['applied'] else 'off'}"][key] = scored
        result[f"domains_postprocess_{'off' if pp['applied'] else 'on'}"][key] = flipped
        overlay_rows[key] = overlay_tiles(images, prepared.samples, maps, spec, config.eval.overlays, scores)
        if entry.reader is reader:  # expert ratios and whole photos: the run's own dataset (Drishti-GS1)
            fundus_measures.add(key, prepared.samples, native)
        clinical.add(key, prepared.samples, maps, entry.reader.spec.annotated)
        del images
    own = [k for k in chosen if plan[k].reader is reader]  # expert ratios / whole photos: the run's dataset only
    result.update(fundus_measures.results(own, split, sources, name, quiet))
    clinical.write(run_dir, name, result)  # clinical[_<what>].csv/.json, result["clinical"]
    write_outputs(run_dir, name, result, overlay_rows, quiet)
    return result


def domain_scores(entry: Evaluated, own_reader, prepared, native: list[np.ndarray], spec, applied: bool):
    """One domain's scores -> (its metrics.json entry, scored on the maps `scored_maps` gives:
    post-processed when `applied`; the same entry with post-processing flipped; those maps (what
    overlays show and predict writes); the DomainAccumulator). Regions the evaluated dataset does not
    annotate are left out; distances are in mm only where every case's spacing is known (ACDC's h5
    copy has none: voxels)."""
    annotated = entry.reader.spec.annotated  # the evaluated dataset's annotation (None: all), not the run's
    maps = scored_maps(prepared, native, spec, postprocess=applied)
    scores = score(prepared, maps, spec, annotated=annotated)
    flipped = score(prepared, native, spec, postprocess=not applied, annotated=annotated)
    # a target dataset's domains also name their dataset (the run's own keep today's keys)
    info = {"role": entry.role} if entry.reader is own_reader else {"role": entry.role, "dataset": entry.dataset}
    known = spec.volumetric and all(s.meta.get("spacing_known", True) for s in prepared.samples)
    info["units"] = "mm" if known else "px"
    return ({**info, **scores.aggregate(), "cases": case_scores(scores)},
            {**info, **flipped.aggregate(), "cases": case_scores(flipped)}, maps, scores)


def write_outputs(run_dir: Path, name: str, result: dict, overlay_rows: dict, quiet: bool) -> None:
    """<name>.json/.csv/.md, the overlay PNGs (NAME/DOMAIN keys of target datasets: a subfolder per
    dataset) and, unless `quiet`, the tables printed."""
    write_json(run_dir / f"{name}.json", result)
    write_text(run_dir / f"{name}.csv", metrics_csv(result))
    write_text(run_dir / f"{name}.md", metrics_markdown(result) + clinical_markdown(result) + fundus_markdown(result))
    from vlsa.data.io import write_png

    folder = run_dir / ("overlays" if name == "metrics" else f"overlays_{name.removeprefix('metrics_')}")
    for key, panel in overlay_rows.items():
        if panel is not None:
            write_png(folder / f"{key}.png", panel)
    if not quiet:
        print(console(domain_table(result, "dice")))
        if (few := small_sample_note(result)) is not None:
            print(f"vlsa: warning: {few}", file=sys.stderr)
        if result.get("clinical"):
            print(console(clinical_rows(result)))
        if name != "metrics":
            print(f"results: {run_dir / (name + '.json')} (metrics.json, the full evaluation, is left as it is)")


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())
