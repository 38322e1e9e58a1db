"""Dataset integrity check before use (after nnU-Net's verify_dataset_integrity).

Loads every sample of the requested domains and splits once: image/mask pairs matched, sizes
equal, label values known, no empty domain. The readers raise a one-line `DataError` naming the
file; this adds the checks that need a whole domain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlsa.errors import DataError


@dataclass
class DomainSummary:
    domain: str
    split: str
    images: int
    groups: int
    label_fraction: dict[str, float]


def verify(reader, domains: list[str], splits=("train", "test")) -> list[DomainSummary]:
    spec = reader.spec
    summaries = []
    for domain in domains:
        for split in splits:
            count, groups = 0, set()
            hist = np.zeros(spec.num_classes, dtype=np.int64)
            for sample in reader.samples(domain, split):
                if sample.image.shape[0] != spec.channels:
                    raise DataError(sample.name, f"has {sample.image.shape[0]} channels, expected {spec.channels}")
                if sample.label.min() < 0 or sample.label.max() >= spec.num_classes:
                    raise DataError(sample.name, "label indices outside the classes")
                hist += np.bincount(sample.label.ravel(), minlength=spec.num_classes)
                count += 1
                groups.add(sample.group)
            if count == 0:
                raise DataError(getattr(reader, "root", None), f"empty domain: {domain}/{split} has no samples")
            total = max(1, hist.sum())
            summaries.append(
                DomainSummary(domain, split, count, len(groups),
                              {n: float(h / total) for n, h in zip(spec.label_names, hist)})
            )
    return summaries
