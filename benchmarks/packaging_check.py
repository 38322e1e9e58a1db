"""The packaging gate for a new `drishti_sdg` default: the whole clinical pipeline, trained as a user
would, scored on whole photographs.

select_real's rule 2 chooses among candidate segmenters on source validation crops; the packaged
config also trains the disc locator and is used on whole photos for the vertical cup-to-disc ratio
(vCDR). A candidate ships only if that pipeline is not worse than with the paper's VLSA (cnn)
(REFERENCE). Per variant and seed this runs

    vlsa train --config drishti_sdg --set data.root=$DRISHTI [variant overrides] --set seed=S
    vlsa evaluate --run RUN

and reads RUN/metrics.json: on Drishti-GS1 Test (51 whole photos; same site as training, so this
is a clinical check, never a selection on unseen sites) the vCDR MAE against the mean of the 4
experts' ratios and the disc / cup Dice at the photo's own resolution; beside them the unseen DoFE
crops' Dice (6 crops), and, on source validation only, the Dice of the photos cut at other ROI
scales (`scale_invariance.val_dice`: the disc at 0.62 / 0.50 / 0.40 / 0.30 of the side), the
scale error a found disc brings to the whole-photo path. Paired over seeds (per-seed MAE) and
over photos (per photo and seed, absolute vCDR error), with dg_stats' 95 % t intervals.
Resumable: a finished run (metrics.json) is read, not retrained; frozen-encoder banks come from the
shared feature cache.

    python benchmarks/packaging_check.py [--variants NAME ...] [--seeds 0 1 2] [--report-only]

-> benchmarks/results/drishti_packaging.{md,json}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import dg_real  # noqa: E402
from common import provenance, provenance_markdown  # noqa: E402
from dg_stats import paired_difference, sample_std  # noqa: E402
from dg_table import slug  # noqa: E402
from scale_invariance import val_dice  # noqa: E402

from vlsa.utils.atomic import write_json, write_text  # noqa: E402

REAL = ROOT.parent / "shared" / "realdata"
RUNS = ROOT / "benchmarks" / "runs" / "packaging"
RESULTS = ROOT / "benchmarks" / "results"
# what each candidate is paired against: drishti_sdg with the paper's VLSA (cnn), its packaged segmenter
# until the hybrid with GIN-IPA zoomed views passed this gate (session 21); pinned by dg_real's overrides
REFERENCE = "drishti_sdg with VLSA (cnn)"
# the variants, declared before they ran: the reference and the candidates rule 2 chose
# (benchmarks/results/vlsa_selection_real.md), each dg_real's row of that name, so the gate trains
# exactly the candidate that was chosen (its overrides on top of drishti_sdg); DSU is session 17's
# earlier check, rerun here. Session 19 added the zoomed views after the GIN-IPA views failed this
# gate off the canonical scale; session 20 the hybrid, rule 2's fundus-scale choice once they ran.
GATED = ("VLSA (medsam, GIN-IPA views)", "VLSA (DSU)", "VLSA (medsam, GIN-IPA zoomed views)",
         "VLSA (hybrid, GIN-IPA zoomed views)")
VARIANTS = {REFERENCE: dg_real.PAPER_SEGMENTER, **{name: dg_real.METHODS[name] for name in GATED}}
# what drishti_sdg trains now: rule 2's fundus-scale choice, which this gate did not refuse (3 seeds)
PACKAGED = dg_real.PACKAGED_DEFAULT["fundus-scale"]
assert PACKAGED in GATED


def run_unit(name: str, seed: int, threads: int) -> Path:
    """Train and evaluate one (variant, seed) with the CLI, unless its metrics.json exists."""
    out = RUNS / slug(name) / f"s{seed}"
    if (out / "metrics.json").is_file():
        return out
    sets = [f"data.root={REAL / 'drishti-gs1'}", *VARIANTS[name], f"seed={seed}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # the feature cache dir main() set
    vlsa = str(Path(sys.executable).with_name("vlsa"))
    train = [vlsa, "train", "--config", "drishti_sdg", *sum((["--set", s] for s in sets), []),
             "--threads", str(threads), "--out", str(out)]
    resume = ["--resume"] if (out / "checkpoints" / "last.pt").is_file() else []
    print(f"[{name} s{seed}] train", flush=True)
    start = time.monotonic()
    subprocess.run(train + resume, check=True, env=env)
    print(f"[{name} s{seed}] evaluate", flush=True)
    subprocess.run([vlsa, "evaluate", "--run", str(out), "--threads", str(threads)], check=True, env=env)
    # wall time of this call (a resumed run counts only its last part), bank fill included
    write_json(out / "wall.json", {"wall_s": time.monotonic() - start, "threads": threads})
    return out


def scale_unit(out: Path) -> dict:
    """Source-validation Dice of the run at each ROI scale (cached in RUN/scale_val.json)."""
    path = out / "scale_val.json"
    if not path.is_file():
        print(f"[{out}] source validation at ROI scales", flush=True)
        write_json(path, val_dice(out))
    return json.loads(path.read_text())


def _optional_json(path: Path) -> dict | None:
    """A run's side record (scale_val.json, wall.json), None where that step has not run."""
    return json.loads(path.read_text()) if path.is_file() else None


def read_unit(out: Path) -> dict | None:
    """RUN/metrics.json -> the numbers this check compares (None while the run is unfinished)."""
    path = out / "metrics.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    photo = m["whole_photo"]
    drishti = photo["domains"]["DrishtiGS1"]
    unseen = [d for k, d in m["domains"].items() if d.get("role") != "source"]
    n = sum(d["n"] for d in unseen)
    return {
        "photo_vcdr_mae": photo["vcdr"]["domains"]["DrishtiGS1"]["mae"],
        "photo_vcdr_r": photo["vcdr"]["domains"]["DrishtiGS1"]["r"],
        "inter_expert_mae": photo["vcdr"]["domains"]["DrishtiGS1"]["inter_expert_mae"],
        "photo_disc": drishti["dice"]["disc"], "photo_cup": drishti["dice"]["cup"],
        "located": photo["locator_metrics"]["DrishtiGS1"]["inside_fraction"],
        "unseen_dice": sum(d["dice"]["mean"] * d["n"] for d in unseen) / n,
        "scale_val": _optional_json(out / "scale_val.json"),
        "wall_s": (_optional_json(out / "wall.json") or {}).get("wall_s"),
        "abs_error": {c["name"]: abs(c["vcdr"] - c["experts_mean"]) for c in photo["vcdr"]["cases"]["DrishtiGS1"]},
    }


def summarise(units: dict, seeds) -> dict:
    """{variant: {seed: unit}} -> per variant mean ± sd of each number and the paired comparisons."""
    out = {}
    ref = units.get(REFERENCE, {})
    for name, by_seed in units.items():
        row = {"seeds": sorted(by_seed)}
        for key in ("photo_vcdr_mae", "photo_vcdr_r", "photo_disc", "photo_cup", "located", "unseen_dice"):
            vals = [by_seed[s][key] for s in sorted(by_seed)]
            row[key] = {"mean": float(np.mean(vals)), "sd": sample_std(vals), "by_seed": vals}
        row["wall_s"] = [by_seed[s].get("wall_s") for s in sorted(by_seed)]
        scales = [by_seed[s]["scale_val"] for s in sorted(by_seed) if by_seed[s]["scale_val"]]
        if scales:
            row["scale_val"] = {k: float(np.mean([x[k]["mean"] for x in scales])) for k in scales[0]}
            row["scale_val_seeds"] = len(scales)
        if name != REFERENCE and ref:
            per_seed = {str(s): by_seed[s]["photo_vcdr_mae"] for s in by_seed}
            ref_seed = {str(s): ref[s]["photo_vcdr_mae"] for s in ref}
            per_photo = {f"{s}/{k}": v for s in by_seed for k, v in by_seed[s]["abs_error"].items()}
            ref_photo = {f"{s}/{k}": v for s in ref for k, v in ref[s]["abs_error"].items()}
            row["vs_reference"] = {
                "photo_vcdr_mae_per_seed": paired_difference(per_seed, ref_seed, lower_is_better=True),
                "vcdr_abs_error_per_photo": paired_difference(per_photo, ref_photo, lower_is_better=True),
                "photo_disc_per_seed": paired_difference({str(s): by_seed[s]["photo_disc"] for s in by_seed},
                                                         {str(s): ref[s]["photo_disc"] for s in ref}),
                "unseen_dice_per_seed": paired_difference({str(s): by_seed[s]["unseen_dice"] for s in by_seed},
                                                          {str(s): ref[s]["unseen_dice"] for s in ref}),
            }
        out[name] = row
    return out


def gate(row: dict) -> str:
    """The packaging decision for one candidate: it ships unless its whole-photo clinical number is
    worse, i.e. the per photo x seed vCDR absolute error higher or the per-seed photo disc Dice lower
    with the 95 % interval excluding 0. (Written down in session 19, after the first candidate seed
    had been seen; session 17 had applied the same reading to DSU by eye.)"""
    c = row["vs_reference"]
    worse = [what for what, key, sign in (("vCDR error", "vcdr_abs_error_per_photo", 1), ("disc Dice", "photo_disc_per_seed", -1))
             if c[key]["n"] >= 2 and c[key]["verdict"] != "inconclusive" and sign * c[key]["mean"] > 0]
    return f"not packaged: worse {' and '.join(worse)} on whole photos" if worse else "may ship: not worse on whole photos"


def _pm(row: dict, key: str) -> str:
    v = row[key]
    return f"{v['mean']:.3f}" + (f" ± {v['sd']:.3f}" if len(v["by_seed"]) > 1 else "")


def ci_text(c: dict) -> str:
    if c.get("n", 0) < 2:
        return "—"
    return f"{c['mean']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"


def report(summary: dict, prov: dict, inter_expert: float, missing: list[tuple[str, int]] = ()) -> str:
    lines = ["# Packaging gate: drishti_sdg's whole-photo pipeline, the paper's VLSA (cnn) vs candidates", "",
             "Trained as a user would (`vlsa train --config drishti_sdg ...`, segmenter and disc locator), then "
             "`vlsa evaluate`. Drishti-GS1 Test is the training site's own test split, scored on whole "
             "photographs; it decides whether a candidate chosen on source validation ships, never which "
             f"candidate is chosen. The inter-expert vCDR MAE on these photos (each expert against the mean of the other "
             f"3) is {inter_expert:.3f}, the human limit. Each run used 1 thread. drishti_sdg packages **{PACKAGED}** "
             "since session 21 (rule 2's fundus-scale choice on source validation, not refused here).", "",
             "| variant | seeds | whole-photo vCDR MAE | vCDR r | disc Dice (photo) | cup Dice (photo) | unseen Dice (6 crops) |",
             "|---|---|---|---|---|---|---|"]
    for name, row in summary.items():
        lines.append(f"| {name} | {len(row['seeds'])} | {_pm(row, 'photo_vcdr_mae')} | {_pm(row, 'photo_vcdr_r')} | "
                     f"{_pm(row, 'photo_disc')} | {_pm(row, 'photo_cup')} | {_pm(row, 'unseen_dice')} |")
    lines += ["", f"Paired against {REFERENCE} (variant − reference, 95 % t interval; lower MAE is better):", "",
              "| variant | vCDR MAE, per seed | vCDR abs. error, per photo × seed | disc Dice, per seed | unseen Dice, per seed | gate |",
              "|---|---|---|---|---|---|"]
    for name, row in summary.items():
        if "vs_reference" in row:
            c = row["vs_reference"]
            lines.append(f"| {name} | {ci_text(c['photo_vcdr_mae_per_seed'])} | {ci_text(c['vcdr_abs_error_per_photo'])} | "
                         f"{ci_text(c['photo_disc_per_seed'])} | {ci_text(c['unseen_dice_per_seed'])} | {gate(row)} |")
    scaled = {name: row for name, row in summary.items() if "scale_val" in row}
    if scaled:
        keys = list(next(iter(scaled.values()))["scale_val"])
        lines += ["", "Source validation (Drishti-GS1 Training's held-out photos, never Test), mean Dice of the photos "
                  "cut at each ROI scale x the disc diameter (2.5 is the canonical cut the locator aims at):", "",
                  "| variant | seeds | " + " | ".join(f"ROI {k}x (disc {1 / float(k):.2f} of side)" for k in keys) + " |",
                  "|---|---|" + "---|" * len(keys)]
        for name, row in scaled.items():
            lines.append(f"| {name} | {row['scale_val_seeds']} | " + " | ".join(f"{row['scale_val'][k]:.3f}" for k in keys) + " |")
    lines += ["", "Per seed (seed: vCDR MAE / photo disc Dice):", ""]
    for name, row in summary.items():
        pairs = ", ".join(f"s{s}: {m:.3f} / {d:.3f}" for s, m, d in
                          zip(row["seeds"], row["photo_vcdr_mae"]["by_seed"], row["photo_disc"]["by_seed"]))
        walls = [w for w in row.get("wall_s", []) if w is not None]
        lines.append(f"- {name}: {pairs}" + (f" (wall {np.mean(walls) / 60:.0f} min per seed, 1 thread)" if walls else ""))
    if missing:
        lines += ["", "Not run (each unit's command):", ""]
        lines += [f"- {name} s{seed}: `python benchmarks/packaging_check.py --variants \"{name}\" --seeds {seed}`"
                  for name, seed in missing]
    return "\n".join(lines) + "\n\n" + provenance_markdown(prov)


def publish(found: dict, run_seeds) -> None:
    """Merge the units found here into the recorded ones and write the report."""
    # each finished unit's record is kept in the results file, so a machine without the run folders
    # (a fresh checkout) still reports it; a unit found here replaces its record. Read after the runs,
    # so two processes running other variants side by side keep each other's records.
    recorded = RESULTS / "drishti_packaging.json"
    units: dict = {}
    if recorded.is_file():
        for name, by_seed in json.loads(recorded.read_text()).get("units", {}).items():
            if name in VARIANTS:
                units[name] = {int(s): u for s, u in by_seed.items()}
    for name, by_seed in found.items():
        units.setdefault(name, {}).update(by_seed)
    units = {name: units[name] for name in VARIANTS if name in units}  # declaration order
    if REFERENCE in units:  # the reference row first
        units = {REFERENCE: units.pop(REFERENCE), **units}
    seeds = sorted({s for by_seed in units.values() for s in by_seed} | set(run_seeds))
    summary = summarise(units, seeds)
    missing = [(name, seed) for name in VARIANTS for seed in seeds if seed not in units.get(name, {})]
    inter_expert = next((u["inter_expert_mae"] for by_seed in units.values() for u in by_seed.values()), float("nan"))
    prov = provenance()
    write_json(recorded, {"provenance": prov, "variants": VARIANTS, "summary": summary,
                          "units": {n: {str(s): u for s, u in by_seed.items()} for n, by_seed in units.items()},
                          "not_run": [f"{n} s{s}" for n, s in missing]})
    write_text(RESULTS / "drishti_packaging.md", report(summary, prov, inter_expert, missing))
    print(f"wrote {RESULTS / 'drishti_packaging.md'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="read finished runs, train nothing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # the frozen-encoder banks, shared with dg_real's units, for the runs and the ROI-scale check
    os.environ.setdefault("VLSA_FEATURE_CACHE_DIR", str(ROOT / "benchmarks" / "runs" / "feature_cache"))
    if not (REAL / "drishti-gs1").is_dir():
        sys.exit(f"error: {REAL / 'drishti-gs1'}: the Drishti-GS1 release is not there")
    found: dict = {}
    for name in args.variants:
        for seed in args.seeds:
            out = RUNS / slug(name) / f"s{seed}"
            if not args.report_only:
                run_unit(name, seed, args.threads)
                scale_unit(out)
            unit = read_unit(out)
            if unit is not None:
                found.setdefault(name, {})[seed] = unit
                if not args.report_only:
                    publish(found, args.seeds)  # after each unit: a session cut short keeps what finished
    publish(found, args.seeds)


if __name__ == "__main__":
    main()
