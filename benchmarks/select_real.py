"""Choose VLSA's default configuration on *real* source data, by select_vlsa's rule 2, unchanged.

For each real-data setting of `dg_real.py` (fundus, fundus-scale: Drishti-GS1 source; cardiac: ACDC source), each
VLSA row there (CANDIDATES) and each finished seed, read the unit's run back: its best
source-validation Dice (log.csv, the checkpoint-selection score), its source-validation Dice under
`source_shift.py`'s appearance corruptions (cached per run in source_shift.json), and, shown only so
the note can say afterwards what the choice cost or bought, the same-site test Dice and the unseen
Dice (protocol.json, as dg_real's table reads them). Rule 2 (`select_vlsa.rule_2`, SHIFT_GAIN and
CLEAN_TOLERANCE from there) then runs per setting with "VLSA" as the default, over the same seeds
only: a candidate whose seeds differ from the default's cannot be chosen.

Nothing is trained here: a unit without protocol.json (unfinished, or claimed by a dg_real process)
or without checkpoints/best.pt is skipped and listed in the report.

    python benchmarks/select_real.py --threads 1                  # all settings, seeds 0 1 2
    python benchmarks/select_real.py --settings fundus --seeds 0
    python benchmarks/select_real.py --report-only                # from the committed JSON
    python benchmarks/select_real.py --settings fundus-scale --runs benchmarks/runs/retrained
        # run folders a fresh checkout lacks: `dg_real.py --retrain ... --runs benchmarks/runs/retrained`

Writes benchmarks/results/vlsa_selection_real.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dg_real  # noqa: E402
import packaging_check  # noqa: E402
from common import provenance, provenance_markdown  # noqa: E402
from dg_table import slug  # noqa: E402
from select_vlsa import CLEAN_TOLERANCE, SHIFT_GAIN, best_val, mean_score, per_corruption_means, rule_2  # noqa: E402

from vlsa.utils.atomic import write_json, write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# fundus-scale (drishti_sdg's zooms) added in session 18: the setting the packaged fundus config trains;
# its run folders came from `dg_real.py --retrain` (a fresh checkout has none)
SETTINGS = ("fundus", "fundus-scale", "cardiac")
DEFAULT = "VLSA"  # the packaged default (cnn backbone)
CANDIDATES = (DEFAULT, "VLSA (medsam)", "VLSA (hybrid)", "VLSA w/o EM", "VLSA w/o text guidance", "VLSA text=none",
              # added in session 14, before they ran: why the frozen LiteMedSAM encoder loses (dg_real.py)
              "VLSA (medsam, decoder 64)", "VLSA (medsam, 16 views)",
              # added in session 17, before they ran: feature-statistics uncertainty (DSU) on each backbone
              *dg_real.DSU_ROWS,
              # added in session 18, before they ran: the kind of appearance view in the frozen encoder's bank
              *dg_real.VIEW_ROWS)
assert all(c in dg_real.METHODS for c in CANDIDATES)
# what the packaged config does with a setting's rule-2 choice, where that is not the default, and why;
# "{gate}" is the packaging gate's reading of the chosen candidate, from drishti_packaging.json when the
# report is written (`gate_reading`), so the numbers are the gate's latest, never a copy
PACKAGING = {
    "fundus": "Packaged in drishti_sdg (session 21): the same choice as on fundus-scale (below), the setting "
              "drishti_sdg trains. {gate} (Before this row ran here, in session 22, this setting chose VLSA "
              "(medsam, GIN-IPA views), which fails the gate, and before that session 17's VLSA (DSU), which fails "
              "rule 2 on fundus-scale.)",
    "fundus-scale": "Packaged in drishti_sdg (session 21). {gate} The GIN-IPA views (as for fundus) and the medsam "
                    "zoomed views fail the gate (drishti_packaging.md)."}
RESULTS = ROOT / "benchmarks" / "results"


def read_unit(unit: Path) -> tuple[dict | None, str]:
    """One finished dg_real unit (<setting>/<method>/s<seed>) -> (entry, "") or (None, why skipped)."""
    from source_shift import shifted_val

    if not (unit / "protocol.json").is_file():
        return None, "unfinished (no protocol.json)" + (", claimed by a running process" if (unit / ".busy").exists() else "")
    run_dir = next((p.parent for p in sorted(unit.glob("*/metrics.json"))), None)
    if run_dir is None or not (run_dir / "checkpoints" / "best.pt").is_file():
        return None, "no run with metrics.json and checkpoints/best.pt"
    row, _ = dg_real.seed_row(json.loads((unit / "protocol.json").read_text()))
    shift = shifted_val(run_dir)
    return {"source_val": best_val(run_dir), "shifted": shift["corrupted"], "per_corruption": shift["per_corruption"],
            "source_test": row["source_dice"], "unseen": row["unseen_dice"]}, ""


def read_units(runs: Path, plan: dict, seeds, read, skipped: list[str], absent: bool = False):
    """Yield (setting, row, seed, entry) for each unit of `plan` ({setting: rows}) and seed that
    `read` (unit folder -> (entry, "") or (None, why)) reads; the others are appended to `skipped`,
    one line each (a unit never started only when `absent`)."""
    for setting, names in plan.items():
        for name in names:
            for seed in seeds:
                unit = runs / setting / slug(name) / f"s{seed}"
                if not unit.is_dir():
                    if absent:
                        skipped.append(f"{setting} | {name} | seed {seed}: not run")
                    continue
                print(f"== {setting} | {name} | seed {seed}", flush=True)
                entry, why = read(unit)
                if entry is None:
                    skipped.append(f"{setting} | {name} | seed {seed}: {why}")
                    continue
                yield setting, name, seed, entry


def collect(runs: Path, settings, seeds) -> tuple[dict, list[str]]:
    """setting -> candidate -> "s<seed>" -> entry; and the skipped units, one line each."""
    results: dict = {}
    skipped: list[str] = []
    for setting, name, seed, entry in read_units(runs, {s: CANDIDATES for s in settings}, seeds, read_unit, skipped):
        results.setdefault(setting, {}).setdefault(name, {})[f"s{seed}"] = entry
    return results, skipped


def merge_recorded(saved: dict, results: dict, skipped: list[str], seeds) -> tuple[dict, list[str], list[int]]:
    """The recorded selection (`vlsa_selection_real.json`) updated with the units read now: a unit
    read now replaces its record; a recorded unit not read now is kept, and so is a recorded skip
    line of a unit still unread. -> (results, skipped, the union of the seeds)."""
    merged = json.loads(json.dumps(saved["results"]))
    for setting, names in results.items():
        for name, by_seed in names.items():
            merged.setdefault(setting, {}).setdefault(name, {}).update(by_seed)

    def read_now(line: str) -> bool:
        setting, name, seed = (part.strip() for part in line.split(":", 1)[0].split("|"))
        return f"s{seed.removeprefix('seed ')}" in merged.get(setting, {}).get(name, {})

    kept = [line for line in saved.get("skipped", []) if not read_now(line) and line not in skipped]
    return merged, kept + skipped, sorted(set(saved.get("seeds", [])) | set(seeds))


def choose(results: dict, setting: str) -> str:
    """Rule 2 for one setting: the default unless a candidate on the same seeds clears it."""
    return rule_2(results, setting, DEFAULT, list(results.get(setting, {})))


def _delta(results: dict, setting: str, name: str) -> str:
    if name == DEFAULT or DEFAULT not in results[setting]:
        return "default" if name == DEFAULT else "–"
    if set(results[setting][name]) != set(results[setting][DEFAULT]):
        return "other seeds: not eligible"
    d_shift, d_clean = (mean_score(results, setting, name, k) - mean_score(results, setting, DEFAULT, k)
                        for k in ("shifted", "source_val"))
    ok = d_shift >= SHIFT_GAIN and d_clean >= -CLEAN_TOLERANCE
    return f"{d_shift:+.4f} / {d_clean:+.4f}: {'passes' if ok else 'fails'}"


def _pm(by_seed: dict, key: str, fmt: str = "{:.4f}") -> str:
    values = [r[key] for r in by_seed.values()]
    std = f" ± {fmt.format(np.std(values, ddof=1))}" if len(values) > 1 else ""
    return fmt.format(np.mean(values)) + std


def gate_reading(name: str) -> str:
    """The packaging gate's reading of candidate `name` (benchmarks/results/drishti_packaging.json,
    `packaging_check.py`: drishti_sdg trained and evaluated as a user would, scored on the 51
    Drishti-GS1 Test whole photos), as one sentence for the report."""
    path = RESULTS / "drishti_packaging.json"
    summary = json.loads(path.read_text())["summary"] if path.is_file() else {}
    row = summary.get(name)
    if not row or "vs_reference" not in row:
        return f"Not gated yet: `python benchmarks/packaging_check.py --variants \"{name}\"`."
    c, ref = row["vs_reference"], summary[packaging_check.REFERENCE]
    return (f"Packaging gate (drishti_packaging.md, `python benchmarks/packaging_check.py`, {len(row['seeds'])} "
            f"seed(s), 51 Drishti-GS1 Test whole photos): {packaging_check.gate(row)}. Whole-photo disc Dice "
            f"{row['photo_disc']['mean']:.3f} against the paper's VLSA (cnn)'s {ref['photo_disc']['mean']:.3f}, per "
            f"seed {packaging_check.ci_text(c['photo_disc_per_seed'])}; vCDR absolute error per photo x seed "
            f"{packaging_check.ci_text(c['vcdr_abs_error_per_photo'])}.")


def report(results: dict, skipped: list[str], prov: dict, seeds) -> str:
    lines = ["# VLSA configuration chosen on real source data", "",
             "The real-data units of `dg_real.py` (fundus and fundus-scale: Drishti-GS1 source; cardiac: ACDC "
             "source), read back. The fundus-scale units' run folders came from `dg_real.py --retrain` (session 18, "
             "their committed records untouched), so their columns are those of the retrained runs; so did the "
             "fundus units of VLSA (hybrid, GIN-IPA zoomed views) (session 22, on an AMD EPYC whose AVX-512 has "
             "BF16, so OpenVINO ran the encoder's transformer stages in bf16: unseen 0.812 against the records' "
             "0.811). "
             "**Chosen by source validation only** (clean and under `source_shift.py`'s generic "
             "corruptions): the same-site test and unseen columns are shown after the choice, never used for it. "
             "Mean ± sample std (ddof 1) over seeds.", "",
             "Rule 2 of `benchmarks/select_vlsa.py`, imported unchanged: it was fixed in session 5 (commit 5a252f0, "
             "on the synthetic benchmarks), before any of these real-data candidates ran (`dg_real.py` came later, "
             "commit 1b534cb). A candidate replaces the default (**VLSA**, cnn backbone) only if its mean corrupted "
             f"source-validation Dice is at least {SHIFT_GAIN} above the default's and its mean clean "
             f"source-validation Dice no more than {CLEAN_TOLERANCE} below; of several, the highest corrupted score; "
             "compared over the same seeds only.", "",
             f"Seeds asked for: {', '.join(map(str, seeds))}. Reproduce: `python benchmarks/select_real.py "
             "--settings fundus cardiac` after dg_real's units, and for fundus-scale `python benchmarks/dg_real.py "
             "--retrain --settings fundus-scale --methods VLSA 'VLSA (DSU)' 'VLSA text=none' --runs "
             "benchmarks/runs/retrained --out benchmarks/runs/retrained_results`, then `python "
             "benchmarks/select_real.py --settings fundus-scale --runs benchmarks/runs/retrained` (for fundus, "
             "`--retrain --settings fundus --methods 'VLSA (hybrid, GIN-IPA zoomed views)'` and `--settings fundus` "
             "with the same --runs) "
             "(`--report-only` rebuilds this file from `vlsa_selection_real.json`).", "", provenance_markdown(prov)]
    for setting in SETTINGS:
        by_name = results.get(setting)
        if not by_name:
            continue
        lines += [f"## {setting}: {dg_real.TITLES[setting]}", "",
                  "| candidate | seeds | source val Dice | corrupted source val Dice | Δ corrupted / Δ clean vs default "
                  "| same-site test Dice (not used) | unseen Dice (not used) |", "|---|---|---|---|---|---|---|"]
        for name, by_seed in by_name.items():
            lines.append(f"| {name} | {len(by_seed)} ({', '.join(by_seed)}) | {_pm(by_seed, 'source_val')} | "
                         f"{_pm(by_seed, 'shifted')} | {_delta(results, setting, name)} | "
                         f"{_pm(by_seed, 'source_test')} | {_pm(by_seed, 'unseen', '{:.3f}')} |")
        absent = [n for n in CANDIDATES if n not in by_name and dg_real.runs_in(setting, n)]
        if absent:
            lines += ["", f"No finished unit in this setting (not a row of dg_real's {setting} table yet, or "
                          f"skipped below): {', '.join(absent)}."]
        per = per_corruption_means(by_name)
        if per:
            names = list(next(iter(per.values())))
            lines += ["", "Corrupted source validation per corruption (mean over seeds):", "",
                      "| candidate | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
            lines += [f"| {name} | " + " | ".join(f"{v[c]:.3f}" for c in names) + " |" for name, v in per.items()]
        chosen = choose(results, setting)
        lines += ["", f"Rule 2 ({setting}): **{chosen}**."
                  + (f" {PACKAGING[setting].format(gate=gate_reading(chosen))}" if setting in PACKAGING else ""), ""]
    if skipped:
        lines += ["## Skipped units", "", *(f"- {s}" for s in skipped), ""]
    return "\n".join(lines) + "\n"


def unit_reader_args(doc: str, settings) -> argparse.Namespace:
    """The command line of a script that reads dg_real's finished units back (this one, tta_real.py):
    --settings, --seeds, --threads (set here), --report-only, --runs, --out."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=list(settings), choices=list(settings))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the recorded JSON")
    parser.add_argument("--runs", default=str(ROOT / "benchmarks" / "runs" / "real"))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main() -> None:
    args = unit_reader_args(__doc__, SETTINGS)
    out = Path(args.out)
    # the frozen-backbone features on disk that dg_real's units wrote (and the corrupted images' ones)
    os.environ.setdefault("VLSA_FEATURE_CACHE_DIR", str(ROOT / "benchmarks" / "runs" / "feature_cache"))
    if args.report_only:
        path = next((p for p in (out / "vlsa_selection_real.json", RESULTS / "vlsa_selection_real.json") if p.is_file()), None)
        if path is None:
            print("select_real.py: error: no recorded vlsa_selection_real.json", file=sys.stderr)
            sys.exit(2)
        saved = json.loads(path.read_text())
        results, skipped, seeds = saved["results"], saved["skipped"], saved["seeds"]
    else:
        results, skipped = collect(Path(args.runs), args.settings, args.seeds)
        seeds = args.seeds
        # a fresh checkout has none of the earlier units' run folders: keep what the committed
        # selection recorded for every unit not read again now
        recorded = RESULTS / "vlsa_selection_real.json"
        if recorded.is_file():
            results, skipped, seeds = merge_recorded(json.loads(recorded.read_text()), results, skipped, seeds)
    if not results:
        print(f"select_real.py: error: {args.runs}: no finished units", file=sys.stderr)
        sys.exit(2)
    prov = provenance()
    write_json(out / "vlsa_selection_real.json", {
        "provenance": prov, "candidates": list(CANDIDATES), "default": DEFAULT, "seeds": seeds, "results": results,
        "skipped": skipped, "rule_2": f"per setting, same seeds: corrupted source-validation Dice >= default + "
                                      f"{SHIFT_GAIN} and clean source-validation Dice >= default - {CLEAN_TOLERANCE}",
        "chosen": {s: choose(results, s) for s in results}})
    write_text(out / "vlsa_selection_real.md", report(results, skipped, prov, seeds))
    print((out / "vlsa_selection_real.md").read_text())


if __name__ == "__main__":
    main()
