"""Diagnostic pictures: t-SNE of sampled features, EM responsibility and text-similarity maps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vlsa.utils.atomic import atomic_path  # noqa: E402

MARKERS = "os^Dv<>p*h"


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def tsne_plot(panels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], class_names, domain_names,
              path: Path, seed: int = 0) -> Path:
    """panels: title -> (features N x D, class labels N, domain index N)."""
    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (title, (feats, labels, domains)) in zip(axes[0], panels.items()):
        perplexity = float(min(30, max(2, len(feats) // 4)))
        xy = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(feats)
        for d, dname in enumerate(domain_names):
            for c, cname in enumerate(class_names):
                m = (domains == d) & (labels == c)
                if m.any():
                    ax.scatter(xy[m, 0], xy[m, 1], s=8, color=colours(c), marker=MARKERS[d % len(MARKERS)],
                               alpha=0.6, label=f"{cname} · {dname}")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5), markerscale=2)
    fig.tight_layout()
    _save(fig, path)
    return path


def maps_plot(images, labels, argmax_centres, text_sims, class_names, title: str, path: Path) -> Path:
    """Rows = images; columns = image, labels, EM argmax centre (if any), one text-similarity map per class."""
    n = len(images)
    ncol = 2 + (argmax_centres is not None) + len(class_names)
    fig, axes = plt.subplots(n, ncol, figsize=(1.8 * ncol, 1.8 * n), squeeze=False)
    for r in range(n):
        cols = [(images[r], "image", None), (labels[r], "labels", "viridis")]
        if argmax_centres is not None:
            cols.append((argmax_centres[r], "EM centre", "tab20"))
        cols += [(text_sims[r][k], f"text: {name}", "magma") for k, name in enumerate(class_names)]
        for c, (img, name, cmap) in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(img, cmap=cmap, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return path
