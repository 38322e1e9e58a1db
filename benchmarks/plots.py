"""Pictures of the benchmark results, written next to their JSON/Markdown."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from vlsa.utils.atomic import atomic_path  # noqa: E402

TITLES = {"fundus": "fundus (4 sites)", "mms": "cardiac M&Ms-like (4 vendors)"}


def _save(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_dg(table: dict, path: str | Path) -> Path:
    """One panel per dataset: unseen-domain Dice per method (mean ± std over seeds), source Dice as a tick."""
    fig, axes = plt.subplots(1, len(table), figsize=(6.5 * len(table), 4.2), squeeze=False)
    for ax, (dataset, methods) in zip(axes[0], table.items()):
        names = list(methods)
        unseen = [methods[m]["unseen_dice"] for m in names]
        err = [0.0 if math.isnan(methods[m]["unseen_dice_std"]) else methods[m]["unseen_dice_std"] for m in names]  # 1 seed
        colours = ["#888888" if m.startswith("ERM") else "#3b75af" for m in names]
        ax.barh(range(len(names)), unseen, xerr=err, color=colours, capsize=3)
        ax.scatter([methods[m]["source_dice"] for m in names], range(len(names)), marker="|", s=200, color="black",
                   zorder=3)
        ax.set_yticks(range(len(names)), [f"{m} (n={len(methods[m]['seeds'])})" for m in names])
        ax.invert_yaxis()
        low = min(unseen) - max(err) - 0.05
        ax.set(xlim=(max(0.0, low), 1.0), xlabel="Dice", title=f"{TITLES.get(dataset, dataset)}: single-source DG")
        ax.legend(handles=[Patch(color="#888888", label="baseline, unseen domains"),
                           Patch(color="#3b75af", label="VLSA, unseen domains"),
                           Line2D([], [], color="black", marker="|", linestyle="", markersize=12, label="source domain")],
                  loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_em_scaling(em_rows: list[dict], path: str | Path) -> Path:
    """Time and memory of EM Aggregation vs self-attention as the number of pixels grows (log-log)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for block in dict.fromkeys(r["block"] for r in em_rows):
        rows = [r for r in em_rows if r["block"] == block]
        n = [r["pixels"] for r in rows]
        axes[0].plot(n, [r["step_s"] for r in rows], marker="o", label=block)
        axes[1].plot(n, [max(r["peak_mb"], 0.1) for r in rows], marker="o", label=block)
    axes[0].set(xscale="log", yscale="log", xlabel="pixels N = H·W", ylabel="seconds (forward + backward)",
                title="time")
    axes[1].set(xscale="log", yscale="log", xlabel="pixels N = H·W", ylabel="peak memory growth (MB)",
                title="memory")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
