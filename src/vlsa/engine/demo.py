"""`vlsa demo`: synthetic fundus; train VLSA and the ERM U-Net baseline on the same site with the
same budget and augmentation policy, evaluate both on all four sites, print the two Dice tables
side by side and write that table to DIR/demo_table.txt (the README's demo table is this file).

Deterministic for a given machine: the config fixes the seed and the torch thread count, every
random draw of training comes from seeded generators, so two runs print the same table.
"""

from __future__ import annotations

import shutil
import time
from importlib import resources
from pathlib import Path

from vlsa.config import load_config
from vlsa.engine.evaluate import evaluate_run
from vlsa.engine.train import train
from vlsa.report.html import write_report
from vlsa.utils.atomic import write_text

METHODS = {"ERM U-Net": ["model.name=unet"], "VLSA": ["model.name=vlsa"]}
TABLE_FILE = "demo_table.txt"


def demo_config_path() -> Path:
    return Path(str(resources.files("vlsa") / "configs" / "demo.yaml"))


def side_by_side(results: dict[str, dict]) -> str:
    """{method: metrics.json dict} -> a plain-text table: one row per domain (source first, then
    the unseen sites and their mean), Dice per class and mean for each method."""
    names = list(results)
    first = results[names[0]]["domains"]
    classes = [c for c in next(iter(first.values()))["dice"] if c != "mean"]
    header = ["domain", "role", "n"] + [f"{m}: {c}" for m in names for c in [*classes, "mean"]]
    rows = [header]
    for domain, d in first.items():
        role = "source" if d["role"] == "source" else "unseen"
        rows.append([domain, role, str(d["n"])] + [f"{results[m]['domains'][domain]['dice'][c]:.3f}"
                                                     for m in names for c in [*classes, "mean"]])
    unseen = [dom for dom, d in first.items() if d["role"] == "target"]
    if unseen:
        n = sum(first[dom]["n"] for dom in unseen)
        rows.append(["unseen mean", "", str(n)] + [
            f"{sum(results[m]['domains'][dom]['dice'][c] for dom in unseen) / len(unseen):.3f}"
            for m in names for c in [*classes, "mean"]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows) + "\n"


def run_demo(out: str | Path, overrides: list[str] | None = None) -> Path:
    """Train + evaluate both methods into out/<method>/; returns the path of the side-by-side table."""
    out = Path(out)
    start = time.time()
    results = {}
    for method, extra in METHODS.items():
        run_dir = out / ("vlsa" if method == "VLSA" else "erm")
        if run_dir.exists():
            shutil.rmtree(run_dir)  # the demo always starts fresh; it is cheap and must show a clean run
        config = load_config(demo_config_path(), [*extra, *(overrides or [])])
        print(f"== {method}", flush=True)
        train(config, run_dir)
        results[method] = evaluate_run(run_dir, quiet=True)
        write_report(run_dir, title=f"vlsa demo: {method}, single-source DG on synthetic fundus")
    table = side_by_side(results)
    path = out / TABLE_FILE
    write_text(path, table)
    print(f"\nDice on each site's test split (trained on {', '.join(results['VLSA']['source'])} only):\n")
    print(table)
    print(f"table: {path}\nreports: {out / 'vlsa' / 'report.html'}, {out / 'erm' / 'report.html'}\n"
          f"wall time: {time.time() - start:.0f} s")
    return path
