"""Domain-generalisation table on the synthetic benchmarks: every method x dataset x seed runs the
single-source protocol (every source -> every unseen target) with the same training budget.

Resumable: each finished run (method x dataset x seed x source) is cached in its run folder, and
the results files are rewritten after every finished unit, so an interrupted benchmark continues
where it stopped. All methods run in one process so the frozen LiteMedSAM features are computed
once per image and shared by the VLSA variants.

    python benchmarks/dg_table.py                      # full: 3 seeds, both datasets (hours on 2 cores)
    python benchmarks/dg_table.py --seeds 0            # one seed
    python benchmarks/dg_table.py --quick              # smoke run in minutes (tiny data, few steps)
    python benchmarks/dg_table.py --report-only        # rewrite the results from finished units only

On 2 cores, one process per dataset with one thread each (`--datasets fundus --threads 1` beside
`--datasets mms --threads 1`) finishes sooner than one process with two threads: the small decoders
do not scale across threads. Both processes rewrite the same results files atomically from every
finished unit on disk, so the last write holds them all. Frozen LiteMedSAM features go to a disk
cache (benchmarks/runs/feature_cache, about 2 GB for both datasets; VLSA_FEATURE_CACHE_DIR to move it)
so a restarted or second process does not recompute them. A unit being run is claimed with a lock
file holding the process id, so more processes on one dataset share the work instead of colliding:
each skips the units another live process holds.

Every finished unit is also recorded, slimmed to its per-domain metrics, in
benchmarks/results/dg_synthetic_units/<dataset>/<method>/s<seed>.json, committed with the results.
A unit missing from the runs folder (a new session, a new machine) is read from its record when
the record's key matches what dg_table would train now: the config digest without threads/device
(METHODS rows) or the budget (nnU-Net v2), the current scoring, and the splits (`splits`: a digest
of the train / validation / test case ids, `split_digest`), with every run finished. So rows can be
added one session at a time, and a changed default or split rule silently reuses nothing: its
records no longer match. nnU-Net units scored without post-processing (before issue 30) form the
row "nnU-Net v2 w/o post-processing"; the target check names the baseline it then does not cover.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dg_stats  # noqa: E402
from common import provenance, provenance_markdown  # noqa: E402
from plots import plot_dg  # noqa: E402

from vlsa.config import build_config, digest_tree, load_config  # noqa: E402
from vlsa.engine.protocol import run_protocol  # noqa: E402
from vlsa.errors import VlsaError  # noqa: E402
from vlsa.utils.atomic import write_json, write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sdg_overrides(randconv: bool = False, gin_ipa_p: float = 0.0) -> list[str]:
    """Overrides that pin the single-source DG augmentations: RandConv on or off, GIN-IPA at
    probability `gin_ipa_p` (0 = off), so a row (or a select_vlsa.py candidate) is the same run
    whatever a packaged config chose."""
    return [f"data.augment.randconv={str(randconv).lower()}", f"data.augment.gin_ipa={str(gin_ipa_p > 0).lower()}",
            f"data.augment.gin_ipa_p={gin_ipa_p or 1}"]


# One augmentation policy (configs' data.augment: colour 0.5, intensity, flips/rotations) for every
# method; only "ERM U-Net" turns its appearance part off, as the plain-ERM reference. VLSA's configs
# may add an SDG augmentation (chosen on source data, benchmarks/select_vlsa.py rule 2): the ERM rows
# pin RandConv and GIN-IPA off, each SDG row its own one on and the other off, so the baselines are the
# same whatever VLSA's config chose.
METHODS = {
    # ERM: the segmentation loss alone, so no consistency term whatever the dataset's policy says
    "ERM U-Net": ["model.name=unet", "data.augment.colour=0", *sdg_overrides(), "data.augment.consistency=0"],
    "ERM U-Net + colour aug": ["model.name=unet", *sdg_overrides(), "data.augment.consistency=0"],
    # the single-source DG baselines, each its augmentation on top of the shared policy
    "ERM U-Net + RandConv": ["model.name=unet", *sdg_overrides(randconv=True)],
    # GIN-IPA as the paper has it (every image), and on half the images as VLSA's cardiac policy has it
    "ERM U-Net + GIN-IPA": ["model.name=unet", *sdg_overrides(gin_ipa_p=1)],
    "ERM U-Net + GIN-IPA p 0.5": ["model.name=unet", *sdg_overrides(gin_ipa_p=0.5)],
    "VLSA": [],
    "VLSA w/o EM": ["model.em.enabled=false"],
    "VLSA w/o text guidance": ["model.decoder.text_guidance=false"],
    "VLSA text=none": ["model.text.encoder=none"],
}
# rows read from another method's runs, without retraining: name -> (method, metrics key per run)
DERIVED = {"VLSA w/o post-processing": ("VLSA", "domains_postprocess_off"),
           "nnU-Net v2 w/o post-processing": ("nnU-Net v2", "domains_postprocess_off")}
UNPROCESSED = " w/o post-processing"  # a row's name without post-processing: `<method> w/o post-processing`
# every method is compared with this one per source x seed (dg_stats); the strongest baseline by name
REFERENCE = "ERM U-Net + colour aug"
# the baselines VLSA must beat, and by how much (issue 11: the default at least 0.03 mean unseen Dice
# above the strongest baseline of each dataset); the strongest is picked per dataset from the results
BASELINES = ("ERM U-Net", "ERM U-Net + colour aug", "ERM U-Net + RandConv", "ERM U-Net + GIN-IPA",
             "ERM U-Net + GIN-IPA p 0.5", "nnU-Net v2")
DEFAULT_METHOD, TARGET_MARGIN = "VLSA", 0.03
# rows produced by their own script into the same runs folder (collected here, not run by this script)
EXTERNAL_ROWS = {"nnU-Net v2": "benchmarks/nnunet_row.py"}
CONFIGS = {"fundus": ROOT / "configs" / "fundus_sdg.yaml", "mms": ROOT / "configs" / "mms_sdg.yaml"}
QUICK = ["train.steps=20", "train.val_every=10", "data.image_size=48", "data.synth.per_domain=8"]


@contextlib.contextmanager
def claim(unit: Path):
    """Yield True if this process now holds `unit` (and release it after), False if a live one does."""
    unit.mkdir(parents=True, exist_ok=True)
    lock = unit / ".busy"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            holder = lock.read_text().strip()
            if holder.isdigit() and _alive(int(holder)):
                yield False
                return
            lock.unlink(missing_ok=True)  # left by a process that died: take it over
    else:
        yield False
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield True
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


# How a unit runs, not what it computes: records made with other values still describe the same unit.
RUN_ONLY_KEYS = ("threads", "device", "log_every")
# model sections a model never reads (vlsa.models.build_model): a U-Net row is the same unit whatever
# VLSA's backbone or decoder in the dataset config, so they are hashed at their defaults
UNREAD_MODEL_KEYS = {"unet": ("backbone", "em", "text", "decoder", "dsu"), "vlsa": ("unet",)}
# set per run by the protocol (each source in turn, the others as targets): not part of the unit
PROTOCOL_KEYS = ("source", "targets")
# per-domain metrics a committed unit record keeps (what summarise, dg_stats and DERIVED read)
RECORD_KEYS = ("domains", "domains_postprocess_off", "domains_postprocess_on")
# what a record keeps of each run besides its metrics: how it was scored and from which checkpoint
RUN_KEYS = ("postprocess", "scoring", "run_state")


def unit_config(dataset: str, method: str, seed: int, quick: bool = False, threads: int | None = None):
    """The resolved config of one unit of a METHODS row (the one dg_table trains)."""
    return load_config(CONFIGS[dataset], [*(QUICK if quick else []), *METHODS[method], f"seed={seed}",
                                          "train.device=cpu", *([f"train.threads={threads}"] if threads else [])])


def unit_digest(config) -> str:
    """Digest of what a unit computes: the resolved config without RUN_ONLY_KEYS (threads, device)
    and PROTOCOL_KEYS, so a source run's saved config and the unit's config give the same digest;
    the model sections its model never reads at their defaults (UNREAD_MODEL_KEYS)."""
    import hashlib

    tree = digest_tree(config.to_dict())
    tree["train"] = {k: v for k, v in tree["train"].items() if k not in RUN_ONLY_KEYS}
    tree["data"] = {k: v for k, v in tree["data"].items() if k not in PROTOCOL_KEYS}
    defaults = build_config().to_dict()["model"]
    tree["model"] |= {k: defaults[k] for k in UNREAD_MODEL_KEYS.get(tree["model"]["name"], ())}
    tree = digest_tree(tree)  # an unread key put back at a digest-neutral default (model.dsu) is left out again
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]


@functools.cache
def unit_splits(dataset: str, seed: int, quick: bool) -> dict:
    """domain -> {"train", "val", "test"} case ids of a unit (every method of a dataset x seed shares
    them): the test split as the reader makes it, the source's train/validation split as
    `vlsa.engine.data.split_train_val` draws it. Read from file names only (the synthetic data is
    generated once, then cached)."""
    from types import SimpleNamespace

    from vlsa.data.io import stem
    from vlsa.engine.data import open_configured, split_train_val

    config = load_config(CONFIGS[dataset], [*(QUICK if quick else []), f"seed={seed}"])
    reader = open_configured(config)

    def ids(domain: str, split: str) -> list[str]:
        if hasattr(reader, "cases_of"):  # M&Ms: case codes
            return sorted(c.code for c in reader.cases_of(domain, split))
        return sorted(stem(image) for image, _ in reader.pairs(domain, split))  # DoFE: image names

    out = {}
    for domain in reader.domains():
        train = ids(domain, "train")
        fit, val = split_train_val([SimpleNamespace(case_id=i) for i in train], config.data.val_fraction, seed)
        out[domain] = {"train": sorted(s.case_id for s in fit), "val": sorted(s.case_id for s in val),
                       "test": ids(domain, "test")}
    return out


def split_digest(dataset: str, seed: int, quick: bool) -> str:
    """What a committed record must carry (`splits`) to be used: the digest of `unit_splits`, so a
    unit trained on other splits (another split rule, other data) is never read back."""
    import hashlib

    return hashlib.sha256(json.dumps(unit_splits(dataset, seed, quick), sort_keys=True).encode()).hexdigest()[:16]


def same_cases(unit: Path, dataset: str, seed: int, quick: bool) -> bool:
    """Whether every source run of a runs-folder unit recorded (run.json) the training and validation
    cases the current splits give it (runs made before run.json kept `train_cases` cannot say), and
    every nnU-Net source unit trained on the fold (splits_final.json) they give."""
    splits = unit_splits(dataset, seed, quick)
    for run in sorted(p.parent for p in unit.glob("*/config.yaml")):
        if not (run / "run.json").is_file():
            return False
        info = json.loads((run / "run.json").read_text())
        trained = info.get("train_cases")
        if trained is None or any(trained.get(d) != splits[d]["train"] for d in info["sources"]) or \
                sorted(info.get("val_cases", [])) != sorted(c for d in info["sources"] for c in splits[d]["val"]):
            return False
    for fold_path in sorted(unit.glob("*/splits_final.json")):  # nnU-Net units: the fold it trained on
        fold, source = json.loads(fold_path.read_text())[0], fold_path.parent.name
        case = (lambda c: c.rsplit("_", 1)[0]) if dataset == "mms" else (lambda c: c)  # M&Ms: <code>_<ED|ES>
        if {case(c) for c in fold["train"]} != set(splits[source]["train"]) or \
                ({case(c) for c in fold["val"]} != set(splits[source]["val"]) and splits[source]["val"]):
            return False
    return True


def expected_key(dataset: str, method: str, seed: int, quick: bool) -> str:
    """What a committed record of this unit must carry to be used: the unit digest of the config
    dg_table would train now (METHODS rows), or the external row's budget (nnU-Net v2)."""
    if method in EXTERNAL_ROWS:
        from vlsa.baselines.nnunet_row import QUICK_BUDGET, Budget

        return json.dumps((QUICK_BUDGET if quick else Budget()).as_dict(), sort_keys=True)
    return unit_digest(unit_config(dataset, method, seed, quick))


def slim(result: dict) -> dict:
    """A protocol result cut to what the tables read: per run, the per-domain metrics (with and
    without post-processing) and the post-processing decision; a few kB instead of per-case lists."""
    keep = ("role", "dice", "hd95", "asd", "n")
    runs = {name: {**{k: {d: {m: v for m, v in dom.items() if m in keep} for d, dom in run[k].items()}
                      for k in RECORD_KEYS if k in run},
                   **{k: run[k] for k in RUN_KEYS if k in run}}
            for name, run in result["runs"].items()}
    return {k: result[k] for k in ("mode", "dataset", "domains", "model", "budget", "method") if k in result} \
        | {"runs": runs}


def archive_units(runs: Path, records: Path, quick: bool) -> None:
    """Copy every finished unit under `runs` into `records` (committed with the results), keyed by
    what it computes, so a later session with an empty runs folder can add rows without rerunning
    the others. A unit whose key no longer matches (the method's config changed) is not copied."""
    for dataset in CONFIGS:
        for method in [*METHODS, *EXTERNAL_ROWS]:
            for path in sorted((runs / dataset / slug(method)).glob("s*/protocol.json")):
                seed, result = int(path.parent.name[1:]), json.loads(path.read_text())
                if not same_cases(path.parent, dataset, seed, quick):  # trained on other splits
                    continue
                if method in METHODS:  # keyed by the config its runs were trained with
                    saved = {unit_digest(load_config(c)) for c in path.parent.glob("*/config.yaml")}
                    key = expected_key(dataset, method, seed, quick)
                    if saved != {key}:
                        continue
                else:  # an external row: keyed by the budget it was trained with
                    key = json.dumps(result.get("budget"), sort_keys=True)
                write_json(records / dataset / slug(method) / f"s{seed}.json",
                           {"key": key, "splits": split_digest(dataset, seed, quick), **slim(result)})


def finished_runs(result: dict) -> bool:
    """Whether every run of a unit was scored on its finished training (`run_state`, recorded since
    issue 30; units without it were written by a full dg_table protocol, which only ever evaluated
    finished runs: before that fix only a hand-run `vlsa evaluate` could score an unfinished one)."""
    return all((r.get("run_state") or {"finished": True}).get("finished") for r in result["runs"].values())


def row_name(method: str, result: dict) -> str:
    """The row a unit belongs to: an external row scored without post-processing (nnU-Net units
    made before issue 30) is `<method> w/o post-processing`, never compared as the post-processed row."""
    if method in EXTERNAL_ROWS and not all("applied" in (r.get("postprocess") or {}) for r in result["runs"].values()):
        return method + UNPROCESSED
    return method


def collect(runs: Path, records: Path | list[Path] | None = None, quick: bool = False) -> dict:
    """All finished units under `runs` (from this and earlier invocations), in METHODS order; a unit
    missing there is read from its committed record in `records` (a folder, or folders searched in
    order) when the record's key matches the config dg_table would train now, its `splits` the
    splits it would train and score on now (`split_digest`), and every run in it was scored by the
    current scoring, on its finished training (`finished_runs`). A runs-folder unit counts only when
    its runs recorded the current splits' cases (`same_cases`)."""
    from vlsa.engine.inference import SCORING_VERSION

    units: dict = {}
    for dataset in CONFIGS:
        for method in [*METHODS, *EXTERNAL_ROWS]:
            found: dict = {}
            for path in sorted((runs / dataset / slug(method)).glob("s*/protocol.json")):
                seed, result = int(path.parent.name[1:]), json.loads(path.read_text())
                if finished_runs(result) and same_cases(path.parent, dataset, seed, quick):
                    found[seed] = result
            folders = [] if records is None else [records] if isinstance(records, Path) else records
            for path in [p for folder in folders for p in sorted((folder / dataset / slug(method)).glob("s*.json"))]:
                seed = int(path.stem[1:])
                if seed in found:
                    continue
                record = json.loads(path.read_text())
                current = all(r.get("scoring", SCORING_VERSION) == SCORING_VERSION for r in record["runs"].values())
                if current and finished_runs(record) and record.get("key") == expected_key(dataset, method, seed, quick) \
                        and record.get("splits") == split_digest(dataset, seed, quick):
                    found[seed] = record
            for seed, result in sorted(found.items()):
                units.setdefault((dataset, row_name(method, result)), {})[seed] = result
        for name, (method, key) in DERIVED.items():
            for seed, result in units.get((dataset, method), {}).items():
                if seed not in units.get((dataset, name), {}) and all(key in r for r in result["runs"].values()):
                    runs_ = {n: {**r, "domains": r[key]} for n, r in result["runs"].items()}
                    units.setdefault((dataset, name), {})[seed] = {**result, "runs": runs_}
    return units


def summarise(units: dict) -> dict:
    """units[(dataset, method)][seed] = protocol result -> per method: mean and sample std (ddof 1)
    over seeds of unseen Dice etc., the per-seed values, and the per-unit (source x seed) values
    that paired comparisons use (`dg_stats`)."""
    table = {}
    for (dataset, method), by_seed in units.items():
        per_seed, paired = {}, {m: {} for m in dg_stats.METRICS}
        for seed, result in sorted(by_seed.items()):
            runs = result["runs"].values()
            unseen = [d for r in runs for d in r["domains"].values() if d["role"] == "target"]
            source = [d for r in runs for d in r["domains"].values() if d["role"] == "source"]
            classes = [c for c in unseen[0]["dice"] if c != "mean"]
            row = {"unseen_dice": np.mean([d["dice"]["mean"] for d in unseen]),
                   "source_dice": np.mean([d["dice"]["mean"] for d in source]),
                   "unseen_hd95": np.mean([d["hd95"]["mean"] for d in unseen])}
            for c in classes:
                row[f"unseen_dice_{c}"] = np.mean([d["dice"][c] for d in unseen])
            per_seed[seed] = row
            for source_name, values in dg_stats.unit_values(result).items():
                for m in dg_stats.METRICS:
                    paired[m][f"{source_name}/s{seed}"] = values[m]
        keys = next(iter(per_seed.values())).keys()
        table.setdefault(dataset, {})[method] = {
            "seeds": sorted(by_seed), **{k: float(np.mean([r[k] for r in per_seed.values()])) for k in keys},
            **{f"{k}_std": dg_stats.sample_std(r[k] for r in per_seed.values()) for k in keys},
            "per_seed": {k: {str(seed): float(r[k]) for seed, r in per_seed.items()} for k in keys},
            "units": paired}
    return table


def comparisons(table: dict, reference: str = REFERENCE) -> dict:
    """dataset -> method -> metric -> paired comparison with `reference` per source x seed."""
    return {dataset: dg_stats.compare({m: r["units"] for m, r in methods.items()}, reference)
            for dataset, methods in table.items()}


def _margin(methods: dict, method: str, baseline: str) -> dict | None:
    cmp = dg_stats.compare({m: methods[m]["units"] for m in (baseline, method)}, baseline).get(method)
    if cmp is None:
        return None
    margin = methods[method]["unseen_dice"] - methods[baseline]["unseen_dice"]
    return {"method": method, "best_baseline": baseline, "margin": margin, "target": TARGET_MARGIN,
            "met": bool(margin >= TARGET_MARGIN), "seeds": methods[method]["seeds"],
            "baseline_seeds": methods[baseline]["seeds"], "paired": cmp["unseen_dice"]}


def target_check(table: dict) -> dict:
    """dataset -> the default method against the strongest baseline there (highest mean unseen Dice):
    paired comparison per source x seed, and whether the mean margin reaches TARGET_MARGIN.
    `missing`: baselines without a like-for-like (post-processed) row in the table, so the check
    does not cover them; for each one whose `w/o post-processing` row exists, `unprocessed` holds
    the like-for-like comparison of both without post-processing."""
    out = {}
    for dataset, methods in table.items():
        baselines = [m for m in BASELINES if m in methods]
        if DEFAULT_METHOD not in methods or not baselines:
            continue
        best = max(baselines, key=lambda m: methods[m]["unseen_dice"])
        check = _margin(methods, DEFAULT_METHOD, best)
        if check is None:
            continue
        check["missing"] = [m for m in BASELINES if m not in methods]
        mine = DEFAULT_METHOD + UNPROCESSED
        check["unprocessed"] = {m: c for m in check["missing"] if mine in methods and m + UNPROCESSED in methods
                                for c in [_margin(methods, mine, m + UNPROCESSED)] if c is not None}
        check["notes"] = missing_text(check)
        out[dataset] = check
    return out


def target_markdown(check: dict | None) -> list[str]:
    if not check:
        return []
    c = check["paired"]
    out = [f"\nTarget: **{check['method']}** at least {check['target']:.2f} mean unseen Dice above the strongest "
           f"baseline here, **{check['best_baseline']}**: margin {check['margin']:+.3f} "
           f"(seeds {len(check['seeds'])} vs {len(check['baseline_seeds'])}) -> **{'met' if check['met'] else 'missed'}**; "
           f"paired over {c['n']} source × seed units: {_ci(c, '{:+.3f}')}, "
           f"{dg_stats.verdict_text(c, check['best_baseline'])}."]
    out += [f"\n{line}" for line in check.get("notes", [])]
    return out


def missing_text(check: dict) -> list[str]:
    """What the target check leaves out: baselines with no current unit in the table, and those
    whose units were scored without post-processing (with the like-for-like comparison of both
    sides without post-processing), each with the command that reruns it."""
    lines, absent = [], [m for m in check.get("missing", []) if m not in check.get("unprocessed", {})]
    for m in check.get("missing", []):
        u = check.get("unprocessed", {}).get(m)
        if u is None:
            continue
        lines.append(f"Not compared: **{m}** (its units were scored without post-processing, unlike every other row; "
                     f"rerun with `python {EXTERNAL_ROWS.get(m, 'benchmarks/dg_table.py')}`), so the target is unverified "
                     f"against it. Like for like without post-processing on both sides, {u['method']} vs "
                     f"{u['best_baseline']}: margin {u['margin']:+.3f} -> {'met' if u['met'] else 'missed'} (paired "
                     f"{_ci(u['paired'], '{:+.3f}')}, {dg_stats.verdict_text(u['paired'], u['best_baseline'])}).")
    if absent:
        how = sorted({f"`python {EXTERNAL_ROWS.get(m, 'benchmarks/dg_table.py')}`" for m in absent})
        lines.append(f"Not compared: {', '.join(f'**{m}**' for m in absent)} (no current unit in this table; rerun with "
                     f"{' and '.join(how)}), so the target is unverified against them.")
    return lines


def _pm(row: dict, key: str, fmt: str = "{:.3f}") -> str:
    std = row[key + "_std"]
    return fmt.format(row[key]) + " ± " + ("–" if np.isnan(std) else fmt.format(std))


def _ci(c: dict, fmt: str) -> str:
    return f"{fmt.format(c['mean'])} [{fmt.format(c['ci_low'])}, {fmt.format(c['ci_high'])}]" if c["n"] >= 2 \
        else f"{fmt.format(c['mean'])} (n < 2: no interval)"


def comparison_markdown(dataset: str, cmp: dict, reference: str) -> list[str]:
    """The paired-comparison table of one dataset (empty when there is nothing to compare)."""
    if not cmp:
        return []
    unit = "mm" if dataset == "mms" else "px"
    out = [f"\nPaired comparison with **{reference}** (the reference), per source × seed: mean difference "
           "(method − reference) with its 95 % t-interval over the paired units; a difference is called better/worse "
           "only when the interval excludes 0.\n",
           f"| method | paired units | Δ unseen Dice [95 % CI] | Δ unseen HD95 ({unit}) [95 % CI] | verdict (Dice) |",
           "|---|---|---|---|---|"]
    for method, c in cmp.items():
        dice, hd = c["unseen_dice"], c["unseen_hd95"]
        out.append(f"| {method} | {dice['n']} | {_ci(dice, '{:+.3f}')} | {_ci(hd, '{:+.2f}')} | "
                   f"{dg_stats.verdict_text(dice, reference)} |")
    return out


def markdown(table: dict, budget: dict, prov: dict, png: str, reference: str = REFERENCE) -> str:
    out = ["# Single-source DG on the synthetic benchmarks\n", f"![unseen-domain Dice per method]({png})\n",
           "Every source domain -> every unseen target domain (test splits); numbers are means over the four "
           "source choices, then mean ± sample std (ddof 1) over seeds. Same budget for every method: "
           + ", ".join(f"{k} {v}" for k, v in budget.items()) + "." + _external_note(table) + "\n",
           "Reproduce everything with `python benchmarks/dg_table.py` (resumable: finished units are read back); "
           "the provenance below is of the process that wrote this file.\n", provenance_markdown(prov)]
    if prov.get("units_from_records"):
        out.append(f"- {len(prov['units_from_records'])} units read from their committed records (`{prov['records']}/`, "
                   "same config digest or budget, current scoring), trained in an earlier session: "
                   + ", ".join(prov["units_from_records"]) + "\n")
    cmps = comparisons(table, reference)
    targets = target_check(table)
    for dataset, methods in table.items():
        classes = list(dict.fromkeys(k[len("unseen_dice_"):] for m in methods.values() for k in m
                                     if k.startswith("unseen_dice_") and not k.endswith("_std")))  # label order
        unit = "mm" if dataset == "mms" else "px"
        header = ["method", "seeds", "source Dice", "unseen Dice", *(f"unseen {c}" for c in classes), f"unseen HD95 ({unit})"]
        out.append(f"\n## {dataset}\n\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for method, r in methods.items():
            cells = [_pm(r, "source_dice"), f"**{_pm(r, 'unseen_dice')}**", *(_pm(r, f"unseen_dice_{c}") for c in classes),
                     _pm(r, "unseen_hd95", "{:.2f}")]
            out.append("| " + " | ".join([method, str(len(r["seeds"])), *cells]) + " |")
        out += comparison_markdown(dataset, cmps.get(dataset, {}), reference)
        out += target_markdown(targets.get(dataset))
    return "\n".join(out) + "\n"


def _external_note(table: dict) -> str:
    """The budget of rows made by their own scripts (nnU-Net v2 trains with its own pipeline)."""
    if not any("nnU-Net v2" in methods for methods in table.values()):
        return ""
    from vlsa.baselines.nnunet_row import Budget

    return (f" Except nnU-Net v2 ({EXTERNAL_ROWS['nnU-Net v2']}): {Budget().describe()} (`--quick`: 2 x 3 "
            "iterations x batch 2 on the first source only); its predictions are scored with the same metrics "
            "code on the same test cases.")


def budget_of(config) -> dict:
    return {"steps": config.train.steps, "image size": config.data.image_size,
            "batch": config.train.batch_size, "lr": config.train.lr}


def write_results(out: Path, name: str, runs: Path, prov: dict, budget: dict) -> dict:
    """Summarise every finished unit under `runs`, and the committed unit records in out/<name>_units
    for units not there, into out/name.{json,md,png}; finished units are recorded there first."""
    records, quick = out / f"{name}_units", name.endswith("_quick")
    committed = ROOT / "benchmarks" / "results" / f"{name}_units"
    archive_units(runs, records, quick)
    # with another --out, the committed records still count (after that folder's own)
    units = collect(runs, [records, committed] if committed.resolve() != records.resolve() else records, quick)
    if not units:
        raise VlsaError(f"{runs}: no finished units there, and no committed records in {records} or {committed}")
    table = summarise(units)
    from_records = sorted(f"{d}/{m}/s{s}" for (d, m), by_seed in units.items() if m not in DERIVED
                          for s, r in by_seed.items() if "key" in r)  # runs-folder results carry no key
    prov = {**prov, "records": f"{name}_units", "units_from_records": from_records}
    write_json(out / f"{name}.json", {"provenance": prov, "budget": budget, "table": table, "std_ddof": 1, "reference": REFERENCE,
                                      "comparisons": comparisons(table), "target": target_check(table)})
    write_text(out / f"{name}.md", markdown(table, budget, prov, f"{name}.png"))
    if table:
        plot_dg(table, out / f"{name}.png")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="tiny data and few steps: a smoke run in minutes")
    parser.add_argument("--report-only", action="store_true",
                        help="write the results files from the finished units on disk; train nothing")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for this process (default: all cores)")
    parser.add_argument("--runs", default=str(ROOT / "benchmarks" / "runs"), help="where run folders are cached")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    name = "dg_synthetic_quick" if args.quick else "dg_synthetic"
    out, runs = Path(args.out), Path(args.runs) / ("quick" if args.quick else "full")
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("VLSA_FEATURE_CACHE_DIR", str(Path(args.runs) / "feature_cache"))
    prov = provenance()
    budget = {}
    if args.report_only:
        budget = budget_of(load_config(CONFIGS[args.datasets[0]], QUICK if args.quick else []))
        args.datasets = []
    for dataset in args.datasets:
        for seed in args.seeds:
            for method in args.methods:
                config = unit_config(dataset, method, seed, args.quick, args.threads)
                budget = budget_of(config)
                unit = runs / dataset / slug(method) / f"s{seed}"
                with claim(unit) as mine:
                    print(f"== {dataset} | {method} | seed {seed}" + ("" if mine else ": busy in another process"),
                          flush=True)
                    if not mine:
                        continue
                    run_protocol(config, "single-source", unit, quiet=True)
                write_results(out, name, runs, prov, budget)  # after every unit: an interrupted run keeps its results
    write_results(out, name, runs, prov, budget)
    print((out / f"{name}.md").read_text())


if __name__ == "__main__":
    try:
        main()
    except VlsaError as exc:  # e.g. a cached run made with another config: one line, not a traceback
        print(f"dg_table.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
