"""Write the README's results block from the committed benchmark results, so no number in it is
typed by hand: the DG tables (mean ± sample std over seeds, and each method's paired comparison
with the reference method, `dg_table.REFERENCE`) from `results/dg_synthetic.json` and the headline
costs from `results/speed_cpu.json`. A difference is worded better/worse only when its 95 %
interval excludes 0; otherwise "inconclusive". The demo block comes from `results/demo_table.txt`
(the table a `vlsa demo` run writes: `vlsa demo --out demo_out && cp demo_out/demo_table.txt benchmarks/results/`).

    python benchmarks/readme_results.py           # rewrite the block between the README markers
    python benchmarks/readme_results.py --check   # exit 1 if the README block is stale (the test suite runs this)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- results:start (benchmarks/readme_results.py) -->", "<!-- results:end -->"
DEMO_START, DEMO_END = "<!-- demo:start (benchmarks/readme_results.py) -->", "<!-- demo:end -->"
TITLES = {"fundus": "fundus (4 sites)", "mms": "cardiac (4 vendors)"}
UNITS = {"fundus": "px", "mms": "mm"}
HEADLINE_METHODS = ("ERM U-Net + colour aug", "ERM U-Net + RandConv", "VLSA", "VLSA (medsam)", "VLSA (cnn)")  # quoted when no comparison exists


def _pm(row: dict, key: str, digits: int = 3) -> str:
    std = row[key + "_std"]
    return f"{row[key]:.{digits}f} ± " + ("–" if std != std else f"{std:.{digits}f}")  # NaN: one seed


def _classes(row: dict) -> list[str]:
    """Class names in the order the benchmark wrote them (the dataset's label order)."""
    return [k[len("unseen_dice_"):] for k in row if k.startswith("unseen_dice_") and not k.endswith("_std")]


def dg_tables(dg: dict) -> list[str]:
    budget = ", ".join(f"{k} {v}" for k, v in dg["budget"].items())
    # results files before the paired statistics used numpy's default (ddof 0); say which one is shown
    spread = "sample std (ddof 1)" if dg.get("std_ddof") == 1 else "std (ddof 0, an older results file)"
    lines = [f"Single-source protocol: every source site → every unseen site (12 pairs per dataset), mean Dice "
             f"over the pairs, then mean ± {spread} over seeds. Same budget for every method: {budget}. "
             f"Reproduce: `python benchmarks/dg_table.py`; per-class Dice and HD95 in "
             f"[`benchmarks/results/dg_synthetic.md`](benchmarks/results/dg_synthetic.md).\n",
             "![unseen-domain Dice per method](benchmarks/results/dg_synthetic.png)\n"]
    for dataset, methods in dg["table"].items():
        classes = _classes(next(iter(methods.values())))
        header = [TITLES.get(dataset, dataset), "seeds", "source Dice", "unseen Dice",
                  "unseen " + " / ".join(c.upper() if dataset == "mms" else c for c in classes),
                  f"unseen HD95 ({UNITS.get(dataset, 'px')})"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for method, r in methods.items():
            per_class = " / ".join(f"{r['unseen_dice_' + c]:.3f}" for c in classes)
            lines.append(f"| {method} | {len(r['seeds'])} | {_pm(r, 'source_dice')} | **{_pm(r, 'unseen_dice')}** | "
                         f"{per_class} | {_pm(r, 'unseen_hd95', 2)} |")
        lines.append("")
    return lines


def _difference(method: str, r: dict, cmp: dict | None, reference: str) -> str:
    """'<method> 0.775 (+0.025 [+0.010, +0.040], better)' from the paired comparison; the words
    'better'/'worse' only when the 95 % interval excludes 0, else 'inconclusive'."""
    if cmp is None:
        return f"{method} {r['unseen_dice']:.3f}"
    c = cmp["unseen_dice"]
    if c["n"] < 2:
        return f"{method} {r['unseen_dice']:.3f} ({c['mean']:+.3f}, {c['n']} paired unit: no interval)"
    word = "inconclusive" if c["better"] is None else ("better" if c["better"] else "worse")
    return f"{method} {r['unseen_dice']:.3f} ({c['mean']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}], {word})"


def headline(dg: dict, speed: dict) -> list[str]:
    lines = ["Headline numbers:\n"]
    reference = dg.get("reference")
    for dataset, methods in dg["table"].items():
        cmps = dg.get("comparisons", {}).get(dataset)
        ref = methods.get(reference) if reference else None
        if not cmps or ref is None:
            # results written before paired comparisons existed: numbers only, no claim of a difference
            lines.append(f"- {TITLES.get(dataset, dataset)}, unseen Dice: "
                         + "; ".join(f"{m} {r['unseen_dice']:.3f}" for m, r in methods.items()
                                     if m in HEADLINE_METHODS or m == "ERM U-Net")
                         + " (no paired comparison in the results file: differences untested).")
            continue
        parts = [_difference(m, r, cmps.get(m), reference) for m, r in methods.items() if m != reference]
        lines.append(f"- {TITLES.get(dataset, dataset)}, unseen Dice: {reference} (reference) {ref['unseen_dice']:.3f}; "
                     + "; ".join(parts) + " (difference to the reference with its 95 % t-interval over "
                     "source × seed pairs; better/worse only when the interval excludes 0).")
        check = dg.get("target", {}).get(dataset)
        if check:
            c = check["paired"]
            lines.append(f"  Target ({check['method']} ≥ strongest baseline + {check['target']:.2f}): strongest baseline "
                         f"{check['best_baseline']}, margin {check['margin']:+.3f} → **{'met' if check['met'] else 'missed'}** "
                         f"(paired {c['mean']:+.3f}, {c['n']} units).")
            lines += [f"  {note}" for note in check.get("notes", [])]  # baselines the check does not cover
    train = speed["train"]
    size = min(r["size"] for r in train)
    base = next(r for r in train if r["size"] == size and r["model"].startswith("ERM"))
    ratios = ", ".join(f"{r['model']} {r['step_s'] / base['step_s']:.1f}×" for r in train
                       if r["size"] == size and r is not base)
    lines.append(f"- Training step time at {size} px (batch {speed['batch']}, CPU) relative to the MONAI U-Net "
                 f"({base['step_s']:.3f} s): {ratios}. "
                 "[`benchmarks/results/speed_cpu.md`](benchmarks/results/speed_cpu.md), `python benchmarks/speed.py`.")
    side = max(r["side"] for r in speed["em_vs_attention"])
    em = next(r for r in speed["em_vs_attention"] if r["side"] == side and r["block"].startswith("EM"))
    at = next(r for r in speed["em_vs_attention"] if r["side"] == side and not r["block"].startswith("EM"))
    lines.append(f"- EM Aggregation vs self-attention on a {side}×{side} map: {at['step_s'] / em['step_s']:.0f}× "
                 f"faster ({em['step_s']:.3f} s vs {at['step_s']:.2f} s) and {at['peak_mb'] / em['peak_mb']:.0f}× "
                 f"less memory ({em['peak_mb']:.0f} MB vs {at['peak_mb']:.0f} MB), forward + backward.")
    return lines + encoder_headline(speed) + [""]


def encoder_headline(speed: dict) -> list[str]:
    """The LiteMedSAM encoder's measured throughput and the fast path that runs by default."""
    enc = speed.get("encoder")
    if not enc:
        return []
    rows = {(r["path"], r["batch"]): r for r in enc["rows"]}
    mine = [r for r in enc["rows"] if r["path"] == enc["default_path"]]
    speeds = "; ".join(f"batch {r['batch']}: {r['img_s_best']:.2f} img/s vs {rows[('off', r['batch'])]['img_s_best']:.2f} "
                       f"({r['speedup']:.2f}× wall, {r['speedup_cpu']:.2f}× CPU time)" for r in mine)
    load = enc.get("load_average_before", enc["load_average"])[0]
    best = max(mine, key=lambda r: r["fraction_of_peak"])
    peak_kind = "bf16" if best["peak_gflop_s"] != enc.get("matmul_peak_gflop_s", {}).get("fp32") else "fp32"
    line = (f"- LiteMedSAM encoder at 256 px on {enc['threads']} cores (load average {load:.1f} before): default "
            f"path `{enc['default_path']}` vs eager fp32, {speeds}; cosine to eager ≥ "
            f"{math.floor(min(min(r['cosine_per_level']) for r in mine) * 1e4) / 1e4:.4f} per feature map; "  # '≥' rounds down
            f"{best['fraction_of_peak']:.0%} of the measured {peak_kind} matmul peak "
            f"({best['peak_gflop_s']:.0f} GFLOP/s).")
    pred = speed.get("predict")
    if pred:
        line += " `vlsa predict` end to end: " + ", ".join(f"{r['img_s']:.2f} img/s ({r['path']})" for r in pred["rows"]) + "."
    return [line]


def block() -> str:
    dg = json.loads((RESULTS / "dg_synthetic.json").read_text())
    speed = json.loads((RESULTS / "speed_cpu.json").read_text())
    return "\n".join([START, *headline(dg, speed), *dg_tables(dg), END])


def demo_block() -> str:
    table = (RESULTS / "demo_table.txt").read_text()
    return "\n".join([DEMO_START, "```", table.rstrip("\n"), "```", DEMO_END])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the README block is current")
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    args = parser.parse_args()
    readme = Path(args.readme)
    text = readme.read_text()
    new = text
    for start, end, make in ((START, END, block), (DEMO_START, DEMO_END, demo_block)):
        if start not in new or end not in new:
            print(f"{readme}: no results markers ({start} ... {end})", file=sys.stderr)
            return 1
        head, rest = new.split(start, 1)
        new = head + make() + rest.split(end, 1)[1]
    if args.check:
        if new != text:
            print(f"{readme}: results block is stale; run python benchmarks/readme_results.py", file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
