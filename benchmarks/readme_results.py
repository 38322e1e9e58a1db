"""Write the generated blocks of README.md and docs/benchmarks.md from the committed benchmark results,
so no number in them is typed by hand.

- README.md, `demo`: `results/demo_table.txt` (the table a `vlsa demo` run writes:
  `vlsa demo --out demo_out && cp demo_out/demo_table.txt benchmarks/results/`).
- README.md, `results`: the headline tables, compact: real data first (`results/dg_real.json`, written
  by benchmarks/dg_real.py; one table per dataset, the sim-to-real setting as a column), then the
  synthetic benchmarks (`results/dg_synthetic.json`, benchmarks/dg_table.py) in one table.
- docs/benchmarks.md, `results-real`: `results/dg_real.md` as dg_real.py wrote it (links re-pointed).
- docs/benchmarks.md, `results-synthetic`: the DG tables (mean ± sample std over seeds, and each
  method's paired comparison with the reference method, `dg_table.REFERENCE`) and the headline costs
  from `results/speed_cpu.json`.

A difference is worded better/worse only when its 95 % interval excludes 0; otherwise "inconclusive".

    python benchmarks/readme_results.py           # rewrite every block between its markers
    python benchmarks/readme_results.py --check   # exit 1 if a block is stale (the test suite runs this)
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dg_stats  # noqa: E402  (numpy and scipy only)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start (benchmarks/readme_results.py) -->", f"<!-- {name}:end -->"


START, END = markers("results")
DEMO_START, DEMO_END = markers("demo")
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


# ---- README: the headline tables, compact (real data first) -------------------------------------

DG_REAL = ROOT / "benchmarks" / "dg_real.py"
DATASET_OF = {"fundus": "fundus", "fundus-scale": "fundus", "fundus-sim": "fundus", "cardiac": "cardiac",
              "cardiac-sim": "cardiac"}
# the README's table per dataset: the first of these with rows, the setting that trains as the
# packaged config does (fundus-scale: drishti_sdg's zoom range); the others are named below it
HEADLINE = {"fundus": ("fundus-scale", "fundus"), "cardiac": ("cardiac",)}
# The README's tables leave VLSA's ablations (VLSA without a part) to docs/benchmarks.md, so they stay
# short; every baseline stays (nnU-Net v2 w/o post-processing included, where it is the nnU-Net row).
def in_readme(method: str, dataset: str = "", kind: str | None = None) -> bool:
    """Whether a row is in the README: the baselines, one VLSA row per backbone and the packaged
    default; the ablations, a backbone's variants ("VLSA (medsam, decoder 64)") and diagnostic rows
    ("VLSA + RandConv") stay in docs/benchmarks.md, and so do the rows scored with post-processing
    off (the same runs again, for VLSA and nnU-Net v2 alike). `kind`: the row's kind as dg_real.json
    records it (dg_real.row_kind); without one (dg_table's synthetic rows) it is read from the name."""
    if method.endswith(" w/o post-processing"):
        return False
    if kind is None:
        variant = method.startswith("VLSA") and any(mark in method for mark in ("w/o", "text=", ",", " + "))
        kind = "ablation" if variant else "vlsa"
    return method == PACKAGED.get(dataset) or kind in ("baseline", "vlsa")


def packaged_defaults() -> dict[str, str]:
    """dg_real.py's PACKAGED_DEFAULT (setting -> the packaged config's VLSA variant), read from its
    source without importing it (it imports torch)."""
    for node in ast.parse(DG_REAL.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PACKAGED_DEFAULT" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


# a dataset whose packaged config is one of VLSA's variants (chosen on source data): its row is shown, named so
PACKAGED = packaged_defaults()


def _margin(check: dict, said: list | None = None) -> str:
    """'margin +0.067 over nnU-Net v2 → **met**' for one target check of dg_real.json, with the
    baselines it does not cover unless they are `said` already."""
    return (f"margin {check['margin']:+.3f} over {check['best_baseline']} → **{'met' if check['met'] else 'missed'}**"
            f"{'' if said is not None and check.get('missing') == said else _unverified(check)}")


def _unverified(check: dict) -> str:
    """' (unverified against: A, B)' for the baselines a target check could not compare with."""
    missing = check.get("missing", [])
    if len(missing) > 2:  # a setting where few rows ran: the count, not the list (the README has 200 lines)
        return f" (unverified: {len(missing)} baselines not run there)"
    return f" (unverified against: {', '.join(missing)})" if missing else ""


DATASET_TITLES = {"fundus": "Fundus", "cardiac": "Cardiac MRI"}


def real_titles() -> dict[str, str]:
    """The titles dg_real.py gives its settings, read from its source without importing it (it imports torch)."""
    for node in ast.parse(DG_REAL.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "TITLES" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def _is_nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _value(row: dict, key: str) -> str:
    """'0.810' or '0.810 ± 0.012' (the std only with two or more seeds); '–' where there is no number."""
    s = row.get(key + "_std")
    return _number(row.get(key)) + ("" if _is_nan(row.get(key)) or _is_nan(s) else f" ± {s:.3f}")


def _number(x) -> str:
    return "–" if _is_nan(x) else f"{x:.3f}"


def _delta(c: dict | None) -> str:
    """A paired difference: '+0.044 [+0.010, +0.077] better', or the mean alone when fewer than 2 units."""
    if c is None or not c.get("n"):
        return "–"
    if c["n"] < 2:
        return f"{c['mean']:+.3f} (1 unit, no interval)"
    word = "inconclusive" if c["better"] is None else ("better" if c["better"] else "worse")
    return f"{c['mean']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] {word}"


def _unseen_classes(methods: dict) -> list[str]:
    """Classes with an unseen number for some method (a class no target annotates, RV on Sunnybrook, is left out)."""
    names = dict.fromkeys(k[len("unseen_dice_"):] for r in methods.values() for k in r
                          if k.startswith("unseen_dice_") and not k.endswith("_std"))
    return [c for c in names if any(not _is_nan(r.get(f"unseen_dice_{c}")) for r in methods.values())]


def _label(dataset: str, c: str) -> str:
    return c.upper() if dataset == "cardiac" else c


def _budget(b: dict) -> str:
    """{'steps': 600, 'image size': 96, 'batch': 8, 'lr': 0.002} -> '600 steps, 96 px, batch 8, lr 0.002'."""
    words = {"steps": "{} steps", "image size": "{} px", "batch": "batch {}", "lr": "lr {}"}
    return ", ".join(words.get(k, k + " {}").format(v) for k, v in b.items())


def real_compact(real: dict) -> list[str]:
    """One table per dataset: the real setting's rows, with the sim-to-real setting's unseen Dice as a column."""
    titles, reference = real_titles(), real.get("reference")
    table = real["table"]
    not_run = f" Not run: {', '.join(real['not_run'])} ([why](docs/benchmarks.md#real-data))." if real.get("not_run") else ""
    lines = [f"**Real data** (`benchmarks/dg_real.py`, {real.get('provenance', {}).get('date', '?')[:10]}): trained on "
             f"one real site, tested on sites it never saw; Δ: paired, per (seed, unseen case), 95 % interval.{not_run}\n"]
    for dataset in dict.fromkeys(DATASET_OF.get(s, s) for s in table):
        settings = [s for s in table if DATASET_OF.get(s, s) == dataset]
        main = next((s for s in HEADLINE.get(dataset, ()) if table.get(s)),
                    next((s for s in settings if not s.endswith("-sim")), settings[0]))
        sim = next((s for s in settings if s.endswith("-sim")), None)
        others = [s for s in settings if s not in (main, sim)]
        methods = table[main]
        classes = _unseen_classes(methods)
        cmp = dg_stats.compare({m: r["units"] for m, r in methods.items() if "units" in r}, reference)
        lines.append(f"*{DATASET_TITLES.get(dataset, dataset)}: {titles.get(main, main)}* "
                     f"({_budget(real.get('budgets', {}).get(main, {}))})\n")
        header = ["method", "seeds", "same-site Dice", "unseen Dice",
                  "unseen " + " / ".join(_label(dataset, c) for c in classes), f"Δ vs {reference}"]
        if sim:
            header.append(f"{titles.get(sim, sim)}: real Dice")
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        kinds = real.get("kinds", {})
        for method, r in ((m, r) for m, r in methods.items() if in_readme(m, dataset, kinds.get(m))):
            cells = [f"{method} (the packaged default)" if PACKAGED.get(dataset) == method else method, str(len(r["seeds"])), _value(r, "source_dice"), f"**{_value(r, 'unseen_dice')}**",
                     " / ".join(_number(r.get(f"unseen_dice_{c}")) for c in classes),
                     "reference" if method == reference else _delta(cmp.get(method, {}).get("unseen_dice"))]
            if sim:
                row = table[sim].get(method, {})
                seeds = len(row.get("seeds", ()))  # a partial sim-to-real row says so (the main rows have 3)
                cells.append(_value(row, "unseen_dice") + (f" ({seeds} seed{'s' * (seeds > 1)})" if 0 < seeds < 3 else ""))
            lines.append("| " + " | ".join(cells) + " |")
        targets, paper = real.get("target", {}), real.get("target_paper_vlsa", {})
        check = targets.get(main)
        said = (check or {}).get("missing")  # unverified baselines are named once, where they first differ
        also = [f"{titles.get(o, o)}: {_margin(targets[o], said)}" if targets.get(o) else titles.get(o, o)
                for o in [*others, *([sim] if sim else [])]]
        text = ""
        if check:
            text = f"Target ({check['method']} ≥ strongest baseline + {check['target']:.2f}): {_margin(check)}."
            if paper.get(main) and paper[main]["method"] != check["method"]:  # the paper's own variant, beside the default
                text += f" The paper's {paper[main]['method']}: {_margin(paper[main], said)}."
        if also:
            text += f" Also run ([all rows](docs/benchmarks.md#real-data)): {'; '.join(also)}."
        if text:
            lines.append("\n" + text.strip())
        lines.append("")
    return lines


def synthetic_compact(dg: dict) -> list[str]:
    """Both synthetic benchmarks in one table: unseen Dice and the paired difference to the reference."""
    reference, table = dg.get("reference"), dg["table"]
    datasets = list(table)
    lines = ["**Synthetic benchmarks** (`benchmarks/dg_table.py`): 4 synthetic sites or vendors, each source → the 3 "
             f"unseen; Δ to {reference}, paired per (source, seed); {_budget(dg['budget'])}.\n"]
    header = ["method (synthetic)"]
    for d in datasets:
        header += [f"{TITLES.get(d, d)}: unseen Dice", "Δ"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in dict.fromkeys(m for d in datasets for m in table[d] if in_readme(m)):
        cells = [method]
        for d in datasets:
            r = table[d].get(method)
            c = dg.get("comparisons", {}).get(d, {}).get(method)
            cells += [_value(r, "unseen_dice") if r else "–",
                      "reference" if method == reference else _delta(c["unseen_dice"] if c else None)]
        lines.append("| " + " | ".join(cells) + " |")
    checks = dg.get("target", {})
    if checks:
        margin = next(iter(checks.values()))["target"]
        lines.append(f"\nTarget (VLSA ≥ strongest baseline + {margin:.2f}): " + "; ".join(
            f"{'cardiac' if d == 'mms' else d}: margin {c['margin']:+.3f} over {c['best_baseline']} → "
            f"**{'met' if c['met'] else 'missed'}**{_unverified(c)}" for d, c in checks.items()) + ".")
    return lines + [""]


def wrap(lines: list[str], width: int = 100) -> list[str]:
    """Prose lines wrapped at `width` (table rows and blank lines as they are), so a README paragraph
    reads as the few lines it is in an editor too."""
    out = []
    for line in "\n".join(lines).split("\n"):
        out += [line] if not line or line.startswith("|") else textwrap.wrap(line, width, break_long_words=False,
                                                                            break_on_hyphens=False)
    return out


def readme_results(results: Path) -> list[str]:
    real = results / "dg_real.json"
    lines = real_compact(json.loads(real.read_text())) if real.is_file() else [
        "**Real data**: no results committed yet (`python benchmarks/dg_real.py` writes `benchmarks/results/dg_real.json`).\n"]
    lines += synthetic_compact(json.loads((results / "dg_synthetic.json").read_text()))
    lines.append("Ablations, per-class Dice, HD95, costs and how to reproduce: [docs/benchmarks.md](docs/benchmarks.md).")
    return wrap(lines)


# ---- docs/benchmarks.md: the full tables -----------------------------------------------------------

def relink(text: str, prefix: str) -> str:
    """Re-point the relative Markdown links of `text` (written for one folder) by `prefix`."""
    return re.sub(r"\]\((?!https?:|#|/)([^)]+)\)", lambda m: f"]({prefix}{m.group(1)})", text)


def benchmarks_real(results: Path) -> list[str]:
    """results/dg_real.md as dg_real.py wrote it, its title dropped, headings one level down, links from docs/."""
    md = results / "dg_real.md"
    if not md.is_file():
        return ["No real-data results committed yet: `python benchmarks/dg_real.py` writes them."]
    text = md.read_text().split("\n", 1)[1] if md.read_text().startswith("# ") else md.read_text()
    text = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", text, flags=re.M)
    return [relink(text.strip("\n"), "../benchmarks/results/")]


def benchmarks_synthetic(results: Path) -> list[str]:
    dg = json.loads((results / "dg_synthetic.json").read_text())
    speed = json.loads((results / "speed_cpu.json").read_text())
    return [relink("\n".join([*headline(dg, speed), *dg_tables(dg)]), "../")]


def demo(results: Path) -> list[str]:
    return ["```", (results / "demo_table.txt").read_text().rstrip("\n"), "```"]


# (file under the repository root, block name, maker)
BLOCKS = [("README.md", "demo", demo), ("README.md", "results", readme_results),
          ("docs/benchmarks.md", "results-real", benchmarks_real),
          ("docs/benchmarks.md", "results-synthetic", benchmarks_synthetic)]


def render(text: str, name: str, lines: list[str], path: Path) -> str:
    start, end = markers(name)
    if start not in text or end not in text:
        raise SystemExit(f"{path}: no block markers ({start} ... {end})")
    head, rest = text.split(start, 1)
    return head + "\n".join([start, *lines, end]) + rest.split(end, 1)[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that every block is current")
    parser.add_argument("--root", default=str(ROOT), help="the tree holding README.md and docs/ (default: this repository)")
    parser.add_argument("--results", default=str(RESULTS), help="the results folder read (default: benchmarks/results)")
    args = parser.parse_args()
    root, results = Path(args.root), Path(args.results)
    stale = []
    for rel in dict.fromkeys(f for f, _, _ in BLOCKS):
        path = root / rel
        text = path.read_text()
        new = text
        for _, name, make in (b for b in BLOCKS if b[0] == rel):
            new = render(new, name, make(results), path)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"{', '.join(map(str, stale))}: generated block is stale; run python benchmarks/readme_results.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
