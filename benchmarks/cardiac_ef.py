"""Ejection fraction and volumes of an ACDC-trained run against the experts: the docs' Bland-Altman
figure (numbers only, from the run's clinical.csv) and where the LV EF error comes from.

    vlsa train --config acdc_sdg --set data.root=../shared/realdata/acdc-ssl4mis --out /tmp/acdc-ef
    vlsa evaluate --run /tmp/acdc-ef --report
    python benchmarks/cardiac_ef.py --run /tmp/acdc-ef [--png docs/images/cardiac_bland_altman.png] [--slices]

--rings chooses `eval.lv_slice_ring` (the slice-inclusion convention on predicted volumes,
vlsa.clinical.lv_slices_included) on SOURCE VALIDATION: LV EF MAE of the run's source-validation
subjects for each value of RINGS (fixed here before it ran), the lowest wins (ties: the smaller,
the lesser change); the ACDC test subjects are shown beside it, not used. Writes
benchmarks/results/cardiac_ef_rings.{md,json}.

--slices re-predicts ACDC's test volumes and recomputes LV EF on the slices where the reference has
an LV cavity at that phase only: the part of the error that comes from LV predicted above the base
or below the apex (slices the experts leave empty), against the error within the heart.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from vlsa.clinical import agreement
from vlsa.report.agreement import bland_altman_png

RINGS = (0.0, 0.5, 0.7, 0.8, 0.9)
PANELS = {"ACDC LV EF": ("ACDC", "lv_ef", "%"), "Sunnybrook LV EDV": ("sunnybrook/Sunnybrook", "lv_edv", "mL"),
          "Sunnybrook LV ESV": ("sunnybrook/Sunnybrook", "lv_esv", "mL"), "Sunnybrook LV EF": ("sunnybrook/Sunnybrook", "lv_ef", "%")}


def _value(text: str) -> float:
    return float(text) if text else float("nan")


def figure(run: Path, png: Path) -> None:
    with open(run / "clinical.csv") as f:
        rows = list(csv.DictReader(f))
    panels, units = {}, {}
    for title, (domain, index, unit) in PANELS.items():
        chosen = [r for r in rows if r["domain"] == domain]
        if chosen:
            panels[title] = ([_value(r[f"{index}_pred"]) for r in chosen], [_value(r[f"{index}_true"]) for r in chosen])
            units[title] = unit
    bland_altman_png(panels, png, units, title=f"{run.name}: prediction vs expert, per subject (test patients)")
    print(f"wrote {png}")


def slice_diagnostic(run: Path) -> None:
    import torch

    from vlsa.engine.data import open_configured, prepare
    from vlsa.engine.evaluate import load_run
    from vlsa.engine.inference import predict_prepared, scored_maps, volume_members
    from vlsa.engine.postprocessing import decide

    config, spec, model = load_run(run)
    samples = list(open_configured(config).samples("ACDC", "test"))
    prepared = prepare(samples, config, spec)
    native, _ = predict_prepared(model, prepared, config.eval.batch_size, torch.device("cpu"))
    maps = scored_maps(prepared, native, spec, decide(run, config, spec, model, torch.device("cpu"))["applied"])
    counts: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for members in volume_members(prepared.samples).values():
        s = prepared.samples[members[0]]
        truth = np.array([(prepared.samples[i].scoring()[0] == 1).sum() for i in members])
        pred = np.array([(maps[i] == 1).sum() for i in members])
        counts.setdefault(s.case_id, {})[s.meta["phase"]] = (truth, pred)

    def ef(ed, es):
        return 100 * (ed - es) / ed

    true, full, inside, outside = [], [], [], {"ED": 0, "ES": 0, "ED_all": 0, "ES_all": 0}
    for phases in counts.values():
        (t_ed, p_ed), (t_es, p_es) = phases["ED"], phases["ES"]
        true.append(ef(t_ed.sum(), t_es.sum()))
        full.append(ef(p_ed.sum(), p_es.sum()))
        inside.append(ef(p_ed[t_ed > 0].sum(), p_es[t_es > 0].sum()))
        for phase, t, p in (("ED", t_ed, p_ed), ("ES", t_es, p_es)):
            outside[phase] += int(p[t == 0].sum())
            outside[f"{phase}_all"] += int(p.sum())
    for name, values in (("all slices", full), ("slices with a reference LV", inside)):
        a = agreement(values, true)
        print(f"LV EF on {name}: MAE {a['mae']:.1f}, bias {a['bias']:+.1f}, LoA {a['loa_low']:.1f} to "
              f"{a['loa_high']:.1f}, r {a['r']:.3f} (n {a['n']})")
    for phase in ("ED", "ES"):
        print(f"{phase}: {100 * outside[phase] / outside[f'{phase}_all']:.1f} % of the predicted LV voxels lie on "
              "slices without a reference LV")


def ring_choice(run: Path, out: Path) -> dict:
    """EF agreement per `eval.lv_slice_ring` in RINGS on the run's source validation (the choice) and
    ACDC test (shown) subjects; -> the JSON written to out/cardiac_ef_rings.json."""
    import torch
    from common import provenance, provenance_markdown

    from vlsa.engine.clinical_indices import subject_indices
    from vlsa.engine.data import open_configured, open_target_datasets, prepare, source_validation
    from vlsa.engine.evaluate import load_run, split_samples
    from vlsa.engine.inference import predict_prepared, scored_maps
    from vlsa.engine.postprocessing import decide
    from vlsa.utils.atomic import write_json, write_text

    config, spec, model = load_run(run)
    reader = open_configured(config)
    val = source_validation(config, reader)
    applied = decide(run, config, spec, model, torch.device("cpu"))["applied"]
    table: dict = {}
    # (name, samples, the regions its dataset annotates): source validation decides, the rest is shown
    splits = [("source validation", val, None), ("ACDC test", list(reader.samples("ACDC", "test")), None)]
    splits += [(f"{t.name} {d} (unseen)", split_samples(t.reader, d, t.split), t.reader.spec.annotated)
               for t in open_target_datasets(config, spec) for d in t.domains]
    for split, samples, annotated in splits:
        prepared = prepare(samples, config, spec)
        native, _ = predict_prepared(model, prepared, config.eval.batch_size, torch.device("cpu"))
        maps = scored_maps(prepared, native, spec, applied)
        for ring in RINGS:
            subjects = subject_indices(prepared.samples, maps, spec, split, annotated, lv_ring=ring)
            a = agreement([s.pred["lv_ef"] for s in subjects], [s.true["lv_ef"] for s in subjects])
            table.setdefault(split, {})[str(ring)] = a
    by_val = table["source validation"]
    chosen = min(RINGS, key=lambda r: (round(by_val[str(r)]["mae"], 6), r))
    result = {"provenance": provenance(), "run": str(run), "rings": list(RINGS), "table": table, "chosen": chosen,
              "rule": "lowest LV EF MAE on source validation; ties: the smaller ring"}
    write_json(out / "cardiac_ef_rings.json", result)
    lines = ["# Choosing the LV slice-inclusion ring on source validation", "",
             "`eval.lv_slice_ring`: predicted LV on end slices (base, apex) whose LV border touches the myocardium "
             "on less than this fraction is left out of the predicted volumes (0: off). Chosen by the lowest LV EF "
             "MAE on the run's **source validation** subjects; ACDC test and the unseen targets are shown after the "
             "choice, never used.", "",
             f"Reproduce: `python benchmarks/cardiac_ef.py --run RUN --rings` (RUN: `{run.name}`, trained by "
             "`vlsa train --config acdc_sdg`).", "", provenance_markdown(result["provenance"]), "",
             "| ring | " + " | ".join(f"{split} EF MAE / bias / r (n)" for split in table) + " |",
             "|---|" + "---|" * len(table)]
    for ring in RINGS:
        cells = [f"{t[str(ring)]['mae']:.2f} / {t[str(ring)]['bias']:+.2f} / {t[str(ring)]['r']:.3f} ({t[str(ring)]['n']})"
                 for t in table.values()]
        lines.append(f"| {ring}{' **(chosen)**' if ring == chosen else ''} | " + " | ".join(cells) + " |")
    write_text(out / "cardiac_ef_rings.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--png", type=Path, default=Path("docs/images/cardiac_bland_altman.png"))
    parser.add_argument("--slices", action="store_true", help="also the error on slices with a reference LV")
    parser.add_argument("--rings", action="store_true", help="choose eval.lv_slice_ring on source validation")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    if args.rings:
        ring_choice(args.run, args.out)
        return
    figure(args.run, args.png)
    if args.slices:
        slice_diagnostic(args.run)


if __name__ == "__main__":
    main()
