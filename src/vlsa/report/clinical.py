"""The clinical-index agreement table of metrics.md and report.html (metrics['clinical'], written by
`vlsa.engine.clinical_indices`): per domain and index, n subjects, MAE, bias, limits of agreement
(bias ± 1.96 SD) and Pearson r, as the ACDC challenge reports them."""

from __future__ import annotations

from vlsa.report.tables import SMALL_N, markdown

NAMES = {"lv_edv": "LV EDV", "lv_esv": "LV ESV", "lv_sv": "LV SV", "lv_ef": "LV EF", "lv_mass": "LV mass",
         "rv_edv": "RV EDV", "rv_esv": "RV ESV", "rv_sv": "RV SV", "rv_ef": "RV EF"}


def _num(value, digits: int = 1) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def clinical_rows(metrics: dict) -> list[list[str]]:
    """Rows (header first) of the agreement table; [] when the evaluation has no clinical indices."""
    clinical = metrics.get("clinical") or {}
    if not clinical:
        return []
    rows = [["domain", "index", "unit", "n", "MAE", "bias", "limits of agreement", "r"]]
    for key, entry in clinical.items():
        for name, s in entry["indices"].items():
            rows.append([key, NAMES.get(name, name), s.get("unit", ""), str(s["n"]), _num(s["mae"]), _num(s["bias"]),
                         f"{_num(s['loa_low'])} to {_num(s['loa_high'])}", _num(s["r"], 3)])
    return rows


def refusal_notes(metrics: dict) -> list[str]:
    """One line per domain and reason: which indices were not computed and why; which rest on fewer
    than SMALL_N subjects; implausible predicted ejection fractions."""
    notes = []
    for key, entry in (metrics.get("clinical") or {}).items():
        by_reason: dict[tuple[str, int], list[str]] = {}
        for name, refused in entry.get("refused", {}).items():
            by_reason.setdefault((refused["reason"], refused["subjects"]), []).append(NAMES.get(name, name))
        for (why, count), names in by_reason.items():
            which = "" if count == entry["subjects"] else f" for {count} of {entry['subjects']} subjects"
            notes.append(f"{key}: {', '.join(names)} not computed{which}: {why}.")
        few: dict[int, list[str]] = {}
        for name, stats in entry["indices"].items():
            if stats["n"] < SMALL_N:
                few.setdefault(stats["n"], []).append(NAMES.get(name, name))
        if few:
            counts = "; ".join(f"{', '.join(names)} on {n}" for n, names in sorted(few.items(), reverse=True))
            notes.append(f"{key}: fewer than {SMALL_N} subjects ({counts}): bias, limits of agreement and r from so "
                         "few are rough estimates.")
        for name, subjects in entry.get("implausible", {}).items():
            notes.append(f"{key}: predicted {NAMES.get(name, name)} outside 0-100 % for {len(subjects)} of "
                         f"{entry['subjects']} subjects ({', '.join(subjects)}): the predicted ES cavity is larger "
                         "than the ED one, a segmentation failure; kept in the statistics above.")
    return notes


def clinical_markdown(metrics: dict) -> str:
    """The metrics.md section (empty string without clinical indices)."""
    rows = clinical_rows(metrics)
    if not rows:
        return ""
    notes = refusal_notes(metrics)
    files = metrics.get("clinical_files", {})
    head = ("\n## Clinical indices, prediction vs ground truth (per subject; ED/ES from the dataset)\n\n"
            f"Per subject in `{files.get('csv', 'clinical.csv')}`. Bias = mean(prediction - truth); limits of "
            "agreement = bias ± 1.96 SD; EF in %.\n\n")
    return head + markdown(rows) + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")
