"""Clinical indices per subject (EDV, ESV, SV, EF, LV mass; RV volumes and EF) from the label maps
`vlsa evaluate` scores, against the same indices of the ground truth, per domain.

- Maps: the scored ones (`vlsa.engine.inference.scored_maps`: post-processed where that applies),
  on each slice's original annotation grid, with its own spacing (slice step x row x col mm), the
  grid the reference was drawn on; never a copy resampled to `data.spacing`.
- ED and ES: the phases the dataset names (`Sample.meta["phase"]`: ACDC's Info.cfg or its h5
  copy's frame01/frame02, M&Ms' csv, Sunnybrook's larger/smaller cavity); a subject without both
  is left out.
- Regions a dataset does not annotate (Sunnybrook's RV) give no index, predicted or true; a region
  annotated on some slices only (Sunnybrook's myocardium) is measured on those slices, in both.
- Spacing unknown (`meta["spacing_known"] = False`: ACDC's h5 copy): volumes and mass are refused
  (one warning per domain) and only the ejection fractions, ratios of voxel counts, are given.
- Implausible predictions: a predicted EF outside 0-100 % (the predicted ES cavity larger than the
  ED one, at the dataset's ED/ES) is a segmentation failure, not a measurement. It stays in the
  agreement statistics (they measure the model, failures included) but is flagged: one warning per
  domain naming the subjects, `flags` in clinical.json, `implausible` per index in metrics.json
  and a line under the metrics.md table.

Files (`write`): `clinical.csv` beside metrics.json (or `clinical_<what>.csv` beside
metrics_<what>.json), one row per subject: `subject`, `domain`, `<index>_pred`, `<index>_true` for
each of `vlsa.clinical.CARDIAC_INDICES` (mL, g, EF in %), empty where not computable;
`clinical.json` the same rows with the reasons for what is missing; and per domain the agreement
(Bland-Altman bias and limits of agreement, MAE, Pearson r; the ACDC challenge's measures,
Bernard et al., IEEE TMI 2018) in metrics.json under "clinical", with a Bland-Altman PNG.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlsa.clinical import CARDIAC_INDICES, UNITS, agreement, cardiac_indices, lv_slices_included
from vlsa.utils.atomic import write_json, write_text

log = logging.getLogger(__name__)

COLUMNS = ["subject", "domain", *(f"{name}_{side}" for name in CARDIAC_INDICES for side in ("pred", "true"))]
PLOTTED = ("lv_edv", "lv_esv", "lv_ef", "lv_mass", "rv_edv", "rv_esv", "rv_ef")
CARDIAC_LABELS = ("lv", "myo", "rv")


def is_cardiac(spec) -> bool:
    """Whether a label space has the cardiac labels the indices read (vlsa.data.spec.CARDIAC)."""
    return bool(spec.volumetric) and tuple(spec.label_names[1:4]) == CARDIAC_LABELS


@dataclass
class SubjectIndices:
    """One subject's indices: `pred` / `true` name -> value (NaN where not computable), `refused`
    index -> why, `phases` what ED and ES were (frame numbers, trigger times, phase indices)."""

    subject: str
    domain: str
    pred: dict[str, float]
    true: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    phases: dict = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)  # index -> why its predicted value is implausible

    def row(self) -> dict[str, str]:
        """The CSV row: numbers with 4 decimals, empty where not computable."""
        out = {"subject": self.subject, "domain": self.domain}
        for name in CARDIAC_INDICES:
            for side, values in (("pred", self.pred), ("true", self.true)):
                value = values.get(name, math.nan)
                out[f"{name}_{side}"] = "" if not np.isfinite(value) else f"{value:.4f}"
        return out

    def record(self) -> dict:
        """The JSON record: values (null where not computable), refusals, ED/ES phases."""
        def clean(values):
            return {k: (float(v) if np.isfinite(v) else None) for k, v in values.items()}

        return {"subject": self.subject, "domain": self.domain, "pred": clean(self.pred), "true": clean(self.true),
                "refused": self.refused, "phases": self.phases, "flags": self.flags}


def clinical_csv(subjects: list[SubjectIndices]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for s in subjects:
        writer.writerow(s.row())
    return buf.getvalue()


def _annotated_masked(labels: np.ndarray, per_slice: list, spec) -> np.ndarray:
    """Z x H x W labels with each region set to background on the slices that do not annotate it."""
    out = labels.copy()
    for z, regions in enumerate(per_slice):
        for region, indices in spec.regions.items():
            if region not in regions:
                out[z][np.isin(out[z], indices)] = 0
    return out


def _phase_stack(samples, maps, members, spec, annotated, lv_ring: float = 0.0):
    """-> (pred Z x H0 x W0, truth Z x H0 x W0 with regions not annotated on a slice cleared in both,
    spacing (slice, row, col) mm or None where unknown, the regions annotated on at least one slice).
    lv_ring: the slice-inclusion convention on the prediction (`lv_slices_included`), applied before
    the unannotated regions are cleared (it reads the predicted myocardium on every slice)."""
    pred = lv_slices_included(np.stack([np.asarray(maps[i]) for i in members]).astype(np.int64), lv_ring)
    truth = np.stack([samples[i].scoring()[0] for i in members]).astype(np.int64)
    per_slice = [tuple(r for r in (getattr(samples[i], "annotated", None) or annotated) if r in annotated)
                 for i in members]
    first = samples[members[0]]
    known = all(samples[i].meta.get("spacing_known", True) for i in members)
    spacing = (float(first.slice_thickness), *map(float, first.scoring()[1])) if known else None
    covered = {r for regions in per_slice for r in regions}
    return _annotated_masked(pred, per_slice, spec), _annotated_masked(truth, per_slice, spec), spacing, covered


def subject_indices(samples, maps, spec, domain: str, annotated: tuple[str, ...] | None = None,
                    lv_ring: float = 0.0) -> list[SubjectIndices]:
    """Indices of every subject with an ED and an ES volume among `samples` (slices of volumes,
    `maps[i]` the scored H0 x W0 label map of `samples[i]`). annotated: the regions the dataset
    annotates (None: all); a sample's own `annotated` narrows it per slice. lv_ring:
    `eval.lv_slice_ring`, the slice-inclusion convention on the predicted volumes (0: off)."""
    from vlsa.engine.inference import volume_members

    regions = tuple(spec.regions) if annotated is None else tuple(annotated)
    phases: dict[str, dict[str, list[int]]] = {}
    for members in volume_members(samples).values():
        s = samples[members[0]]
        phase = s.meta.get("phase")
        if phase in ("ED", "ES"):
            phases.setdefault(s.case_id, {})[phase] = members
    out = []
    for subject in sorted(phases):
        found = phases[subject]
        if set(found) != {"ED", "ES"}:
            log.info("%s %s: no %s volume; no clinical indices", domain, subject, "ES" if "ED" in found else "ED")
            continue
        ed_pred, ed_true, spacing, ed_covered = _phase_stack(samples, maps, found["ED"], spec, regions, lv_ring)
        es_pred, es_true, es_spacing, es_covered = _phase_stack(samples, maps, found["ES"], spec, regions, lv_ring)
        if spacing is not None and (es_spacing is None or not np.allclose(spacing, es_spacing, rtol=1e-3)):
            spacing = None  # ED and ES on different grids: only ratios of voxel counts stay comparable
        rv = "rv" in ed_covered and "rv" in es_covered
        pred = cardiac_indices(ed_pred, es_pred, spacing, rv=rv)
        true = cardiac_indices(ed_true, es_true, spacing, rv=rv)
        if "myo" not in ed_covered:  # e.g. Sunnybrook SC-HF-I-6, whose epicardial contours are another patient's
            pred.refused["lv_mass"] = true.refused["lv_mass"] = "myocardium not annotated at ED"
        if "lv" not in ed_covered or "lv" not in es_covered:
            for name in (n for n in CARDIAC_INDICES if n.startswith("lv_") and n != "lv_mass"):
                pred.refused[name] = true.refused[name] = "LV not annotated at ED and ES"
        meta = samples[found["ED"][0]].meta
        values = _without(pred)
        out.append(SubjectIndices(subject, domain, values, _without(true), {**true.refused, **pred.refused},
                                  {"rule": "the dataset's ED/ES", "ed_es": meta.get("ed_es"), "lv_slice_ring": lv_ring},
                                  implausible_ef(values)))
    return out


def implausible_ef(values: dict[str, float]) -> dict[str, str]:
    """{index: why} for each predicted EF (lv_ef, rv_ef; %) outside 0-100 %: with the dataset's ED
    and ES a predicted ESV above the EDV gives a negative EF, which no heart has."""
    flags = {}
    for prefix in ("lv", "rv"):
        ef = values.get(f"{prefix}_ef", math.nan)
        if np.isfinite(ef) and not 0.0 <= ef <= 100.0:
            flags[f"{prefix}_ef"] = f"predicted {prefix.upper()} EF {ef:.1f} % is outside 0-100 % (predicted ES cavity " \
                                    "larger than ED): a segmentation failure, not a measurement"
    return flags


def _without(indices) -> dict[str, float]:
    return {k: (math.nan if k in indices.refused else v) for k, v in indices.values.items()}


def domain_agreement(subjects: list[SubjectIndices]) -> dict:
    """{'subjects': n, 'indices': {index: agreement stats (vlsa.clinical.agreement) + unit}, 'refused':
    {index: {'reason', 'subjects': how many}}} over the subjects of one domain; indices without a
    single pair are left out."""
    indices = {}
    for name in CARDIAC_INDICES:
        stats = agreement([s.pred.get(name, math.nan) for s in subjects], [s.true.get(name, math.nan) for s in subjects])
        if stats["n"]:
            indices[name] = {**stats, "unit": UNITS[name]}
    refused: dict[str, dict] = {}
    for s in subjects:
        for name, why in s.refused.items():
            entry = refused.setdefault(name, {"reason": why, "subjects": 0})
            entry["subjects"] += 1
    implausible: dict[str, list[str]] = {}
    for s in subjects:
        for name in s.flags:
            implausible.setdefault(name, []).append(s.subject)
    return {"subjects": len(subjects), "indices": indices, "refused": refused, "implausible": implausible}


class ClinicalTable:
    """Collects the subjects of each evaluated domain (`add`), then writes the files (`write`)."""

    def __init__(self, spec, lv_ring: float = 0.0):
        self.spec, self.lv_ring = spec, lv_ring
        self.enabled = is_cardiac(spec)
        self.domains: dict[str, list[SubjectIndices]] = {}

    def add(self, key: str, samples, maps, annotated: tuple[str, ...] | None = None) -> None:
        if not self.enabled:
            return
        subjects = subject_indices(samples, maps, self.spec, key, annotated, self.lv_ring)
        if subjects:
            self.domains[key] = subjects
            for name in ("lv_ef", "rv_ef"):
                flagged = [s.subject for s in subjects if name in s.flags]
                if flagged:
                    log.warning("%s: predicted %s outside 0-100 %% for %d of %d subjects (%s): the predicted ES "
                                "cavity is larger than the ED one, a segmentation failure; kept in the agreement, "
                                "flagged in clinical.json", key, name.replace("_", " ").upper(), len(flagged),
                                len(subjects), ", ".join(flagged[:5]) + (", ..." if len(flagged) > 5 else ""))
            spacing = sorted({n for s in subjects for n, why in s.refused.items() if why.startswith("voxel spacing")})
            if spacing:
                log.warning("%s: voxel spacing unknown: %s refused (mL and g need it); ejection fractions (ratios) "
                            "given", key, ", ".join(spacing))

    def write(self, run_dir: str | Path, name: str, result: dict) -> None:
        """clinical[_<what>].csv / .json and Bland-Altman PNGs; result['clinical'] gets the agreement
        per domain (and result['clinical_files'] what was written). Nothing when no domain has ED/ES."""
        if not self.domains:
            return
        from vlsa.report.agreement import bland_altman_png

        run_dir = Path(run_dir)
        suffix = name.removeprefix("metrics")
        subjects = [s for rows in self.domains.values() for s in rows]
        write_text(run_dir / f"clinical{suffix}.csv", clinical_csv(subjects))
        write_json(run_dir / f"clinical{suffix}.json", {"columns": COLUMNS, "units": {k: UNITS[k] for k in CARDIAC_INDICES},
                                                       "subjects": [s.record() for s in subjects]})
        result["clinical"] = {key: domain_agreement(rows) for key, rows in self.domains.items()}
        plots = {}
        for key, rows in self.domains.items():
            panels = {n: ([s.pred.get(n, math.nan) for s in rows], [s.true.get(n, math.nan) for s in rows])
                      for n in PLOTTED if n in result["clinical"][key]["indices"]}
            if panels:
                png = run_dir / f"bland_altman{suffix}" / f"{key}.png"
                bland_altman_png(panels, png, UNITS, title=f"{key}: prediction vs reference, per subject")
                plots[key] = png.relative_to(run_dir).as_posix()
        result["clinical_files"] = {"csv": f"clinical{suffix}.csv", "json": f"clinical{suffix}.json", "plots": plots}
