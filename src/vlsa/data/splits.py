"""Deterministic, content-independent splits by id (stable across machines, Python runs and folder sizes).

The rule (`RULE`, recorded in metrics.json as `split_rule`): an id is in the held-out part iff the
SHA-1 of `"<salt>:<id>"`, read as a number in [0, 1), is below `fraction`. Each id's side depends on
that id alone, never on how many ids the folder holds, so adding cases (e.g. M&Ms' Validation/
folder) never moves a case a run trained on into its test split. The price of a per-id rule is
that the held-out share of a small domain is binomial around `fraction` rather than exact.

Tiny domains: a domain of one id holds nothing out (it could not both train and test); when no
id of a domain of two or more falls below `fraction`, the one with the smallest hash is held out,
so a test (or validation) split is never empty by chance. That fallback can only move an id from
held-out to kept as ids are added (the lowest hash of a larger set is never another *older* id,
and once some id falls below `fraction` the fallback is off), never from kept to held-out; the one
exception is a domain growing from one id to two. A domain is wholly held out only when every id
falls below `fraction` (probability fraction**n). Runs record their training cases and `vlsa
evaluate` refuses a test split that overlaps them (`vlsa.engine.runstate.check_no_training_cases`),
so no such move passes unnoticed.

The source validation split (checkpoint selection, the post-processing decision) is drawn from a
run's own training cases by `hash_pick` instead: exactly round(fraction * n) ids in hash order.
Its count depends on n, but what moves when cases are added moves only between a run's train and
validation parts, never into a test split, and it keeps model selection stable on small domains
(a per-id rule would hold out anywhere from 1 to 12 of 48 images at 0.2). run.json records both
lists (`train_cases`, `val_cases`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

RULE = ("per-id: an id is held out iff sha1('<salt>:<id>') / 2**160 < fraction (independent of the "
        "number of ids); a domain of >= 2 ids with none below holds out its lowest-hash id, one of 1 id nothing")
_RANGE = 2 ** 160


def position(item: str, salt: str) -> float:
    """The id's salted hash as a number in [0, 1): where it falls in the hash range."""
    return int(hashlib.sha1(f"{salt}:{item}".encode()).hexdigest(), 16) / _RANGE


def hash_split(ids: Iterable[str], fraction: float, salt: str = "vlsa") -> set[str]:
    """The ids held out (test or validation): those whose salted hash falls below `fraction` of
    the hash range (`position(id, salt) < fraction`), see the module doc; for >= 2 ids with none
    below, the lowest-hash one. fraction <= 0, or a single id, holds out nothing."""
    unique = sorted(set(ids))
    if fraction <= 0 or len(unique) < 2:
        return set()
    held = {i for i in unique if position(i, salt) < fraction}
    if not held:
        held = {min(unique, key=lambda i: position(i, salt))}
    return held


def hash_pick(ids: Iterable[str], fraction: float, salt: str = "vlsa") -> set[str]:
    """Exactly round(fraction * n) ids (at least one if fraction > 0 and n > 1, at most n - 1), the
    first in salted-hash order: the source validation split (see the module doc for why it is not
    `hash_split`)."""
    unique = sorted(set(ids))
    if fraction <= 0 or len(unique) < 2:
        return set()
    count = min(len(unique) - 1, max(1, round(fraction * len(unique))))
    return set(sorted(unique, key=lambda i: position(i, salt))[:count])
