"""Training curves (PNG) from log.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vlsa.utils.atomic import atomic_path  # noqa: E402


def plot_curves(log_csv: str | Path, out_png: str | Path) -> Path:
    with open(log_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    steps = [int(r["step"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    lr = [float(r["lr"]) for r in rows]
    val = [(int(r["step"]), float(r["val_dice"])) for r in rows if r["val_dice"]]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].plot(steps, loss)
    axes[0].set(title="training loss (Dice + CE)", xlabel="step")
    axes[1].plot(steps, lr)
    axes[1].set(title="learning rate", xlabel="step")
    if val:
        axes[2].plot(*zip(*val), marker="o")
    axes[2].set(title="source validation Dice", xlabel="step", ylim=(0, 1))
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(out_png)
