"""Bland-Altman plots (PNG) of a clinical index: prediction vs reference, one point per subject."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vlsa.clinical import agreement  # noqa: E402
from vlsa.utils.atomic import atomic_path  # noqa: E402


def bland_altman_png(panels: dict[str, tuple[list[float], list[float]]], out_png: str | Path,
                     units: dict[str, str] | None = None, title: str = "") -> Path:
    """One Bland-Altman panel per index: x = mean of (pred, true), y = pred - true, with the bias and
    the limits of agreement (bias ± 1.96 SD) drawn and written in the panel's title.

    panels: index name -> (pred values, true values), paired per subject (NaN pairs dropped).
    Returns the PNG path (written atomically)."""
    units = units or {}
    names = list(panels)
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(3.6 * max(1, len(names)), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        p, t = (np.asarray(v, dtype=np.float64) for v in panels[name])
        keep = np.isfinite(p) & np.isfinite(t)
        p, t = p[keep], t[keep]
        stats = agreement(p, t)
        unit = f" ({units[name]})" if units.get(name) else ""
        ax.scatter((p + t) / 2, p - t, s=14, alpha=0.8)
        if stats["n"]:
            ax.axhline(stats["bias"], color="k", lw=1)
            for lim in ("loa_low", "loa_high"):
                if np.isfinite(stats[lim]):
                    ax.axhline(stats[lim], color="k", lw=0.8, ls="--")
        ax.set_title(f"{name}: bias {stats['bias']:+.3g}, LoA [{stats['loa_low']:.3g}, {stats['loa_high']:.3g}]"
                     f"\nMAE {stats['mae']:.3g}, r {stats['r']:.3f}, n {stats['n']}", fontsize=8)
        ax.set_xlabel(f"mean of prediction and reference{unit}", fontsize=8)
        ax.set_ylabel(f"prediction - reference{unit}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(out_png)
