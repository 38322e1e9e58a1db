"""What tuning the LiteMedSAM encoder would cost here: training step time of VLSA (medsam) per
`model.backbone.tuning` (frozen with the feature cache, frozen without it, frozen+tokens, lora, full)
at the real-data benchmark's budget (batch 8; 96 px fundus, 128 px cardiac), and the wall time one
600-step dg_real unit would take at that rate.

Why it exists: issue 26 asks whether partial fine-tuning (LoRA, already wired) would let the
foundation encoder earn its place. A tuned encoder runs eagerly through LiteMedSAM at 256 px every
step, forward and backward, and cannot use the feature cache; this measures whether such a unit fits
a CPU session at all before any is trained.

    python benchmarks/tuning_cost.py --threads 1            # writes benchmarks/results/tuning_cost.{json,md}
    python benchmarks/tuning_cost.py --quick                # 1 step per mode at 32 px: checks the script
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import provenance, provenance_markdown  # noqa: E402
from speed import time_train_step, trainable  # noqa: E402

from vlsa.config import build_config  # noqa: E402
from vlsa.data.spec import FUNDUS  # noqa: E402
from vlsa.models import build_model  # noqa: E402
from vlsa.models.backbones import cache  # noqa: E402
from vlsa.utils.atomic import write_json, write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# mode name -> overrides; "frozen, cached" is what every dg_real medsam row trains with
MODES = {"frozen, cached": ["model.backbone.tuning=frozen", "model.backbone.cache=true"],
         "frozen, no cache": ["model.backbone.tuning=frozen", "model.backbone.cache=false"],
         "frozen+tokens": ["model.backbone.tuning=frozen+tokens"],
         "lora": ["model.backbone.tuning=lora"],
         "full": ["model.backbone.tuning=full"]}
UNIT_STEPS = 600  # dg_real's budget per unit


def measure(size: int, batch: int, steps: int, modes: list[str]) -> list[dict]:
    rows = []
    for mode in modes:
        cache.clear()
        cfg = build_config({}, ["model.name=vlsa", "model.backbone.name=medsam", f"data.image_size={size}", *MODES[mode]])
        model = build_model(cfg, FUNDUS)
        # the cached mode's warm-up fills the cache, so its timed steps are the cache hits training gets
        step_s, _ = time_train_step(model, size, batch, torch.device("cpu"), False, steps, "time")
        rows.append({"size": size, "batch": batch, "mode": mode, "load_average": os.getloadavg()[0],
                     "trainable_params": trainable(model), "step_s": step_s, "unit_hours": step_s * UNIT_STEPS / 3600})
        print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict], prov: dict) -> str:
    out = ["# Tuning the LiteMedSAM encoder: training step time on this machine", "",
           "VLSA (medsam), one training step (forward, loss, backward, AdamW) on random inputs; `unit` is "
           f"{UNIT_STEPS} steps, one dg_real unit's budget (validation and scoring not included). The frozen cached "
           "row is what every dg_real medsam row trains with; the tuned encoders run LiteMedSAM eagerly at 256 px each "
           "step and cannot use the cache. `load` is the 1-minute load average when the row was measured (other "
           "benchmarks running beside it inflate the times).", "", provenance_markdown(prov),
           "| model px | batch | tuning | trainable params | s / step | one unit (h) | × frozen, cached | load |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = next(x for x in rows if x["size"] == r["size"] and x["mode"] == "frozen, cached")
        out.append(f"| {r['size']} | {r['batch']} | {r['mode']} | {r['trainable_params']:,} | {r['step_s']:.2f} | "
                   f"{r['unit_hours']:.2f} | {r['step_s'] / ref['step_s']:.0f}× | {r['load_average']:.1f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[96, 128])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES), metavar="MODE")
    parser.add_argument("--quick", action="store_true", help="32 px, batch 2, one step: checks the script")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sizes, batch, steps = ([32], 2, 1) if args.quick else (args.sizes, args.batch, args.steps)
    prov = provenance()
    rows = [r for size in sizes for r in measure(size, batch, steps, args.modes)]
    out = Path(args.out)
    name = "tuning_cost_quick" if args.quick else "tuning_cost"
    write_json(out / f"{name}.json", {"provenance": prov, "unit_steps": UNIT_STEPS, "rows": rows})
    write_text(out / f"{name}.md", markdown(rows, prov))
    print(markdown(rows, prov))


if __name__ == "__main__":
    main()
