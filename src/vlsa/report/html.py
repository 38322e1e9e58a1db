"""A small self-contained HTML report of a run: table, curves, overlays, config, environment."""

from __future__ import annotations

import html
import json
from pathlib import Path

from vlsa.report.tables import annotation_notes, distance_units, domain_table, html_table, scored_on
from vlsa.utils.atomic import write_text


def _clinical_html(metrics: dict) -> list[str]:
    """The clinical-index agreement table and each domain's Bland-Altman plot (none without ED/ES)."""
    from vlsa.report.clinical import clinical_rows, refusal_notes

    rows = clinical_rows(metrics)
    if not rows:
        return []
    files = metrics.get("clinical_files", {})
    out = ["<h2>Clinical indices</h2><p>Per subject from the predicted and the ground-truth ED and ES volumes "
           f"(<code>{html.escape(files.get('csv', 'clinical.csv'))}</code>); bias = mean(prediction - truth), limits "
           "of agreement = bias ± 1.96 SD, EF in %.</p>", html_table(rows),
           *(f"<p>{html.escape(note)}</p>" for note in refusal_notes(metrics))]
    for key, png in files.get("plots", {}).items():
        out.append(f"<h3>Bland-Altman: {html.escape(key)}</h3><img src=\"{html.escape(png)}\" alt=\"Bland-Altman {html.escape(key)}\">")
    return out


def write_report(run_dir: str | Path, title: str = "vlsa run", metrics_file: str = "metrics.json") -> Path:
    """report.html from metrics.json (or report_<what>.html from metrics_<what>.json)."""
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / metrics_file).read_text())
    suffix = Path(metrics_file).stem.removeprefix("metrics")
    overlay_dir = run_dir / ("overlays" if not suffix else f"overlays{suffix}")
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    units = distance_units(metrics)[0]  # a domain in another unit is named here and in annotation_notes
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Dataset <b>{html.escape(metrics['dataset'])}</b>; trained on <b>{html.escape(', '.join(metrics['source']))}</b>; "
        f"scored {html.escape(scored_on(metrics))}.</p>",
        *(f"<p>{html.escape(note)}</p>" for note in annotation_notes(metrics)),
        "<h2>Dice</h2>", html_table(domain_table(metrics, "dice")),
        f"<h2>HD95 ({html.escape(units)})</h2>", html_table(domain_table(metrics, "hd95")),
        f"<h2>ASD ({html.escape(units)})</h2>", html_table(domain_table(metrics, "asd")),
    ]
    parts += _clinical_html(metrics)
    if (run_dir / "curves.png").is_file():
        parts += ["<h2>Training curves</h2>", '<img src="curves.png" alt="training curves">']
    # a target dataset's domains (keys NAME/DOMAIN) lie in one subfolder per dataset
    overlays = sorted(overlay_dir.rglob("*.png")) if overlay_dir.is_dir() else []
    if overlays:
        parts.append("<h2>Overlays</h2><p>The worst cases of each domain first (lowest Dice), at native resolution: "
                     "left ground truth, right prediction as it was scored (post-processed when post-processing "
                     "applied, as <code>vlsa predict</code> writes it), one colour per class (legend on top).</p>")
        for png in overlays:
            key = png.relative_to(overlay_dir).with_suffix("").as_posix()
            src = f"{overlay_dir.name}/{png.relative_to(overlay_dir).as_posix()}"
            parts.append(f"<h3>{html.escape(key)}</h3><img src=\"{html.escape(src)}\" alt=\"{html.escape(key)}\">")
    from vlsa.report.vcdr import clinical_sections

    parts += clinical_sections(metrics)  # vCDR vs the experts, whole photos (fundus runs that have them)
    if (run_dir / "diagnostics.md").is_file():
        parts.append('<p><a href="diagnostics.md">Feature diagnostics</a></p>')
    parts.append("<h2>Configuration</h2><pre>" + html.escape((run_dir / "config.yaml").read_text()) + "</pre>")
    if run:
        parts.append("<h2>Environment</h2><pre>" + html.escape(json.dumps(
            {k: run.get(k) for k in ("versions", "machine", "command", "date", "seed")}, indent=2)) + "</pre>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%}")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
    write_text(run_dir / f"report{suffix}.html", page)
    return run_dir / f"report{suffix}.html"
