"""Preview grid of a dataset: rows = domains, a few images each with the label contours."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np

from vlsa.data.io import write_png
from vlsa.report.overlay import draw_contours, grid, to_rgb


def preview(reader, out_png: str | Path, per_domain: int = 6, split: str = "train") -> Path:
    rows = []
    for domain in reader.domains():
        samples = list(reader.samples(domain, split))
        # prefer slices/images that show every structure (mid-ventricular slices for MRI)
        samples.sort(key=lambda s: -len(np.unique(s.label)))
        step = max(1, len(samples) // per_domain)
        picked = list(islice(samples[::step], per_domain))
        rows.append([draw_contours(to_rgb(s.image), s.label, reader.spec) for s in picked])
    write_png(out_png, grid(rows))
    return Path(out_png)
