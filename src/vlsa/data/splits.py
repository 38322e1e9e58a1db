"""Deterministic, content-independent splits by id (stable across machines and Python runs)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _key(item: str, salt: str) -> str:
    return hashlib.sha1(f"{salt}:{item}".encode()).hexdigest()


def hash_split(ids: Iterable[str], fraction: float, salt: str = "vlsa") -> set[str]:
    """Pick round(fraction * n) ids (at least one if fraction > 0 and n > 1) by hash order.

    Sorting by a salted hash gives a split that does not depend on file order, is the same for
    every run, and keeps exactly the requested proportion even for small domains.
    """
    unique = sorted(set(ids))
    if fraction <= 0 or len(unique) < 2:
        return set()
    count = min(len(unique) - 1, max(1, round(fraction * len(unique))))
    return set(sorted(unique, key=lambda i: _key(i, salt))[:count])
