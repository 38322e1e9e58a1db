"""Per-domain result tables: Markdown, CSV and the console."""

from __future__ import annotations

import csv
import io

from vlsa.metrics import METRICS


def _fmt(value: float, metric: str) -> str:
    if value != value:  # NaN
        return "–"
    return f"{value:.3f}" if metric == "dice" else f"{value:.2f}"


def domain_table(metrics: dict, metric: str = "dice") -> list[list[str]]:
    """Rows = domains (source marked), columns = classes and mean."""
    domains = metrics["domains"]
    if not domains:
        return []
    classes = [c for c in next(iter(domains.values()))[metric] if c != "mean"]
    rows = [["domain", "role", "n", *classes, "mean"]]
    for name, d in domains.items():
        role = "source" if d["role"] == "source" else "unseen"
        rows.append([name, role, str(d["n"]), *(_fmt(d[metric][c], metric) for c in classes), _fmt(d[metric]["mean"], metric)])
    unseen = [d for d in domains.values() if d["role"] == "target"]
    if unseen:
        means = [sum(d[metric][c] for d in unseen) / len(unseen) for c in [*classes, "mean"]]
        rows.append(["unseen mean", "", str(sum(d["n"] for d in unseen)), *(_fmt(v, metric) for v in means)])
    return rows


def markdown(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines) + "\n"


def console(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def metrics_markdown(metrics: dict) -> str:
    units = "mm" if metrics.get("units") == "mm" else "px"
    parts = [f"# Evaluation: {metrics['dataset']}, source {', '.join(metrics['source'])}\n"]
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
                writer.writerow([name, d["role"], d["n"], metric, cls, f"{value:.6f}", "" if sd == "" else f"{sd:.6f}"])
    return buf.getvalue()
