"""Step time of a short training while another process keeps a core busy: torch's own default
(every core: `--threads <cores>`, what `vlsa train` used before the thread default of
vlsa.engine.threads) against today's default (the free cores), from each run's log.csv.

    PYTHONPATH=src python benchmarks/threads.py
writes benchmarks/results/threads.md. `--before-src DIR` runs the "before" row with the `src` folder
of an older checkout and no --threads (its own default) instead, e.g.
    mkdir -p /tmp/before && git archive 1e7a621 src | tar -x -C /tmp/before
    PYTHONPATH=src python benchmarks/threads.py --before-src /tmp/before/src It starts `python -c "while 1: pass"` as the competing
process and stops it at the end; OMP_NUM_THREADS is removed from the runs' environment, since it
would decide the count itself. On a shared machine the other users' load adds to the competing
process: the file records the load average and what the default measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import provenance, provenance_markdown  # noqa: E402

SETS = ["model.name=unet", "data.image_size=96", "train.val_every=1000", "train.log_every=2", "train.device=cpu"]


def step_seconds(run: Path) -> list[float]:
    """Seconds per step between consecutive log rows (the first row, with start-up, left out)."""
    import csv

    with open(run / "log.csv", newline="") as fh:
        rows = [(int(r["step"]), float(r["seconds"])) for r in csv.DictReader(fh)]
    return [(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(rows, rows[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/threads.md")
    parser.add_argument("--before-src", help="the src folder of an older checkout, run with its own default")
    args = parser.parse_args()
    from vlsa.engine import threads

    cores = threads.usable_cores()
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "fundus"
        subprocess.run([sys.executable, "-m", "vlsa", "synth", "fundus", "--out", str(data), "--per-domain", "20",
                        "--size", "128"], check=True, capture_output=True, env=env)
        busy = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
        try:
            load = os.getloadavg()
            measured = threads.busy_cores()
            before = (("before: the older checkout's own default", [], args.before_src)
                      if args.before_src else
                      (f"before: torch's default, every core (--threads {cores})", ["--threads", str(cores)], None))
            for label, extra, src in (before, ("after: vlsa's default, the free cores", [], None)):
                run = Path(tmp) / f"run{len(rows)}"
                sets = [a for s in [f"data.root={data}", f"train.steps={args.steps}", *SETS] for a in ("--set", s)]
                run_env = env if src is None else {**env, "PYTHONPATH": str(Path(src).resolve())}
                proc = subprocess.run([sys.executable, "-m", "vlsa", "train", *sets, "--out", str(run), *extra],
                                      capture_output=True, text=True, env=run_env)
                if proc.returncode:
                    raise SystemExit(proc.stderr)
                per_step = step_seconds(run)
                warned = [line for line in proc.stderr.splitlines() if "warning" in line]
                rows.append((label, json.loads((run / "run.json").read_text())["machine"]["threads"],
                             statistics.median(per_step), min(per_step), max(per_step), warned))
        finally:
            busy.terminate()
            busy.wait()
    lines = ["# Training step time while another process keeps a core busy", "",
             provenance_markdown(provenance()).rstrip(), f"- competing process: `python -c \"while 1: pass\"`; load "
             f"average at the start {load[0]:.2f} (1 min), {load[1]:.2f} (5 min); the default measured "
             f"{measured:.1f} of {cores} cores busy with other processes (the competing one and other users')",
             f"- run: fundus synthetic, 20 images per site at 128 px, U-Net at 96 px, batch 8, {args.steps} steps; "
             "seconds per step from log.csv (a row every 2 steps, the first row left out)", "",
             "| threads | torch threads | s / step (median) | min | max | warning on stderr |", "|---|---|---|---|---|---|"]
    for label, count, med, lo, hi, warned in rows:
        lines.append(f"| {label} | {count} | {med:.3f} | {lo:.3f} | {hi:.3f} | {'yes' if warned else 'no'} |")
    before, after = rows[0][2], rows[1][2]
    lines += ["", f"The default is {before / after:.1f}× faster per step here. With every core asked for, each "
              "operation waits for the thread that shares its core with the competing process.", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
