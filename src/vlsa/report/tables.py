"""Per-domain result tables: Markdown, HTML, CSV and the console.

A region no case of a domain annotates (vlsa.metrics.NOT_ANNOTATED) reads "not annotated" in
every table, never a number; the unseen mean of a region averages the domains that annotate it.
"""

from __future__ import annotations

import csv
import html
import io

from vlsa.metrics import METRICS, NOT_ANNOTATED, is_number


def _fmt(value, metric: str) -> str:
    if not is_number(value):
        return NOT_ANNOTATED
    if value != value:  # NaN
        return "–"
    return f"{value:.3f}" if metric == "dice" else f"{value:.2f}"


def annotated_mean(values: list) -> float | str:
    """Mean of the numbers among `values` (the domains that annotate a region); NOT_ANNOTATED
    when none does."""
    numbers = [v for v in values if is_number(v)]
    return sum(numbers) / len(numbers) if numbers else NOT_ANNOTATED


def domain_classes(domains: dict, metric: str = "dice") -> list[str]:
    """The region columns of a table: every region any domain reports, in first-seen order."""
    classes: list[str] = []
    for d in domains.values():
        classes += [c for c in d[metric] if c != "mean" and c not in classes]
    return classes


def domain_table(metrics: dict, metric: str = "dice") -> list[list[str]]:
    """Rows = domains (source marked), columns = classes and mean."""
    domains = metrics["domains"]
    if not domains:
        return []
    classes = domain_classes(domains, metric)
    rows = [["domain", "role", "n", *classes, "mean"]]
    for name, d in domains.items():
        role = "source" if d["role"] == "source" else "unseen"
        rows.append([name, role, str(d["n"]), *(_fmt(d[metric].get(c, NOT_ANNOTATED), metric) for c in classes),
                     _fmt(d[metric]["mean"], metric)])
    unseen = [d for d in domains.values() if d["role"] == "target"]
    if unseen:
        means = [annotated_mean([d[metric].get(c, NOT_ANNOTATED) for d in unseen]) for c in [*classes, "mean"]]
        rows.append(["unseen mean", "", str(sum(d["n"] for d in unseen)), *(_fmt(v, metric) for v in means)])
    return rows


def markdown(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines) + "\n"


def html_table(rows: list[list[str]]) -> str:
    """[header, rows...] -> one HTML table, every cell escaped (report.html's tables)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def console(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def unfinished(metrics: dict, run: str = "RUN") -> str | None:
    """The line that says these metrics are of an unfinished run (training stopped before
    train.steps, e.g. interrupted), naming the checkpoint scored and the command that finishes
    `run` (metrics.md keeps "RUN": a run folder may be moved); None for a finished run."""
    state = metrics.get("run_state") or {}
    if state.get("finished", True):
        return None
    at = (state.get("checkpoint") or {}).get("step")
    return (f"training is unfinished (step {state.get('steps_done')} of {state.get('steps')}): these metrics are of "
            f"the checkpoint of step {at}, not of the finished run; continue with `vlsa train --out {run} --resume`.")


# a domain mean over fewer cases than this is flagged: with ~0.05 Dice spread per image, the 95 %
# interval of a mean of n images is about +-0.1/sqrt(n), wider than most method differences
SMALL_N = 10


def small_sample_note(metrics: dict) -> str | None:
    """The line that names the domains scored on fewer than SMALL_N cases (e.g. the DoFE sample's 2
    crops per site), or None when every domain has enough."""
    few = [f"{name} (n={d['n']})" for name, d in metrics["domains"].items() if d["n"] < SMALL_N]
    if not few:
        return None
    return (f"fewer than {SMALL_N} cases in {', '.join(few)}: a mean over so few cases is an anecdote, not an "
            "estimate for the site; pool sites or score the full release before comparing methods.")


def annotation_notes(metrics: dict) -> list[str]:
    """The lines above the tables: an unfinished run, domains with fewer than SMALL_N cases, one line
    per dataset with a label rule (e.g. Drishti-GS1's expert agreement threshold), per domain whose
    regions are not annotated in every case (scored on fewer cases), and domains whose HD95/ASD are
    in another unit (`distance_units`)."""
    notes = [] if (state := unfinished(metrics)) is None else [state]
    notes += [] if (few := small_sample_note(metrics)) is None else [few[0].upper() + few[1:]]
    rules = {metrics["dataset"]: metrics.get("label_rule")}
    rules |= {name: t.get("label_rule") for name, t in metrics.get("target_datasets", {}).items()}
    notes += [f"Labels of {name}: {rule}." for name, rule in rules.items() if rule is not None]
    for name, d in metrics["domains"].items():
        counts = d.get("n_annotated", {})
        missing = [r for r, k in counts.items() if k == 0]
        fewer = [f"{r} on {k} of {d['n']}" for r, k in counts.items() if 0 < k < d["n"]]
        if missing:
            notes.append(f"{name}: {', '.join(missing)} not annotated (not scored, left out of the means).")
        if fewer:
            notes.append(f"{name}: scored only on the cases that annotate it: {', '.join(fewer)}.")
    notes += [] if (unit_note := distance_units(metrics)[1]) is None else [unit_note]
    return notes


def scored_on(metrics: dict) -> str:
    """What was scored, as a phrase: the run dataset's split, and each target dataset's own (e.g. the
    DoFE sample's crops, all splits, beside Drishti-GS1's test split)."""
    def split(value) -> str:
        return "all images (all splits)" if value == "all" else "test split"

    unit = metrics.get("unit_of_evaluation", "image")
    others = [f"{name}: {split(t.get('split'))}" for name, t in metrics.get("target_datasets", {}).items()]
    if not others:
        return f"per {unit}, each domain's {split(metrics.get('split'))}"
    return f"per {unit}; {metrics['dataset']}: {split(metrics.get('split'))}; target datasets {', '.join(others)}"


def distance_units(metrics: dict) -> tuple[str, str | None]:
    """(the HD95/ASD tables' unit as their headings give it, the note naming domains in another unit
    or None). Domains may differ: ACDC's h5 copy (no spacing: voxels) beside Sunnybrook DICOM (mm)."""
    units = "mm" if metrics.get("units") == "mm" else "px"
    other = [n for n, d in metrics["domains"].items() if d.get("units", units) != units]
    if not other:
        return units, None
    theirs = "px" if units == "mm" else "mm"
    why = "voxel spacing unknown there" if units == "mm" else "voxel spacing known there"
    return (f"{units}; {theirs} for {', '.join(other)}",
            f"HD95/ASD of {', '.join(other)} are in {theirs}, not {units} ({why}).")


def metrics_markdown(metrics: dict) -> str:
    units = distance_units(metrics)[0]
    parts = [f"# Evaluation: {metrics['dataset']}, source {', '.join(metrics['source'])}\n",
             f"\nScored {scored_on(metrics)}.\n"]
    notes = annotation_notes(metrics)
    if notes:
        parts.append("\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    for metric, title in (("dice", "Dice (higher is better)"), ("hd95", f"HD95, {units} (lower is better)"),
                          ("asd", f"ASD, {units} (lower is better)")):
        parts.append(f"\n## {title}\n\n" + markdown(domain_table(metrics, metric)))
    return "".join(parts)


def metrics_csv(metrics: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["domain", "role", "n", "metric", "class", "value", "sd"])
    for name, d in metrics["domains"].items():
        for metric in METRICS:
            for cls, value in d[metric].items():
                sd = d.get(f"{metric}_sd", {}).get(cls, "")
                writer.writerow([name, d["role"], d["n"], metric, cls,
                                 f"{value:.6f}" if is_number(value) else value,
                                 f"{sd:.6f}" if is_number(sd) else sd])
    return buf.getvalue()
