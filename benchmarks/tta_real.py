"""Test-time mirroring (`eval.tta: flip`) for VLSA on the real-data units, chosen on source data.

nnU-Net v2, the strongest fundus baseline of `dg_real.py`, predicts with mirroring test-time
augmentation by default; VLSA's rows predict each image once. This asks whether that accounts for a
part of the gap, without retraining: each finished dg_real unit of the rows in ROWS is read back
(its selected checkpoint, best.pt) and predicted with eval.tta off and flip (the mean class
probabilities of the image and its left-right mirror, `vlsa.engine.inference.model_logits`).

- **The choice** is made on source data only, by select_vlsa's rule 2 unchanged (flip the candidate,
  off the default): flip is taken only if its corrupted source-validation Dice (source_shift.py's
  corruptions) is at least SHIFT_GAIN above off's and its clean source-validation Dice no more than
  CLEAN_TOLERANCE below, over the same seeds. Both arms are scored here on the same validation images.
- **Shown after the choice, never used for it**: same-site test and unseen Dice with flip
  (`vlsa evaluate --tta flip`, which writes metrics_tta-flip.json beside the run's metrics.json;
  off: the unit's protocol.json, as dg_real's tables read it), the paired difference per (seed,
  unseen case), and the margin to the strongest baseline of dg_real.json (nnU-Net v2 mirrors too).

Post-processing keeps each run's own decision (made without mirroring), so the difference is the
mirroring alone.

    python benchmarks/tta_real.py --threads 1             # fundus and cardiac, seeds 0 1 2
    python benchmarks/tta_real.py --report-only           # from the committed JSON

Writes benchmarks/results/tta_real.{json,md}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dg_real  # noqa: E402
import dg_stats  # noqa: E402
from common import provenance, provenance_markdown  # noqa: E402
from select_real import read_units, unit_reader_args  # noqa: E402
from select_vlsa import CLEAN_TOLERANCE, SHIFT_GAIN, rule_2  # noqa: E402

from vlsa.utils.atomic import write_json, write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# the packaged default of each setting first (dg_real.PACKAGED_DEFAULT), then the paper's VLSA; cnn
# backbones only: mirroring a frozen LiteMedSAM encoder's input costs a second encode of every
# corrupted validation image (~27 min per cardiac seed on this machine)
ROWS = {"fundus": ("VLSA", "VLSA text=none"), "cardiac": ("VLSA text=none", "VLSA")}
ARMS = ("off", "flip")


def read_unit(unit: Path) -> tuple[dict | None, str]:
    """One finished dg_real unit -> ({arm: {clean, corrupted, row, paired}}, "") or (None, why skipped)."""
    from source_shift import shifted_val

    from vlsa.engine.evaluate import evaluate_run

    if not (unit / "protocol.json").is_file():
        return None, "unfinished (no protocol.json)"
    run_dir = next((p.parent for p in sorted(unit.glob("*/metrics.json"))), None)
    if run_dir is None or not (run_dir / "checkpoints" / "best.pt").is_file():
        return None, "no run with metrics.json and checkpoints/best.pt"
    protocol = json.loads((unit / "protocol.json").read_text())
    out = {}
    for arm in ARMS:
        shift = shifted_val(run_dir, tta=arm)
        if arm == "off":
            evaluated = protocol
        else:
            cached = run_dir / f"metrics_tta-{arm}.json"
            result = json.loads(cached.read_text()) if cached.is_file() else evaluate_run(run_dir, quiet=True, tta=arm)
            evaluated = {"runs": {run_dir.name: result}}
        row, paired = dg_real.seed_row(dg_real.slim(evaluated))  # slim: per-case Dice as dg_real's records hold it
        out[arm] = {"clean": shift["clean"], "corrupted": shift["corrupted"], "source_test": row["source_dice"],
                    "unseen": row["unseen_dice"], "paired": paired}
    return out, ""


def collect(runs: Path, settings, seeds) -> tuple[dict, list[str]]:
    """setting -> row -> arm -> "s<seed>" -> scores; and the skipped units, one line each."""
    results: dict = {}
    skipped: list[str] = []
    plan = {s: ROWS[s] for s in settings}
    for setting, name, seed, entry in read_units(runs, plan, seeds, read_unit, skipped, absent=True):
        for arm, scores in entry.items():
            results.setdefault(setting, {}).setdefault(name, {}).setdefault(arm, {})[f"s{seed}"] = scores
    return results, skipped


def choice(by_arm: dict) -> str:
    """Rule 2 (select_vlsa.rule_2) with off as the default and flip the candidate, on source
    validation only (clean: `source_val`, corrupted: `shifted`, as rule_2 reads them)."""
    scores = {"row": {arm: {s: {"source_val": v["clean"], "shifted": v["corrupted"]} for s, v in seeds.items()}
                      for arm, seeds in by_arm.items()}}
    return rule_2(scores, "row", "off", list(by_arm))


def summary(by_arm: dict) -> dict:
    """Means over seeds per arm, and flip - off paired per (seed, unseen case)."""
    out = {arm: {k: float(np.mean([v[k] for v in seeds.values()]))
                 for k in ("clean", "corrupted", "source_test", "unseen")} for arm, seeds in by_arm.items()}
    units = {arm: {f"{s}/{k}": x for s, v in seeds.items() for k, x in v["paired"].items()} for arm, seeds in by_arm.items()}
    diff = dg_stats.paired_difference(units["flip"], units["off"])
    out["paired_unseen"] = {k: diff[k] for k in ("n", "mean", "ci_low", "ci_high", "verdict", "better")}
    out["chosen"] = choice(by_arm)
    return out


def strongest_baseline(setting: str) -> tuple[str, float] | None:
    """(name, mean unseen Dice) of the strongest baseline in dg_real.json's `setting`, or None."""
    path = RESULTS / "dg_real.json"
    if not path.is_file():
        return None
    table = json.loads(path.read_text())["table"].get(setting, {})
    rows = [(m, r["unseen_dice"]) for m, r in table.items() if m in dg_real.BASELINES]
    return max(rows, key=lambda mr: mr[1], default=None)


def report(results: dict, skipped: list[str], prov: dict) -> str:
    lines = ["# Test-time mirroring (eval.tta flip) on the real-data units", "",
             "Each finished `dg_real.py` unit's selected checkpoint, predicted once (off, as every dg_real row) and "
             "with the mean class probabilities of the image and its left-right mirror (flip). Nothing retrained; "
             "post-processing keeps each run's decision. **The choice uses source validation only**, by "
             f"select_vlsa's rule 2 unchanged: flip needs corrupted source-validation Dice ≥ off + {SHIFT_GAIN} and "
             f"clean ≥ off − {CLEAN_TOLERANCE}. Same-site, unseen and the paired Δ are shown after the choice, "
             "never used for it.", "", "Reproduce: `python benchmarks/tta_real.py --threads 1`.", "",
             provenance_markdown(prov)]
    for setting, rows in results.items():
        lines += [f"## {setting}: {dg_real.TITLES[setting]}", "",
                  "| row | tta | seeds | source val (clean) | corrupted source val | same-site test (not used) "
                  "| unseen (not used) |", "|---|---|---|---|---|---|---|"]
        for name, by_arm in rows.items():
            s = summary(by_arm)
            for arm in ARMS:
                a = s[arm]
                lines.append(f"| {name} | {arm} | {len(by_arm[arm])} | {a['clean']:.4f} | {a['corrupted']:.4f} | "
                             f"{a['source_test']:.3f} | {a['unseen']:.3f} |")
        lines.append("")
        best = strongest_baseline(setting)
        for name, by_arm in rows.items():
            s, p = summary(by_arm), summary(by_arm)["paired_unseen"]
            verdict = dg_stats.verdict_text(p, "off")
            line = (f"- **{name}**: rule 2 chooses **{s['chosen']}**; unseen flip − off, paired over {p['n']} (seed, "
                    f"case) units: {p['mean']:+.3f} [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}], {verdict}")
            if best is not None:
                line += (f"; with flip, {s['flip']['unseen'] - best[1]:+.3f} against the strongest baseline "
                         f"({best[0]}, {best[1]:.3f}; target +0.03)")
            lines.append(line + ".")
        lines.append("")
    if skipped:
        lines += ["## Skipped units", "", *(f"- {s}" for s in skipped), ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = unit_reader_args(__doc__, ROWS)
    out = Path(args.out)
    if args.report_only:
        path = out / "tta_real.json"
        if not path.is_file():
            print(f"tta_real.py: error: {path}: no recorded results", file=sys.stderr)
            sys.exit(2)
        saved = json.loads(path.read_text())
        results, skipped = saved["results"], saved["skipped"]
    else:
        results, skipped = collect(Path(args.runs), args.settings, args.seeds)
    if not results:
        print(f"tta_real.py: error: {args.runs}: no finished units", file=sys.stderr)
        sys.exit(2)
    prov = provenance()
    write_json(out / "tta_real.json", {
        "provenance": prov, "rows": ROWS, "results": results, "skipped": skipped,
        "summary": {s: {n: summary(a) for n, a in rows.items()} for s, rows in results.items()}})
    write_text(out / "tta_real.md", report(results, skipped, prov))
    print((out / "tta_real.md").read_text())


if __name__ == "__main__":
    main()
