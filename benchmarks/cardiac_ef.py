"""Ejection fraction and volumes of an ACDC-trained run against the experts: the docs' Bland-Altman
figure (numbers only, from the run's clinical.csv) and where the LV EF error comes from.

    vlsa train --config acdc_sdg --set data.root=../shared/realdata/acdc-ssl4mis --out /tmp/acdc-ef
    vlsa evaluate --run /tmp/acdc-ef --report
    python benchmarks/cardiac_ef.py --run /tmp/acdc-ef [--png docs/images/cardiac_bland_altman.png] [--slices]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--png", type=Path, default=Path("docs/images/cardiac_bland_altman.png"))
    parser.add_argument("--slices", action="store_true", help="also the error on slices with a reference LV")
    args = parser.parse_args()
    figure(args.run, args.png)
    if args.slices:
        slice_diagnostic(args.run)


if __name__ == "__main__":
    main()
