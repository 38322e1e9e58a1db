"""Evaluate a trained run on every domain's test split: per-class Dice / HD95 / ASD per domain,
written as metrics.json / .csv / .md with overlays of each domain's worst cases, and printed as a
table. A subset of domains, another dataset folder or every image of the targets (`split='all'`)
is written as metrics_<what>.* beside them, never over them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from vlsa.config import load_config
from vlsa.data.domains import check_domains
from vlsa.engine.checkpoint import load_checkpoint, load_model_state, spec_from_dict
from vlsa.engine.compat import check_compatible, run_info
from vlsa.engine.data import domains_of, open_configured, prepare
from vlsa.engine.inference import SCORING_VERSION, predict_prepared, score
from vlsa.engine.runinfo import resolve_device
from vlsa.errors import DataError, VlsaError
from vlsa.models import build_model
from vlsa.report.overlay import case_panel, stack_panels, to_rgb
from vlsa.report.tables import console, domain_table, metrics_csv, metrics_markdown
from vlsa.utils.atomic import write_json, write_text


def load_run(run_dir: str | Path, which: str = "best", device: str = "cpu"):
    """-> (config, spec, model in eval mode) from a run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise VlsaError(f"{run_dir}: run directory not found")
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
    its name and Dice. images: native C x H x W float arrays; preds: native H x W label maps. For
    volumes the slice with the most foreground in truth or prediction stands for its volume."""
    if count <= 0 or not samples:
        return None
    dice = {cid: float(np.nanmean([c["dice"][r] for r in spec.regions])) for cid, c in zip(scores.case_ids, scores.cases)}
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


def results_name(domains: list[str] | None, full: list[str], data_is_other: bool, data, split: str) -> str:
    """'metrics' for the run's full evaluation; 'metrics_<what>' for anything else, so a subset,
    another dataset or another split never replaces the results protocols and reports read."""
    parts = []
    if data_is_other:
        parts.append(f"data-{Path(data).resolve().name}")
    if domains is not None and list(domains) != list(full):
        parts.append("+".join(domains))
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
            if "empty domain" not in exc.problem:
                raise
    if not out:
        raise DataError(reader.root, f"empty domain: no images for {domain}")
    return out


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, domains: list[str] | None = None,
                 device: str = "cpu", quiet: bool = False, split: str = "test") -> dict:
    """Score a run per domain. The full evaluation (every domain, test split, the run's data) writes
    metrics.json/.csv/.md; a subset, `--data` elsewhere or `split='all'` writes metrics_<what>.*
    beside it. `split='all'` scores every image of the target domains (they were never trained on).
    Raises VlsaError for unknown domains or data whose classes differ from the run's."""
    run_dir = Path(run_dir)
    config, spec, model = load_run(run_dir, device=device)
    reader = open_configured(config, root=data)
    run_root = run_info(run_dir).get("dataset_root")
    data_is_other = data is not None and (run_root is None or Path(data).resolve() != Path(run_root).resolve())
    if data_is_other:
        check_compatible(run_dir, spec, reader)
    sources, targets = domains_of(config, reader)
    if split not in ("test", "all"):
        raise VlsaError(f"--split {split!r}: choose test or all")
    full = [*sources, *targets]
    chosen = domains or (targets if split == "all" else full)
    check_domains(chosen, reader.domains(), "evaluation", reader.root)
    if split == "all" and set(chosen) & set(sources):
        raise VlsaError(f"--split all scores every image, including the training images of sources "
                        f"{sorted(set(chosen) & set(sources))}; choose target domains only")
    name = results_name(domains, full if split == "test" else targets, data_is_other, data, split)
    result = {"dataset": config.data.dataset, "source": sources, "units": "mm" if spec.volumetric else "px",
              "unit_of_evaluation": "volume" if spec.volumetric else "image", "split": split,
              "data": str(reader.root), "file": f"{name}.json", "scoring": SCORING_VERSION, "domains": {}}
    from vlsa.engine.postprocessing import decide

    dev = resolve_device(device, "--device")  # once: load_run already accepted it
    pp = decide(run_dir, config, spec, model, dev)
    result["postprocess"] = pp
    result["domains_postprocess_off"], result["domains_postprocess_on"] = {}, {}
    overlay_rows = {}
    from vlsa.engine.fundus_eval import FundusMeasures  # vCDR vs experts; whole photos with a locator

    clinical = FundusMeasures(run_dir, config, spec, reader, dev)
    for domain in tqdm(chosen, desc="evaluate", unit="domain", disable=quiet):
        samples = split_samples(reader, domain, split)
        images = [s.image for s in samples]  # native images for the overlays (prepare drops its copies)
        prepared = prepare(samples, config, spec)
        native, small = predict_prepared(model, prepared, config.eval.batch_size, dev)
        role = "source" if domain in sources else "target"
        scores = score(prepared, native, spec, postprocess=pp["applied"])
        agg = scores.aggregate()
        result["domains"][domain] = {"role": role, **agg}
        # both, so a table can show post-processing off (or on) from the same run
        other = score(prepared, native, spec, postprocess=not pp["applied"]).aggregate()
        result[f"domains_postprocess_{'on' if pp['applied'] else 'off'}"][domain] = result["domains"][domain]
        result[f"domains_postprocess_{'off' if pp['applied'] else 'on'}"][domain] = {"role": role, **other}
        overlay_rows[domain] = overlay_tiles(images, prepared.samples, native, spec, config.eval.overlays, scores)
        clinical.add(domain, prepared.samples, native)
        del images
    result.update(clinical.results(chosen, split, sources, name, quiet))
    write_json(run_dir / f"{name}.json", result)
    write_text(run_dir / f"{name}.csv", metrics_csv(result))
    write_text(run_dir / f"{name}.md", metrics_markdown(result))
    from vlsa.data.io import write_png

    folder = run_dir / ("overlays" if name == "metrics" else f"overlays_{name.removeprefix('metrics_')}")
    for domain, panel in overlay_rows.items():
        if panel is not None:
            write_png(folder / f"{domain}.png", panel)
    if not quiet:
        print(console(domain_table(result, "dice")))
        if name != "metrics":
            print(f"results: {run_dir / (name + '.json')} (metrics.json, the full evaluation, is left as it is)")
    return result


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())
