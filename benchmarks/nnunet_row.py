"""The nnU-Net v2 row of the single-source DG table (benchmarks/dg_table.py) on the synthetic benchmarks.

For every dataset x seed x source domain: export the source's train cases in nnU-Net v2 raw format,
run nnU-Net's own fingerprinting, planning, preprocessing and training (2d configuration, fold 0 =
the validation cases every other row holds out, a shortened schedule: see `Budget`), predict every
domain's test split with nnU-Net, and score the predictions with vlsa's metrics. Units go to
<runs>/<full|quick>/<dataset>/nnu_net_v2/s<seed>/<source>/, beside the other rows' units, and the
results files of dg_table.py are rewritten after every finished seed. Resumable: finished units
(and finished nnU-Net steps inside a unit) are read back, not redone; a unit being run is claimed
with a lock file, so a second process on other datasets/seeds can share the work.

    python benchmarks/nnunet_row.py --threads 1                       # full row: both datasets, seeds 0 1 2
    python benchmarks/nnunet_row.py --datasets fundus --seeds 0       # one dataset, one seed
    python benchmarks/nnunet_row.py --quick                           # smoke: tiny data, 2 x 3 iterations, 1 source

Needs `pip install 'vlsa[nnunet]'`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import provenance  # noqa: E402
from dg_table import CONFIGS, QUICK, ROOT, budget_of, claim, slug, write_results  # noqa: E402

from vlsa.baselines.nnunet_row import QUICK_BUDGET, ROW, Budget, available, finished, run_row  # noqa: E402
from vlsa.config import load_config  # noqa: E402
from vlsa.engine.data import open_configured  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sources", nargs="+", default=None,
                        help="train only these source domains in this process (default: all; --quick: the first); "
                             "a seed enters the table once all its sources are done, by any process or session")
    parser.add_argument("--quick", action="store_true", help="tiny data, 2 epochs x 3 iterations: a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of nnU-Net (default 1)")
    parser.add_argument("--epochs", type=int, default=None, help="override the budget's epochs")
    parser.add_argument("--iterations", type=int, default=None, help="override the budget's iterations per epoch")
    parser.add_argument("--runs", default=str(ROOT / "benchmarks" / "runs"), help="where run folders are cached")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    if not available():
        raise SystemExit("nnunet_row: nnunetv2 is not installed (pip install 'vlsa[nnunet]')")
    torch.set_num_threads(args.threads)
    budget = QUICK_BUDGET if args.quick else Budget()
    if args.epochs or args.iterations:
        budget = Budget(args.epochs or budget.epochs, args.iterations or budget.iterations, budget.batch,
                        budget.val_iterations)
    name = "dg_synthetic_quick" if args.quick else "dg_synthetic"
    out, runs = Path(args.out), Path(args.runs) / ("quick" if args.quick else "full")
    prov = provenance()
    print(f"{ROW} budget: {budget.describe()}", flush=True)
    for dataset in args.datasets:
        for seed in args.seeds:
            config = load_config(CONFIGS[dataset], [*(QUICK if args.quick else []), f"seed={seed}"])
            reader = open_configured(config)
            domains = reader.domains()
            row = domains[:1] if args.quick else domains  # the sources a finished seed holds
            unit = runs / dataset / slug(ROW) / f"s{seed}"
            records = out / f"{name}_units" / dataset / slug(ROW) / f"s{seed}"
            start = time.perf_counter()
            for source in args.sources or row:  # one claim per source: two processes can share a seed
                with claim(unit / source) as mine:
                    print(f"== {dataset} | {ROW} | seed {seed} | {source}" + ("" if mine else ": busy in another process"),
                          flush=True)
                    if mine:
                        run_row(reader, dataset, unit, budget, seed=seed, threads=args.threads, sources=[source],
                                val_fraction=config.data.val_fraction, records=records, write=False)
            if finished(unit, row, budget, records):  # every source done: the seed's protocol.json, then the table
                run_row(reader, dataset, unit, budget, seed=seed, sources=row, records=records)
                print(f"   seed {seed} complete ({time.perf_counter() - start:.0f} s in this process)", flush=True)
            write_results(out, name, runs, prov, budget_of(config))
    print((out / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
