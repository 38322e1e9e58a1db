"""Single-source DG on the real data (../shared/realdata): every method x setting x seed trains on
one real source with the same budget and is scored on the same-site test split and on unseen sites.

Settings (`SETTINGS`):
- fundus: Drishti-GS1 Training -> Drishti-GS1 Test (same site) and the DoFE sample crops of RIM-ONE-r3
  and REFUGE (Zeiss, Canon): unseen sites, 2 crops each, paired per image; zooms of 0.9-1.1
  (data.augment.scale 0.1), the policy every row of this setting ran with;
- fundus-scale: the same with drishti_sdg's zooms of 0.6-1.4 (scale 0.4, chosen on source validation
  after the fundus rows had run: benchmarks/scale_invariance.py);
- cardiac: ACDC training patients (Siemens) -> ACDC test patients (same site) and Sunnybrook (GE):
  unseen vendor, LV and MYO (RV not annotated there), paired per volume;
- fundus-sim / cardiac-sim: the synthetic sets -> the real sets above (sim-to-real).

Resumable like dg_table.py (whose unit machinery it reuses): each unit (setting x method x seed) is a
protocol run folder under benchmarks/runs/real/, claimed by a lock file, and recorded slimmed in
benchmarks/results/dg_real_units/<setting>/<method>/s<seed>.json (keyed by the unit's config digest),
so a new session rebuilds the tables without retraining. Results are rewritten after every unit.

    python benchmarks/dg_real.py --settings fundus --threads 1        # one process per core:
    python benchmarks/dg_real.py --settings cardiac --threads 1       #   both at once on 2 cores
    python benchmarks/dg_real.py --report-only                        # tables from finished units
    python benchmarks/dg_real.py --methods VLSA "ERM U-Net + colour aug" --seeds 0   # a subset
    python benchmarks/dg_real.py --retrain --settings fundus-scale --methods VLSA \
        --runs benchmarks/runs/retrained --out benchmarks/runs/retrained_results  # run folders back, records untouched

Paired statistics: dg_stats over units (seed, unseen case): the same image or volume, the same seed,
only the method differs; the mean difference with its 95 % t-interval. A finding only where the
interval excludes 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dg_stats  # noqa: E402
import dg_table  # noqa: E402
from common import provenance, provenance_markdown  # noqa: E402
from plots import plot_dg  # noqa: E402

from vlsa.baselines import nnunet_row  # noqa: E402
from vlsa.config import digest_tree, load_config  # noqa: E402
from vlsa.engine.protocol import run_protocol  # noqa: E402
from vlsa.errors import VlsaError  # noqa: E402
from vlsa.metrics import is_number  # noqa: E402
from vlsa.utils.atomic import write_json, write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("VLSA_REALDATA", ROOT.parent / "shared" / "realdata"))

# setting -> (packaged config, overrides naming the real folders)
# drishti_sdg's segmenter until session 21, the paper's VLSA (cnn, 4 plain colour views): the fundus
# settings pin it, so each row is the run it always was ("VLSA" the paper's model) whatever the packaged
# config now trains (the hybrid with GIN-IPA zoomed views: that row, PACKAGED_DEFAULT below)
PAPER_SEGMENTER = ["model.backbone.name=cnn", "data.augment.views=4", "data.augment.gin_ipa=false",
                   "data.augment.gin_ipa_p=1", "data.augment.view_zoom=false"]
SETTINGS = {
    # the disc locator (whole-photo pipeline) is not part of a DG unit: it is trained once, by the packaged config
    "fundus": ("drishti_sdg", [f"data.root={REAL / 'drishti-gs1'}", f"data.target_datasets.dofe.root={REAL / 'dofe-samples'}",
                               "train.locator.enabled=false", "data.augment.scale=0.1", *PAPER_SEGMENTER]),
    # the same with drishti_sdg's own zoom range (scale 0.4, chosen on source validation after the
    # rows above had run: benchmarks/scale_invariance.py)
    "fundus-scale": ("drishti_sdg", [f"data.root={REAL / 'drishti-gs1'}",
                                     f"data.target_datasets.dofe.root={REAL / 'dofe-samples'}",
                                     "train.locator.enabled=false", *PAPER_SEGMENTER]),
    "cardiac": ("acdc_sdg", [f"data.root={REAL / 'acdc-ssl4mis'}",
                             f"data.target_datasets.sunnybrook.root={REAL / 'sunnybrook-scd'}",
                             # the DG budget every row shares (the packaged config trains longer for EF) and
                             # no clinical slice rule (EF is not scored here; Dice does not read it)
                             "train.steps=600", "train.val_every=100", "eval.lv_slice_ring=0",
                             # the rows' VLSA is the paper's, with MiniLM text embeddings (acdc_sdg's
                             # default is text=none, chosen later from these rows: the "VLSA text=none" row)
                             "model.text.encoder=minilm"]),
    "fundus-sim": ("fundus_sdg", ["data.targets=[]",
                                  "data.target_datasets={drishti: {dataset: drishti, root: '" + str(REAL / "drishti-gs1")
                                  + "'}, dofe: {dataset: fundus, root: '" + str(REAL / "dofe-samples")
                                  + "', domains: [Domain2, Domain3, Domain4], split: all}}"]),
    "cardiac-sim": ("mms_sdg", ["data.targets=[]",
                                "data.target_datasets={acdc: {dataset: acdc, root: '" + str(REAL / "acdc-ssl4mis")
                                + "'}, sunnybrook: {dataset: sunnybrook, root: '" + str(REAL / "sunnybrook-scd") + "'}}"]),
}
# units of the unseen sites' HD95: fundus crops in pixels; Sunnybrook's DICOM spacing in mm; ACDC's h5
# copy has no spacing (voxels)
UNSEEN_UNITS = {"fundus": "px", "fundus-scale": "px", "cardiac": "mm", "fundus-sim": "px", "cardiac-sim": "mm Sunnybrook, px ACDC"}
TITLES = {"fundus": "Drishti-GS1 -> RIM-ONE / REFUGE crops",
          "fundus-scale": "Drishti-GS1 -> RIM-ONE / REFUGE crops, zoom augmentation 0.6-1.4 (drishti_sdg's policy)", "cardiac": "ACDC (Siemens) -> Sunnybrook (GE)",
          "fundus-sim": "synthetic fundus -> real fundus", "cardiac-sim": "synthetic cardiac -> real cardiac"}
# The rows, in the order they run (the comparisons that matter most first, so a partial run is useful).
# Baselines pin their augmentations as dg_table's do, so they are the same whatever a config chose.
METHODS = {name: dg_table.METHODS[name] for name in
           ("ERM U-Net + colour aug", "VLSA", "ERM U-Net + GIN-IPA", "ERM U-Net + GIN-IPA p 0.5", "VLSA w/o EM",
            "VLSA w/o text guidance", "ERM U-Net", "ERM U-Net + RandConv", "VLSA text=none")}
METHODS |= {"VLSA (medsam)": ["model.backbone.name=medsam"], "VLSA (hybrid)": ["model.backbone.name=hybrid"]}
# nnU-Net v2 (vlsa.baselines.nnunet_row.run_configured): its own planning, augmentation and schedule
# (NNUNET_BUDGET: 600 iterations x batch 8, as every engine row's 600 steps x batch 8) on the pixels every
# row sees (the setting's model grid, data.image_size), scored on the original grid
METHODS |= {nnunet_row.ROW: []}
# Why the frozen LiteMedSAM encoder loses (issue 26, item 2), declared before these ran: the decoder's
# capacity for its 256-channel features (decoder dim 64, not 32), and the bank of appearance views it
# trains on (16 cached views per image, not 4; fundus only: ACDC's 4-view bank alone took ~50 min of one core)
METHODS |= {"VLSA (medsam, decoder 64)": ["model.backbone.name=medsam", "model.decoder.dim=64", "model.decoder.embed_dim=64"],
            "VLSA (medsam, 16 views)": ["model.backbone.name=medsam", "data.augment.views=16"]}
# Session 17, declared before these ran: the frozen encoder's features shift under appearance changes
# more than a decoder trained on 4-16 fixed views absorbs, so give the decoder a fresh shift of the
# features' channel statistics at every step (DSU, Li et al., ICLR 2022: model.dsu, p 0.5 as in the
# paper), on each backbone; candidates for the default (select_real.py), chosen by rule 2 as the others
DSU_ROWS = {"VLSA (DSU)": ["model.dsu=0.5"], "VLSA (medsam, DSU)": ["model.backbone.name=medsam", "model.dsu=0.5"],
            "VLSA (hybrid, DSU)": ["model.backbone.name=hybrid", "model.dsu=0.5"]}
METHODS |= DSU_ROWS
# Session 18, declared before these ran: 16 views of colour/intensity jitter did not make the frozen
# encoder's decoder more robust (corrupted source validation 0.757 vs 4 views' 0.775), so is it the
# *kind* of view? The same 16-view bank with RandConv (random linear filters: blur-, edge- and
# inversion-like appearance, p 0.5 per view) or GIN-IPA (random shallow non-linear networks, p 0.5) on
# top of the colour jitter; fundus only, candidates for the default as the others
VIEW_ROWS = {"VLSA (medsam, RandConv views)": ["model.backbone.name=medsam", "data.augment.views=16",
                                                *dg_table.sdg_overrides(randconv=True)],
             "VLSA (medsam, GIN-IPA views)": ["model.backbone.name=medsam", "data.augment.views=16",
                                               *dg_table.sdg_overrides(gin_ipa_p=0.5)],
             # session 19: the GIN-IPA views model lost 0.08-0.25 source-validation Dice on photos cut off
             # the canonical scale (benchmarks/results/drishti_packaging.md), because a cached backbone's
             # zoom was a warp of its 24 x 24 feature maps; here each bank view is zoomed in image space
             # before the encoder (data.augment.view_zoom). Declared before it ran; fundus-scale only
             "VLSA (medsam, GIN-IPA zoomed views)": ["model.backbone.name=medsam", "data.augment.views=16",
                                                      *dg_table.sdg_overrides(gin_ipa_p=0.5),
                                                      "data.augment.view_zoom=true"],
             # session 20, declared before it ran: the same bank (the hybrid caches exactly medsam's
             # features) beside the trainable CNN's full-resolution features, for the disc boundary the
             # frozen encoder's 24 x 24 maps blur (whole-photo disc Dice 0.93 against the CNN's 0.96)
             "VLSA (hybrid, GIN-IPA zoomed views)": ["model.backbone.name=hybrid", "data.augment.views=16",
                                                      *dg_table.sdg_overrides(gin_ipa_p=0.5),
                                                      "data.augment.view_zoom=true"]}
METHODS |= VIEW_ROWS
# Diagnostic rows: not candidates for a default (a default is chosen on source data,
# benchmarks/select_vlsa.py), they test one explanation of a lost setting. fundus-sim: VLSA trains with
# colour augmentation only (fundus_sdg's policy, chosen on synthetic source validation), while ERM
# U-Net + RandConv wins synthetic -> real fundus; does RandConv close it?
DIAGNOSTIC = {"VLSA + RandConv": dg_table.sdg_overrides(randconv=True),
              # Session 21, declared before these ran (issue 26 item 2's one cause not yet measured):
              # the frozen encoder's 64 x 64 maps are pooled to the decoder's grid, 24 x 24 at 96 px,
              # which may blur the disc boundary (whole-photo disc Dice 0.93 against the CNN's 0.96,
              # drishti_packaging.md). The model grid at 192 px (48 x 48 maps) for VLSA (medsam) and,
              # as the control for what resolution does on its own, for VLSA (cnn). If the pooling is
              # what costs the frozen encoder, its same-site disc Dice gains more than the CNN's.
              # Fundus only; 4x the decoder's pixels per step, so not the rows' budget
              "VLSA (medsam, 192 px)": ["model.backbone.name=medsam", "data.image_size=192"],
              "VLSA (192 px)": ["data.image_size=192"]}
METHODS |= DIAGNOSTIC
# rows run only in the settings named (every other row: in every setting)
ONLY_IN = {"VLSA + RandConv": ("fundus-sim",), "VLSA (medsam, 192 px)": ("fundus",), "VLSA (192 px)": ("fundus",),
           "VLSA (medsam, decoder 64)": ("fundus", "cardiac"),
           "VLSA (medsam, 16 views)": ("fundus",),
           # DSU on the frozen encoders: fundus only (ACDC's feature bank costs ~50 min of one core)
           "VLSA (DSU)": ("fundus", "fundus-scale", "cardiac"), "VLSA (medsam, DSU)": ("fundus",),
           "VLSA (hybrid, DSU)": ("fundus",), **{name: ("fundus",) for name in VIEW_ROWS},
           # rule 2's fundus choice (session 18), then run where drishti_sdg trains (its bank is the same)
           "VLSA (medsam, GIN-IPA views)": ("fundus", "fundus-scale"),
           "VLSA (medsam, GIN-IPA zoomed views)": ("fundus-scale",),
           # rule 2's fundus-scale choice, packaged in drishti_sdg once the packaging gate let it pass
           # (session 21), so run in the fundus setting too: the packaged model's row in both
           "VLSA (hybrid, GIN-IPA zoomed views)": ("fundus", "fundus-scale")}
# what each row is, recorded in dg_real.json so a reader (readme_results.py) need not parse names:
# a baseline, VLSA on one backbone, an ablation (VLSA without one part), a variant of one backbone
# (the why-candidates above), or a diagnostic row
ABLATIONS = ("VLSA w/o EM", "VLSA w/o text guidance", "VLSA text=none", "VLSA w/o post-processing")
VARIANTS = ("VLSA (medsam, decoder 64)", "VLSA (medsam, 16 views)", *DSU_ROWS, *VIEW_ROWS)
NNUNET_BUDGET = nnunet_row.Budget()
DERIVED = dg_table.DERIVED
REFERENCE = dg_table.REFERENCE
BASELINES = ("ERM U-Net", "ERM U-Net + colour aug", "ERM U-Net + RandConv", "ERM U-Net + GIN-IPA",
             "ERM U-Net + GIN-IPA p 0.5", "nnU-Net v2")
DEFAULT_METHOD = dg_table.DEFAULT_METHOD
# the packaged config's model where it is not the paper's VLSA: acdc_sdg trains VLSA text=none, chosen
# by benchmarks/select_real.py on source validation (session 10, before the nnU-Net rows ran); the
# target is checked for it, and for the paper's VLSA beside it. drishti_sdg trains VLSA (hybrid, GIN-IPA
# zoomed views) since session 21: rule 2's fundus-scale choice, then not refused by the whole-photo
# packaging gate (benchmarks/packaging_check.py; select_real.PACKAGING says what became of each choice)
PACKAGED_DEFAULT = {"cardiac": "VLSA text=none", "fundus": "VLSA (hybrid, GIN-IPA zoomed views)",
                    "fundus-scale": "VLSA (hybrid, GIN-IPA zoomed views)"}
# shown for a row with no finished unit in a setting
NOT_RUN = {nnunet_row.ROW: "not run in this setting yet: `python benchmarks/dg_real.py --settings SETTING --methods "
                           "'nnU-Net v2'` (needs `pip install 'vlsa[nnunet]'`)"}


def not_run(setting: str, methods: dict) -> dict[str, str]:
    """The rows of METHODS with no finished unit in `setting` -> why, with the command that runs them
    (a table lists them rather than leave a row out silently)."""
    generic = "not run in this setting yet: `python benchmarks/dg_real.py --settings SETTING --methods '{}'`"
    return {m: NOT_RUN.get(m, generic.format(m)).replace("SETTING", setting) for m in METHODS
            if m not in methods and runs_in(setting, m)}


def row_kind(method: str) -> str:
    """'baseline', 'vlsa' (one backbone), 'ablation', 'variant' or 'diagnostic' for a row of METHODS
    or DERIVED. Raises KeyError for a name that is neither."""
    if method in BASELINES or (method in DERIVED and DERIVED[method][0] in BASELINES):
        return "baseline"
    for kind, names in (("ablation", ABLATIONS), ("variant", VARIANTS), ("diagnostic", DIAGNOSTIC)):
        if method in names:
            return kind
    if method in METHODS:
        return "vlsa"
    raise KeyError(f"{method!r}: not a row of dg_real.py")


def runs_in(setting: str, method: str) -> bool:
    """Whether `method` is a row of `setting` (one of ONLY_IN only in the settings it names)."""
    return method not in ONLY_IN or setting in ONLY_IN[method]


def unit_config(setting: str, method: str, seed: int, threads: int | None = None):
    name, sets = SETTINGS[setting]
    return load_config(name, [*sets, *METHODS[method], f"seed={seed}", "train.device=cpu",
                              *([f"train.threads={threads}"] if threads else [])])


def unit_key(setting: str, method: str, seed: int) -> str:
    """What a unit computes: dg_table's digest of the resolved config (threads, device, source and
    targets left out; the data roots resolved as training saves them); for nnU-Net, `nnunet_key`."""
    config = unit_config(setting, method, seed)
    from vlsa.engine.data import resolve_roots

    resolve_roots(config)
    return nnunet_key(config) if method == nnunet_row.ROW else dg_table.unit_digest(config)


def nnunet_key(config) -> str:
    """What an nnU-Net unit reads of a config: the data section (its image size is nnU-Net's grid,
    `nnunet_row.run_configured`) without the augmentation (nnU-Net has its own), the seed, its budget
    and the scoring; settings that differ only in augmentation (fundus and fundus-scale) share one
    nnU-Net unit."""
    import hashlib

    from vlsa.engine.inference import SCORING_VERSION

    data = {k: v for k, v in digest_tree(config.to_dict())["data"].items() if k != "augment"}
    tree = {"row": nnunet_row.ROW, "data": data, "seed": config.seed, "budget": NNUNET_BUDGET.as_dict(),
            "scoring": SCORING_VERSION}
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]


def shared_record(records: Path, method: str, seed: int, key: str) -> dict | None:
    """A committed record of `method` / `seed` with `key` under any setting (nnU-Net units shared by
    settings that differ in what nnU-Net does not read)."""
    for path in sorted(records.glob(f"*/{dg_table.slug(method)}/s{seed}.json")):
        rec = json.loads(path.read_text())
        if rec.get("key") == key:
            return rec
    return None


def record_folders(records: Path) -> list[Path]:
    """Where unit records are read from: `records`, then the committed ones."""
    return list(dict.fromkeys(p.resolve() for p in (records, COMMITTED) if p.is_dir()))


def record_of(folders: list[Path], setting: str, method: str, seed: int) -> dict | None:
    """The first record of a unit in `folders` whose key is the one this script would train now."""
    key = unit_key(setting, method, seed)
    for folder in folders:
        path = folder / setting / dg_table.slug(method) / f"s{seed}.json"
        if path.is_file() and (rec := json.loads(path.read_text())).get("key") == key:
            return rec
    return None


def recorded(records: Path, setting: str, method: str, seed: int) -> bool:
    """Whether a unit is finished (`record_of`). A fresh checkout, whose benchmarks/runs/ is empty,
    resumes from the committed records instead of training every unit again."""
    return record_of(record_folders(records), setting, method, seed) is not None


def slim(result: dict) -> dict:
    """dg_table's slim record plus the per-case scores of every domain (the paired units here)."""
    out = dg_table.slim(result)
    for name, run in result["runs"].items():
        for key in dg_table.RECORD_KEYS:
            for d, dom in run.get(key, {}).items():
                if "cases" in dom:
                    out["runs"][name][key][d]["cases"] = {c: {"dice": v["dice"]["mean"]} for c, v in dom["cases"].items()}
                if "n_annotated" in dom:
                    out["runs"][name][key][d]["n_annotated"] = dom["n_annotated"]
    return out


def wall_seconds(unit: Path) -> float | None:
    """Training seconds (log.csv's clock) of a unit's run(s)."""
    from vlsa.engine.run_folder import read_log

    total = None
    for log in unit.glob("*/log.csv"):
        rows = read_log(log, upto=sys.maxsize)  # by column name, not position
        if rows:
            total = (total or 0.0) + float(rows[-1]["seconds"] or 0)
    if total is None and (unit / "protocol.json").is_file():  # nnU-Net: no log.csv, its unit's own clock
        walls = [r.get("wall_s") for r in json.loads((unit / "protocol.json").read_text())["runs"].values()]
        total = sum(walls) if walls and all(walls) else None
    return total


COMMITTED = ROOT / "benchmarks" / "results" / "dg_real_units"


def collect(runs: Path, records: Path) -> dict:
    """units[(setting, method)][seed] = slim result: the runs folder first, then records (in
    `records`, then the committed ones) whose key matches what this script would train now."""
    units: dict = {}
    folders = record_folders(records)
    for setting in SETTINGS:
        for method in [m for m in METHODS if runs_in(setting, m)]:
            folder = runs / setting / dg_table.slug(method)
            for path in sorted(folder.glob("s*/protocol.json")):
                seed = int(path.parent.name[1:])
                rec = {"key": unit_key(setting, method, seed), **slim(json.loads(path.read_text())),
                       "train_seconds": wall_seconds(path.parent)}
                write_json(records / setting / dg_table.slug(method) / f"s{seed}.json", rec)
                units.setdefault((setting, method), {})[seed] = rec
            seeds = {int(p.stem[1:]) for f in folders for p in (f / setting / dg_table.slug(method)).glob("s*.json")}
            for seed in sorted(seeds - set(units.get((setting, method), {}))):
                if (rec := record_of(folders, setting, method, seed)) is not None:
                    units.setdefault((setting, method), {})[seed] = rec
            if method == nnunet_row.ROW:  # a unit another setting ran with the same key
                for seed in range(max([*units.get((setting, method), {}), 2]) + 1):
                    if seed not in units.get((setting, method), {}):
                        rec = next((r for f in folders for r in [shared_record(f, method, seed,
                                                                             unit_key(setting, method, seed))] if r), None)
                        if rec is not None:
                            units.setdefault((setting, method), {})[seed] = rec
        for name, (method, key) in DERIVED.items():
            for seed, rec in units.get((setting, method), {}).items():
                if all(key in r for r in rec["runs"].values()):
                    units.setdefault((setting, name), {})[seed] = {
                        **rec, "runs": {n: {**r, "domains": r[key]} for n, r in rec["runs"].items()}}
    return units


def _mean(values) -> float:
    values = [v for v in values if is_number(v)]
    return float(np.mean(values)) if values else float("nan")


# sim-to-real: the unseen sites are the real data (data.target_datasets, domain keys NAME/DOMAIN),
# not the synthetic set's other sites, which the single-source protocol scores as well
REAL_TARGETS_ONLY = ("fundus-sim", "cardiac-sim")


def seed_row(rec: dict, real_targets_only: bool = False) -> tuple[dict, dict]:
    """One seed's record -> (table row, paired units {case key: mean Dice} over the unseen cases).

    The record's first run is scored: the setting's own source (Drishti-GS1, ACDC; the synthetic
    sets' Domain1 / A, which the single-source protocol trains first and the nnU-Net row trains
    alone; the protocol's runs from the other synthetic sites are not part of the row).
    `real_targets_only` (REAL_TARGETS_ONLY settings): the unseen sites are the data.target_datasets
    domains only (keys NAME/DOMAIN), not the synthetic set's other sites."""
    doms = next(iter(rec["runs"].values()))["domains"]
    unseen = {k: d for k, d in doms.items() if d["role"] == "target" and (not real_targets_only or "/" in k)}
    same = [d for d in doms.values() if d["role"] == "source"]
    row = {"unseen_dice": _mean(d["dice"]["mean"] for d in unseen.values()),
           "source_dice": _mean(d["dice"]["mean"] for d in same),
           "unseen_hd95": _mean(d["hd95"]["mean"] for d in unseen.values())}
    classes = dict.fromkeys(c for d in [*same, *unseen.values()] for c in d["dice"] if c != "mean")
    for c in classes:
        row[f"unseen_dice_{c}"] = _mean(d["dice"].get(c) for d in unseen.values())
        row[f"source_dice_{c}"] = _mean(d["dice"].get(c) for d in same)
    paired = {f"{k}/{c}": v["dice"] for k, d in unseen.items()
              for c, v in d.get("cases", {}).items() if is_number(v["dice"])}
    return row, paired


def summarise(units: dict) -> dict:
    table: dict = {}
    for (setting, method), by_seed in units.items():
        rows, paired, seconds = {}, {}, []
        for seed, rec in sorted(by_seed.items()):
            rows[seed], cases = seed_row(rec, setting in REAL_TARGETS_ONLY)
            paired |= {f"s{seed}/{k}": v for k, v in cases.items()}
            if rec.get("train_seconds"):  # sim-to-real: per synthetic source run (older units trained all 4 fundus sites)
                seconds.append(rec["train_seconds"] / (len(rec["runs"]) if setting in REAL_TARGETS_ONLY else 1))
        keys = next(iter(rows.values())).keys()
        table.setdefault(setting, {})[method] = {
            "seeds": sorted(by_seed), **{k: _mean(r[k] for r in rows.values()) for k in keys},
            **{f"{k}_std": dg_stats.sample_std([r[k] for r in rows.values() if is_number(r[k])]) for k in keys},
            "train_seconds": float(np.mean(seconds)) if seconds else None,
            "units": {"unseen_dice": paired, "unseen_hd95": {}}}
    order = [*METHODS, *DERIVED]
    return {s: dict(sorted(m.items(), key=lambda kv: order.index(kv[0]))) for s, m in table.items()}


def target_check(table: dict, method_of: dict | None = None) -> dict:
    """setting -> the default method (`method_of`, default PACKAGED_DEFAULT, else VLSA) against the
    strongest baseline run there (highest mean unseen Dice), paired per (seed, unseen case):
    dg_table's margin record (met when >= TARGET_MARGIN); `missing`: the baselines not run in that
    setting, which the check therefore does not cover."""
    method_of = PACKAGED_DEFAULT if method_of is None else method_of
    out = {}
    for setting, methods in table.items():
        baselines = [m for m in BASELINES if m in methods]
        method = method_of.get(setting) if method_of.get(setting) in methods else DEFAULT_METHOD
        if method in methods and baselines:
            best = max(baselines, key=lambda m: methods[m]["unseen_dice"])
            check = dg_table._margin(methods, method, best)  # same TARGET_MARGIN (0.03)
            if check is not None:
                out[setting] = check | {"missing": [m for m in BASELINES if m not in methods]}
    return out


def _pm(row: dict, key: str, fmt: str = "{:.3f}") -> str:
    value, std = row.get(key, float("nan")), row.get(key + "_std", float("nan"))
    if not is_number(value) or np.isnan(value):
        return "not annotated"
    return fmt.format(value) + (" ± " + fmt.format(std) if is_number(std) and not np.isnan(std) else "")


def setting_markdown(setting: str, methods: dict) -> list[str]:
    classes = list(dict.fromkeys(k[len("unseen_dice_"):] for m in methods.values() for k in m
                                 if k.startswith("unseen_dice_") and not k.endswith("_std")))
    unit = UNSEEN_UNITS[setting]
    header = ["method", "seeds", "same-site Dice", "unseen Dice", *(f"unseen {c}" for c in classes),
              f"unseen HD95 ({unit})", "train s/unit"]
    out = [f"\n## {setting}: {TITLES[setting]}\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, r in methods.items():
        secs = f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "–"
        out.append("| " + " | ".join([method, str(len(r["seeds"])), _pm(r, "source_dice"), f"**{_pm(r, 'unseen_dice')}**",
                                      *(_pm(r, f"unseen_dice_{c}") for c in classes), _pm(r, "unseen_hd95", "{:.1f}"),
                                      secs]) + " |")
    for name, why in not_run(setting, methods).items():
        out.append(f"| {name} | 0 | {why} |" + " |" * (len(header) - 3))
    diagnostic = [m for m in DIAGNOSTIC if runs_in(setting, m)]
    if diagnostic:
        out.append(f"\nDiagnostic rows ({', '.join(diagnostic)}): they test one explanation of this setting's result "
                   "and are not candidates for the default, which is chosen on source data only.")
    out += paired_markdown(methods, REFERENCE, list(methods))
    # the ablations ask whether EM Aggregation, text guidance and the foundation backbones matter:
    # each against the default itself
    out += paired_markdown(methods, DEFAULT_METHOD, [m for m in methods if m.startswith("VLSA ")])
    return out


def paired_markdown(methods: dict, reference: str, rows: list[str]) -> list[str]:
    """The paired table of `rows` against `reference` per (seed, unseen case); empty without pairs."""
    cmp = dg_stats.compare({m: r["units"] for m, r in methods.items() if m in (*rows, reference)}, reference)
    out = []
    if cmp:
        out += [f"\nPaired with **{reference}** per (seed, unseen case): mean Δ unseen Dice [95 % t-interval].\n",
                "| method | paired units | Δ unseen Dice [95 % CI] | verdict |", "|---|---|---|---|"]
        for method, c in cmp.items():
            d = c["unseen_dice"]
            if d["n"] == 0:  # e.g. a derived row of units recorded before per-case scores were kept
                out.append(f"| {method} | 0 | no per-case record | – |")
                continue
            ci = f"{d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]" if d["n"] >= 2 else f"{d['mean']:+.3f}"
            out.append(f"| {method} | {d['n']} | {ci} | {dg_stats.verdict_text(d, reference)} |")
    return out


def markdown(table: dict, budgets: dict, prov: dict, png: str) -> str:
    out = ["# Single-source DG on real data\n", f"![unseen Dice per method]({png})\n",
           "One real source per setting; **same-site** = the source dataset's own test split, **unseen** = the mean "
           "over the target sites' domains (a site's Dice: mean over the classes it annotates; Sunnybrook has no RV "
           "annotation). Sim-to-real (" + ", ".join(REAL_TARGETS_ONLY) + "): trained on the synthetic set's first "
           "site (fundus Domain1, cardiac A, the config's data.source, the one the nnU-Net row trains; units "
           "recorded before session 16 trained every synthetic site, and only this one's run is scored), "
           "**unseen** = the real target datasets only, never the synthetic set's other sites; train s/unit: per "
           "synthetic source run. "
           "Mean ± sample std (ddof 1) over seeds. Budget per setting (every method the same): "
           + "; ".join(f"{s}: " + ", ".join(f"{k} {v}" for k, v in b.items()) for s, b in budgets.items()) + ". "
           + f"{nnunet_row.ROW}: {NNUNET_BUDGET.describe()}; on the engine rows' model grid (data.image_size px: "
           "2D images resized, slices padded/cropped), scored on the original grid.\n",
           "Reproduce with `python benchmarks/dg_real.py` (resumable; finished units are read back from "
           "`benchmarks/results/dg_real_units/`). Provenance of the process that wrote this file:\n", provenance_markdown(prov)]
    checks, paper = target_check(table), target_check(table, {})
    for setting, methods in table.items():
        out += setting_markdown(setting, methods)
        for c, who in ((checks.get(setting), "the packaged default"), (paper.get(setting), "the paper's VLSA")):
            if c is None or (who != "the packaged default" and c["method"] == checks[setting]["method"]):
                continue
            p = c["paired"]
            ci = f"{p['mean']:+.3f} [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}]" if p["n"] >= 2 else f"{p['mean']:+.3f}"
            out.append(f"\nTarget: **{c['method']}** ({who}) ≥ {c['target']:.2f} unseen Dice above the strongest baseline "
                       f"run here, **{c['best_baseline']}**: margin {c['margin']:+.3f} -> **{'met' if c['met'] else 'missed'}**; "
                       f"paired over {p['n']} (seed, case) units: {ci}, {dg_stats.verdict_text(p, c['best_baseline'])}.")
    return "\n".join(out) + "\n"


def write_results(out: Path, runs: Path, prov: dict) -> dict:
    records = out / "dg_real_units"
    units = collect(runs, records)
    if not units:
        raise VlsaError(f"{runs}: no finished units, and no matching records in {records}")
    table = summarise(units)
    budgets = {s: dg_table.budget_of(unit_config(s, "VLSA", 0)) for s in table}
    kinds = {m: row_kind(m) for m in dict.fromkeys(m for methods in table.values() for m in methods)}
    write_json(out / "dg_real.json", {"provenance": prov, "budgets": budgets, "table": table, "reference": REFERENCE,
                                      "kinds": kinds,
                                      "target": target_check(table), "target_paper_vlsa": target_check(table, {}),
                                      # rows with no unit in any setting (a setting without one says so in its table)
                                      "not_run": {m: why for m, why in NOT_RUN.items()
                                                  if not any(m in methods for methods in table.values())},
                                      "not_run_in": {s: sorted(not_run(s, methods)) for s, methods in table.items()}})
    write_text(out / "dg_real.md", markdown(table, budgets, prov, "dg_real.png"))
    import plots

    plots.TITLES.update(TITLES)
    plot_dg(table, out / "dg_real.png")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["fundus", "cardiac"], choices=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--report-only", action="store_true", help="write the results from finished units; train nothing")
    parser.add_argument("--retrain", action="store_true",
                        help="train a unit again even where it is recorded (a fresh checkout has no run folders, "
                             "which select_real.py and tta_real.py read back); with --out elsewhere, so the "
                             "committed records stay as they are")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for this process")
    parser.add_argument("--runs", default=str(ROOT / "benchmarks" / "runs" / "real"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    if args.retrain and Path(args.out).resolve() == (ROOT / "benchmarks" / "results").resolve():
        raise VlsaError("--retrain needs --out elsewhere: its units would replace the committed records")
    if not REAL.is_dir():
        raise VlsaError(f"{REAL}: the real data is absent (set VLSA_REALDATA)")
    out, runs = Path(args.out), Path(args.runs)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("VLSA_FEATURE_CACHE_DIR", str(ROOT / "benchmarks" / "runs" / "feature_cache"))
    prov = provenance()
    if not args.report_only:
        for seed in args.seeds:
            for method in args.methods:
                for setting in [s for s in args.settings if runs_in(s, method)]:
                    unit = runs / setting / dg_table.slug(method) / f"s{seed}"
                    if (not args.retrain and not (unit / "protocol.json").is_file()
                            and recorded(out / "dg_real_units", setting, method, seed)):
                        print(f"== {setting} | {method} | seed {seed}: recorded", flush=True)
                        continue
                    with dg_table.claim(unit) as mine:
                        print(f"== {setting} | {method} | seed {seed}" + ("" if mine else ": busy"), flush=True)
                        if not mine or (unit / "protocol.json").is_file():
                            continue
                        t0 = time.time()
                        if method == nnunet_row.ROW:
                            if shared_record(out / "dg_real_units", method, seed, unit_key(setting, method, seed)):
                                print("   the same nnU-Net unit is recorded under another setting", flush=True)
                                continue
                            if not nnunet_row.available():
                                print(f"   skipped: {NOT_RUN[method]}", flush=True)
                                continue
                            nnunet_row.run_configured(unit_config(setting, method, seed, args.threads), unit,
                                                      NNUNET_BUDGET, threads=args.threads or 1)
                        else:
                            config = unit_config(setting, method, seed, args.threads)
                            run_protocol(config, "single-source", unit, quiet=True,
                                         sources=config.data.source if setting in REAL_TARGETS_ONLY else None)
                        print(f"   {time.time() - t0:.0f} s", flush=True)
                    write_results(out, runs, prov)
    write_results(out, runs, prov)
    print((out / "dg_real.md").read_text())


if __name__ == "__main__":
    try:
        main()
    except VlsaError as exc:
        print(f"dg_real.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
