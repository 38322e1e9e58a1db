"""The clinical sections of fundus runs, in report.html and metrics.md: vCDR against the experts (with the
inter-expert reference beside it, and the Bland-Altman plot) and the whole-photo path's Dice at
the photo's resolution with the locator's metric. Empty for runs without them."""

from __future__ import annotations

import html

from vlsa.report.tables import domain_table, html_table, markdown


def vcdr_rows(metrics: dict) -> list[list[str]]:
    """[header, one row per (path, domain)]: n, MAE, bias, limits of agreement, r, inter-expert MAE."""
    rows = [["prediction", "domain", "n", "MAE", "bias", "LoA", "r", "inter-expert MAE"]]
    for path, block in (("ROI", metrics.get("vcdr")), ("whole photo", metrics.get("whole_photo", {}).get("vcdr"))):
        for domain, s in (block or {}).get("domains", {}).items():
            rows.append([path, domain, str(s["n"]), f"{s['mae']:.3f}", f"{s['bias']:+.3f}",
                         f"[{s['loa_low']:+.3f}, {s['loa_high']:+.3f}]", f"{s['r']:.3f}", f"{s['inter_expert_mae']:.3f}"])
    return rows


def locator_rows(metrics: dict) -> list[list[str]]:
    rows = [["domain", "n", "disc found", "inside the ROI", "centre error (disc diameters) mean / max",
             "found / true diameter", "confidence min"]]
    for domain, m in metrics.get("whole_photo", {}).get("locator_metrics", {}).items():
        err, ratio = m["centre_error_diameters"], m["diameter_ratio"]
        rows.append([domain, str(m["n"]), str(m["found"]), str(m["inside"]), f"{err['mean']:.3f} / {err['max']:.3f}",
                     f"{ratio['mean']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})", f"{m['confidence']['min']:.2f}"])
    return rows


VCDR_TEXT = ("vCDR of each post-processed prediction against the mean of the experts' cup-to-disc ratios (ROI: the "
             "evaluated ROIs; whole photo: through the disc locator, on the photo's grid); the inter-expert MAE (each "
             "expert against the mean of the others, on the same images) is the human limit beside it.")
WHOLE_TEXT = ("Each photograph through the disc locator ({locator}), the canonical ROI, segmentation and paste-back, "
              "scored on the photo's own pixel grid.")


def fundus_sections(metrics: dict) -> list[tuple[int, str, str, list[list[str]], str | None]]:
    """The fundus clinical sections, shared by report.html and metrics.md: (heading level, title,
    text, table rows with the header first, the PNG shown under the table or None); [] for runs
    without vCDR or whole photos."""
    sections = []
    if len(vcdr_rows(metrics)) > 1:
        sections.append((2, "Vertical cup-to-disc ratio", VCDR_TEXT, vcdr_rows(metrics), metrics.get("vcdr_plot")))
    whole = metrics.get("whole_photo")
    if whole:
        sections += [(2, "Whole photographs", WHOLE_TEXT.format(locator=whole["locator"]),
                      domain_table({"domains": whole["domains"]}, "dice"), None),
                     (3, "Disc locator", "", locator_rows(metrics), None)]
    return sections


def clinical_sections(metrics: dict) -> list[str]:
    """HTML fragments for report.html (an empty list when the evaluation has no clinical results)."""
    parts = []
    for level, title, text, rows, plot in fundus_sections(metrics):
        parts.append(f"<h{level}>{html.escape(title)}</h{level}>")
        parts += [f"<p>{html.escape(text)}</p>"] if text else []
        parts.append(html_table(rows))
        if plot:
            parts.append(f'<img src="{html.escape(plot)}" alt="Bland-Altman plot of vCDR">')
    return parts


def fundus_markdown(metrics: dict) -> str:
    """The same sections for metrics.md (empty string for runs without them); the Bland-Altman plot
    is linked, as the file beside metrics.md."""
    parts = []
    for level, title, text, rows, plot in fundus_sections(metrics):
        parts.append(f"\n{'#' * level} {title}\n\n" + (f"{text}\n\n" if text else "") + markdown(rows))
        if plot:
            parts.append(f"\n![Bland-Altman plot of vCDR]({plot})\n")
    return "".join(parts)
