"""Evaluate a trained run on every domain's test split: per-class Dice / HD95 / ASD per domain,
written as metrics.json / .csv / .md with overlay grids, and printed as a table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vlsa.config import load_config
from vlsa.data.domains import check_domains
from vlsa.engine.checkpoint import load_checkpoint, load_model_state, spec_from_dict
from vlsa.engine.data import domains_of, open_configured, prepare
from vlsa.engine.inference import SCORING_VERSION, predict_prepared, score
from vlsa.engine.runinfo import resolve_device
from vlsa.errors import VlsaError
from vlsa.models import build_model
from vlsa.report.overlay import draw_contours, grid, to_rgb
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
    model.to(resolve_device(device)).eval()
    return config, spec, model


def overlay_tiles(prepared, preds, spec, count: int) -> list:
    """A few images with true contours (solid) and predicted contours (dashed)."""
    if count <= 0 or len(prepared) == 0:
        return []
    order = np.argsort([-len(np.unique(lab)) for lab in prepared.labels.numpy()], kind="stable")
    picked = order[:: max(1, len(order) // count)][:count] if spec.volumetric else np.arange(min(count, len(prepared)))
    tiles = []
    for i in picked:
        rgb = prepared.display[i] if prepared.display is not None else to_rgb(prepared.images[i].numpy())
        rgb = draw_contours(rgb, prepared.labels[i].numpy(), spec)
        tiles.append(draw_contours(rgb, preds[i].numpy(), spec, dashed=True))
    return tiles


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, domains: list[str] | None = None,
                 device: str = "cpu", quiet: bool = False) -> dict:
    run_dir = Path(run_dir)
    config, spec, model = load_run(run_dir, device=device)
    reader = open_configured(config, root=data)
    sources, targets = domains_of(config, reader)
    chosen = domains or [*sources, *targets]
    check_domains(chosen, reader.domains(), "evaluation", reader.root)
    result = {"dataset": config.data.dataset, "source": sources, "units": "mm" if spec.volumetric else "px",
              "unit_of_evaluation": "volume" if spec.volumetric else "image", "scoring": SCORING_VERSION,
              "domains": {}}
    overlay_rows = {}
    for domain in tqdm(chosen, desc="evaluate", unit="domain", disable=quiet):
        prepared = prepare(list(reader.samples(domain, "test")), config, spec)
        native, small = predict_prepared(model, prepared, config.eval.batch_size, resolve_device(device))
        agg = score(prepared, native, spec).aggregate()
        result["domains"][domain] = {"role": "source" if domain in sources else "target", **agg}
        overlay_rows[domain] = overlay_tiles(prepared, small, spec, config.eval.overlays)
    write_json(run_dir / "metrics.json", result)
    write_text(run_dir / "metrics.csv", metrics_csv(result))
    write_text(run_dir / "metrics.md", metrics_markdown(result))
    from vlsa.data.io import write_png

    for domain, tiles in overlay_rows.items():
        if tiles:
            write_png(run_dir / "overlays" / f"{domain}.png", grid([tiles]))
    if not quiet:
        print(console(domain_table(result, "dice")))
    return result


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())
