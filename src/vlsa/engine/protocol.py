"""DG protocols over all source choices, resumable: each finished run is cached by its folder.

single-source: train on each domain alone, evaluate on all. lodo: train on all but one, evaluate
on the left-out one (and the sources' test splits). One combined table: source -> target Dice.
A domain without train cases (target only) is never a source: no single-source row of its own, in
lodo held out like the others but never trained on. Every run also evaluates the config's
`data.target_datasets` (columns NAME/DOMAIN); with them, a dataset of one domain is a protocol of
one single-source run. Regions a target does not annotate are left out of its means.
A run folder is reused only with the config digest it was made with; rerunning into the same --out
with another config stops with a one-line error naming the differing keys (no silent old metrics);
a finished run whose metrics.json was written by an older scoring (`SCORING_VERSION`), or before
its training finished, or for another checkpoint, is evaluated again (after finishing its training),
never read back (`vlsa.engine.runstate.reusable`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from vlsa.config import Config, differing_keys, load_config
from vlsa.data.domains import protocol_splits
from vlsa.engine.data import open_configured, open_target_datasets, resolve_roots, trainable_domains
from vlsa.engine.evaluate import evaluate_run, read_metrics
from vlsa.engine.inference import SCORING_VERSION
from vlsa.engine.runstate import reusable, run_state
from vlsa.engine.train import finished_steps, train
from vlsa.errors import DataError, VlsaError
from vlsa.metrics import NOT_ANNOTATED, is_number
from vlsa.report.tables import annotated_mean, domain_classes, markdown
from vlsa.utils.atomic import write_json, write_text


def run_name(sources: list[str], targets: list[str], mode: str) -> str:
    return f"{'+'.join(sources)}" if mode == "single-source" else f"lodo-{targets[0]}"


def check_same_config(config: Config, run_dir: Path) -> None:
    """A run folder is reused only for the config it was made with: compare the config digest with
    the folder's config.yaml and stop (VlsaError, one line naming the differing keys) otherwise —
    never return old metrics, or resume, under another config. Choose another --out to run both."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = load_config(saved_path)
    if saved.digest() == config.digest():
        return
    keys = differing_keys(saved, config)
    raise VlsaError(f"{saved_path}: this run was made with another config (config digest {saved.digest()} != "
                    f"{config.digest()}; differs in {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}); "
                    "use another --out (or delete the folder) to run this config")


def run_one(config: Config, run_dir: Path, quiet: bool = False) -> dict:
    """Train (or resume) and evaluate one run; a finished run made with the same config is read
    back, not redone; a folder made with another config is an error (`check_same_config`).
    metrics.json is read back only when it was computed on the finished run with its current
    checkpoint and post-processing decision (`vlsa.engine.runstate.reusable`): an evaluation of an
    interrupted run (`vlsa evaluate` after the first validation) is not the unit's result, the
    training is continued first; a finished run scored by older code is evaluated again."""
    check_same_config(config, run_dir)
    resume = (run_dir / "checkpoints" / "last.pt").is_file()
    if resume and (run_dir / "metrics.json").is_file():
        state, metrics = run_state(run_dir), read_metrics(run_dir)
        if metrics.get("scoring") == SCORING_VERSION and reusable(metrics, state):
            return metrics
    if not resume or finished_steps(run_dir) < config.train.steps:  # trained but not yet evaluated: evaluate
        train(None if resume else config, run_dir, resume=resume, quiet=quiet)
    return evaluate_run(run_dir, quiet=True)


def protocol_runs(domains: list[str], trainable: list[str], mode: str, external: bool = False):
    """(sources, targets) of every run of a DG protocol (`protocol_splits`), with the domains that
    have no train cases dropped from the sources: no single-source run of their own, in lodo held
    out but never a source. `external`: target datasets are evaluated too, so one domain suffices
    for single-source. Raises DataError when a run would have no source."""
    splits = [([domains[0]], [])] if mode == "single-source" and len(domains) == 1 and external \
        else protocol_splits(domains, mode)
    runs = []
    for sources, targets in splits:
        kept = [d for d in sources if d in trainable]
        if mode == "single-source" and not kept:
            continue
        if not kept:
            raise DataError(None, f"lodo: holding out {targets[0]} leaves no source with train cases ({sources})")
        runs.append((kept, targets))
    if not runs:
        raise DataError(None, f"no domain of {domains} has train cases, so none can be a source")
    return runs


def run_protocol(config: Config, mode: str, out: str | Path, quiet: bool = False,
                 sources: list[str] | None = None) -> dict:
    """Train and score every run of a DG protocol into `out`/<run name>/, then write
    protocol.{json,md,csv} (the source -> target Dice table).

    `sources` (single-source only): train just the runs from these domains, e.g. the one synthetic
    site whose transfer to real data is scored (benchmarks/dg_real.py); None trains every source.
    Raises DataError when `sources` names no trainable domain, or is given for lodo."""
    out = Path(out)
    config = config.model_copy(deep=True)
    resolve_roots(config)  # as train saves them, so a rerun finds its runs made with the same config
    reader = open_configured(config)
    domains = reader.domains()
    external = open_target_datasets(config, reader.spec)  # label spaces checked before any training
    columns = [*domains, *(k for t in external for k in t.keys())]
    runs = {}
    plan = protocol_runs(domains, trainable_domains(reader, domains), mode, bool(external))
    if sources is not None:
        if mode != "single-source":
            raise DataError(None, f"{mode}: choosing the sources is for single-source only")
        plan = [(s, t) for s, t in plan if s[0] in sources]
        if not plan:
            raise DataError(None, f"single-source: none of {list(sources)} is a trainable domain of {domains}")
    for run_sources, targets in plan:
        cfg = config.model_copy(deep=True)
        cfg.data.source = run_sources
        cfg.data.targets = targets
        name = run_name(run_sources, targets, mode)
        runs[name] = run_one(cfg, out / name, quiet=quiet)
    result = {"mode": mode, "dataset": config.data.dataset, "domains": columns, "model": model_label(config),
              "budget": budget(config), "runs": runs, "table": dice_matrix(runs, columns)}
    if external:
        result["target_datasets"] = {t.name: t.record() for t in external}
    write_json(out / "protocol.json", result)
    write_text(out / "protocol.md", protocol_markdown(result))
    write_text(out / "protocol.csv", protocol_csv(result))
    return result


def model_label(config: Config) -> str:
    """'unet', or 'vlsa (medsam, frozen)': enough to tell two protocol tables apart."""
    m = config.model
    if m.name != "vlsa":
        return m.name
    # the cnn backbone is always trained from scratch: its `tuning` key means nothing there
    return f"vlsa ({m.backbone.name})" if m.backbone.name == "cnn" else f"vlsa ({m.backbone.name}, {m.backbone.tuning})"


def budget(config: Config) -> dict:
    t = config.train
    return {"steps": t.steps, "batch_size": t.batch_size, "lr": t.lr, "image_size": config.data.image_size,
            "seed": config.seed}


def dice_matrix(runs: dict, domains: list[str]) -> dict:
    """run -> {domain: mean Dice, 'unseen': mean over targets}; plus per-class unseen means (over
    the targets that annotate the class; NOT_ANNOTATED when none does)."""
    table = {}
    for name, metrics in runs.items():
        row = {d: metrics["domains"][d]["dice"]["mean"] for d in domains if d in metrics["domains"]}
        unseen = [m for m in metrics["domains"].values() if m["role"] == "target"]
        row["unseen"] = annotated_mean([m["dice"]["mean"] for m in unseen])
        for c in domain_classes({i: m for i, m in enumerate(unseen)}):
            row[f"unseen_{c}"] = annotated_mean([m["dice"].get(c, NOT_ANNOTATED) for m in unseen])
        table[name] = row
    return table


def _cell(value) -> str:
    return f"{value:.3f}" if is_number(value) else NOT_ANNOTATED


def _rows(result: dict) -> list[list[str]]:
    domains, table = result["domains"], result["table"]
    extra = list(dict.fromkeys(k for row in table.values() for k in row if k.startswith("unseen_")))
    corner = "held out (trained on the rest) \\ evaluated" if result["mode"] == "lodo" else "source \\ target"
    header = [corner, *domains, "unseen mean", *(k.replace("unseen_", "unseen ") for k in extra)]
    rows = [header]
    for name, row in table.items():
        sources = set(result["runs"][name]["source"])
        cells = [name]
        for d in domains:
            v = row.get(d)
            cells.append("" if v is None else (f"({_cell(v)})" if d in sources else _cell(v)))
        cells.append(f"**{_cell(row['unseen'])}**")
        cells += [_cell(row.get(k, NOT_ANNOTATED)) for k in extra]
        rows.append(cells)
    rows.append(["mean", *([""] * len(domains)), f"**{_cell(annotated_mean([r['unseen'] for r in table.values()]))}**",
                 *(_cell(annotated_mean([r.get(k, NOT_ANNOTATED) for r in table.values()])) for k in extra)])
    return rows


def protocol_markdown(result: dict) -> str:
    rows = ("Rows: the held-out domain of each run (trained on all the others)" if result["mode"] == "lodo"
            else "Rows: source domain")
    b = result.get("budget")
    setup = ""
    if b and "steps" in b:
        setup = (f"Model: {result.get('model')}; budget: {b['steps']} steps, batch {b['batch_size']}, lr {b['lr']}, "
                 f"{b['image_size']} px, seed {b['seed']}.\n\n")
    elif b:  # a row trained outside the engine (nnU-Net) states its own budget keys
        setup = (f"Model: {result.get('model') or result.get('method')}; budget: "
                 + ", ".join(f"{k} {v}" for k, v in b.items()) + ".\n\n")
    return (f"# {result['mode']} protocol on {result['dataset']}: mean Dice\n\n" + setup +
            f"{rows}; columns: evaluation domain (test split). Values in parentheses are the "
            "sources' own test splits (in-domain); `unseen mean` averages the target domains only.\n\n"
            + markdown(_rows(result)))


def protocol_csv(result: dict) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows([[c.replace("**", "").strip("()") for c in r] for r in _rows(result)])
    return buf.getvalue()
