"""The clinical part of evaluating a fundus run: the vertical cup-to-disc ratio against the
experts, and the whole-photo path scored at the photo's own resolution.

vCDR: per evaluated image, `vlsa.clinical.cup_to_disc` of the post-processed prediction (one disc,
the cup inside it: a ratio of extents is undefined with stray blobs, so it is post-processed
whatever `eval.postprocess` decided for Dice), against the mean of the experts' ratios where the
dataset gives them (`sample.meta["cdr_experts"]`: Drishti-GS1's 4 readings): MAE, bias, limits of
agreement and Pearson r (`vlsa.clinical.agreement`, Bland & Altman 1986), and beside it the
inter-expert reference on the same images, each expert against the mean of the other three
(`vlsa.clinical.inter_expert_reference`; 0.064 on all 101 Drishti-GS1 images): the human limit.

Whole photos: when the run holds a disc locator (RUN/locator) and the reader gives whole
photographs (`reader.photos`, Drishti-GS1), every evaluated photo also goes through
`vlsa.engine.fundus_photo` (locate, ROI, segment, paste back) and is scored on its own pixel grid
(Dice, HD95 and ASD in photo px) with its vCDR. The locator's own metric goes into the locator run
(RUN/locator/metrics.json): discs found, the fraction of photos whose whole reference disc lies
inside the ROI placed on the found disc, and the centre error in reference disc diameters.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vlsa import roi
from vlsa.clinical import agreement, cup_to_disc, inter_expert_reference
from vlsa.errors import VlsaError
from vlsa.utils.atomic import write_json

REFERENCE = "the mean of the experts' cup-to-disc ratios (sample.meta['cdr_experts'])"


def _fundus(spec) -> bool:
    return tuple(spec.label_names) == ("background", "rim", "cup")


def vcdr_of(labels: np.ndarray, spec) -> float:
    """H x W label map (0 background, 1 rim, 2 cup) -> the vCDR of its post-processed version."""
    from vlsa.postprocess import postprocess

    fixed = postprocess(labels, spec)
    return cup_to_disc(fixed >= 1, fixed == 2)["vcdr"]


def vcdr_summary(cases: list[dict]) -> dict:
    """[{"name", "vcdr", "experts": [...]}] -> agreement with the experts' mean + the inter-expert MAE."""
    experts = np.array([c["experts"] for c in cases], dtype=np.float64)
    stats = agreement([c["vcdr"] for c in cases], experts.mean(axis=1))
    return {**stats, "inter_expert_mae": inter_expert_reference(experts)["mae"], "experts": int(experts.shape[1])}


def _stats(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    if not v.size:
        return {"mean": math.nan, "median": math.nan, "min": math.nan, "max": math.nan}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}


def locator_case(result, truth_box: roi.Box) -> dict:
    """One photo's locator metric: found, reference disc inside the located ROI (and the final
    one), centre error in reference diameters, found / reference diameter, confidence."""
    top, left, bottom, right = truth_box
    diameter = max(bottom - top, right - left)
    loc = result.location

    def inside(box):
        return box is not None and box[0] <= top and box[1] <= left and box[2] >= bottom and box[3] >= right

    error = ratio = math.nan
    if loc.found:
        error = math.hypot(loc.centre[0] - (top + bottom) / 2, loc.centre[1] - (left + right) / 2) / diameter
        ratio = loc.diameter / diameter
    return {"found": bool(loc.found), "inside": inside(result.located_box), "inside_final": inside(result.box),
            "centre_error": error, "diameter_ratio": ratio, "confidence": float(loc.confidence)}


def locator_summary(cases: list[dict]) -> dict:
    found = [c for c in cases if c["found"]]
    return {"n": len(cases), "found": len(found), "inside": sum(c["inside"] for c in cases),
            "inside_fraction": sum(c["inside"] for c in cases) / max(1, len(cases)),
            "inside_final": sum(c["inside_final"] for c in cases),
            "centre_error_diameters": _stats([c["centre_error"] for c in found]),
            "diameter_ratio": _stats([c["diameter_ratio"] for c in found]),
            "confidence": _stats([c["confidence"] for c in cases])}


class FundusMeasures:
    """Collects the evaluated predictions' vCDR per domain (`add`) and adds the clinical results
    to metrics.json (`results`). Does nothing for runs that are not fundus disc / cup runs."""

    def __init__(self, run_dir: str | Path, config, spec, reader, device):
        if config.train.mode == "locator":
            raise VlsaError(f"{run_dir}: is a disc locator run; evaluate the segmentation run it belongs to "
                            f"({Path(run_dir).parent}), which scores the locator into {Path(run_dir) / 'metrics.json'}")
        self.run_dir, self.config, self.spec, self.reader, self.device = Path(run_dir), config, spec, reader, device
        self.active = _fundus(spec)
        self.cases: dict[str, list[dict]] = {}
        self.counts: dict[str, int] = {}  # ROIs evaluated per domain = its whole photos (the progress bar's total)

    def add(self, domain: str, samples, native: list[np.ndarray]) -> None:
        """The domain's samples and their predictions on the annotation grid (as `score` takes them)."""
        if not self.active:
            return
        self.counts[domain] = len(samples)
        rows = [{"name": s.name, "vcdr": vcdr_of(p, self.spec), "experts": list(s.meta["cdr_experts"])}
                for s, p in zip(samples, native) if "cdr_experts" in s.meta]
        if rows:
            self.cases[domain] = rows

    def results(self, domains: list[str], split: str, sources: list[str], name: str, quiet: bool = False) -> dict:
        """-> the keys added to the evaluation's result: `vcdr` (ROI predictions), `whole_photo`
        (with a locator and whole photos) and `vcdr_plot` (the Bland-Altman PNG beside metrics.json)."""
        out: dict = {}
        if self.cases:
            out["vcdr"] = {"reference": REFERENCE, "measured_on": "the post-processed prediction of each ROI",
                           "domains": {d: vcdr_summary(c) for d, c in self.cases.items()},
                           "cases": {d: [_case_row(c) for c in cs] for d, cs in self.cases.items()}}
        from vlsa.engine.locator import has_locator, locator_dir

        if self.active and has_locator(self.run_dir) and hasattr(self.reader, "photos"):
            out["whole_photo"] = self.whole_photos(domains, split, sources, name, quiet)
        # short panel names: the plot's titles carry the statistics
        one = len(domains) == 1
        panels = {("ROI" if one else f"{d} ROI"): _pairs(c) for d, c in out.get("vcdr", {}).get("cases", {}).items()}
        panels.update({("photo" if one else f"{d} photo"): _pairs(c) for d, c in
                       out.get("whole_photo", {}).get("vcdr", {}).get("cases", {}).items()})
        if panels:
            from vlsa.report.agreement import bland_altman_png

            plot = f"vcdr{name.removeprefix('metrics')}.png"
            bland_altman_png(panels, self.run_dir / plot, title="vCDR: prediction against the mean of the experts' "
                                                                  "ratios (ROI; whole photo through the locator)")
            out["vcdr_plot"] = plot
        if not quiet:
            print("\n".join(summary_lines(out, locator_dir(self.run_dir))))
        return out

    def whole_photos(self, domains: list[str], split: str, sources: list[str], name: str, quiet: bool) -> dict:
        """Every evaluated photo through the whole-photo pipeline, scored on the photo's grid."""
        from tqdm import tqdm

        from vlsa.engine.fundus_photo import PhotoSegmenter
        from vlsa.engine.locator import locator_dir
        from vlsa.metrics import DomainAccumulator

        segmenter = PhotoSegmenter(self.run_dir, device=str(self.device))
        parts = ("train", "test") if split == "all" else (split,)
        result = {"locator": str(locator_dir(self.run_dir)), "resolution": "the photo's own pixel grid",
                  "domains": {}, "vcdr": {"reference": REFERENCE, "domains": {}, "cases": {}}, "locator_metrics": {}}
        for domain in domains:
            acc, ratios, located = DomainAccumulator(self.spec.regions), [], []
            for photo in tqdm(_photos(self.reader, domain, parts), desc=f"whole photos {domain}", unit="photo",
                              total=self.counts.get(domain), disable=quiet, leave=False):
                out = segmenter.segment(photo.image)
                acc.add(photo.name, out.labels, photo.label, (1.0, 1.0))
                truth = tuple(photo.meta.get("disc_box") or roi.bounding_box(photo.label > 0))
                located.append({"name": photo.name, **locator_case(out, truth)})
                if "cdr_experts" in photo.meta:
                    ratios.append({"name": photo.name, "vcdr": cup_to_disc(out.labels >= 1, out.labels == 2)["vcdr"],
                                   "experts": list(photo.meta["cdr_experts"])})
                photo.image = photo.label = None  # one whole photo in memory at a time
            role = "source" if domain in sources else "target"
            result["domains"][domain] = {"role": role, **acc.aggregate()}
            result["locator_metrics"][domain] = {**locator_summary(located), "cases": located}
            if ratios:
                result["vcdr"]["domains"][domain] = vcdr_summary(ratios)
                result["vcdr"]["cases"][domain] = [_case_row(c) for c in ratios]
        write_json(locator_dir(self.run_dir) / f"{name}.json", {
            "dataset": self.config.data.dataset, "split": split, "data": str(self.reader.root),
            "rule": "found: a disc component on the locator's map; inside: the reference disc's bounding box (>= 2 "
                    "experts) lies inside the ROI placed on the found disc (data.roi_scale x its diameter); centre "
                    "error: distance of the found centre from the reference disc's bounding-box centre / the "
                    "reference disc's diameter (longer extent)",
            "domains": result["locator_metrics"]})
        return result


def _photos(reader, domain: str, parts: tuple[str, ...]):
    """The whole photos of `parts` (splits) one at a time; with both splits an empty one is skipped."""
    from vlsa.data.integrity import is_empty_split
    from vlsa.errors import DataError

    for part in parts:
        photos = reader.photos(domain, part)
        try:
            first = next(photos)
        except StopIteration:
            continue
        except DataError as exc:
            if len(parts) > 1 and is_empty_split(exc):
                continue
            raise
        yield first
        yield from photos


def _case_row(case: dict) -> dict:
    return {"name": case["name"], "vcdr": case["vcdr"], "experts_mean": float(np.mean(case["experts"]))}


def _pairs(rows: list[dict]) -> tuple[list[float], list[float]]:
    return [r["vcdr"] for r in rows], [r["experts_mean"] for r in rows]


def summary_lines(out: dict, locator: Path) -> list[str]:
    """The lines `vlsa evaluate` prints: vCDR beside the inter-expert figure; the whole-photo path."""
    lines = []
    for d, s in out.get("vcdr", {}).get("domains", {}).items():
        lines.append(f"vCDR vs the experts' mean, {d} (ROI): MAE {s['mae']:.3f}, bias {s['bias']:+.3f}, r {s['r']:.3f}, "
                     f"n {s['n']}; inter-expert (each expert vs the mean of the other {s['experts'] - 1}) "
                     f"MAE {s['inter_expert_mae']:.3f}")
    whole = out.get("whole_photo", {})
    for d, m in whole.get("domains", {}).items():
        loc = whole["locator_metrics"][d]
        err = loc["centre_error_diameters"]
        line = (f"whole photo, {d} ({locator}): disc found {loc['found']}/{loc['n']}, inside the ROI "
                f"{loc['inside']}/{loc['n']}, centre error {err['mean']:.3f} (max {err['max']:.3f}) disc diameters; "
                f"Dice disc {m['dice']['disc']:.3f} cup {m['dice']['cup']:.3f} at the photo's resolution")
        v = whole["vcdr"]["domains"].get(d)
        if v:
            line += f"; vCDR MAE {v['mae']:.3f}, r {v['r']:.3f}"
        lines.append(line)
    return lines
