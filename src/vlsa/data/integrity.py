"""Dataset integrity and plausibility checks (after nnU-Net's verify_dataset_integrity).

Every reader runs these while it reads, so training, evaluation and `vlsa verify` all refuse the
same implausible labels:
- `check_grey_levels`: a mask's values must be the dataset's encoding (DoFE 255/128/0, RIGA+
  0/128/255); class indices 0/1/2 or palette colours in their place are refused.
- `check_annotated_frames`: the ED/ES frames a csv names must carry labels (M&Ms).
- `plausible` (a decorator on `samples`): over a whole domain/split, an error when no image has
  a background pixel (one class covering every pixel of every image: an inverted or misread
  encoding), a warning naming the domain when no image has any foreground label.
`verify` loads every sample of the requested domains and splits once and summarises them; a split
a reader has no cases for may be allowed to be empty (a domain used only as a target has no train
cases), and `can_be_source` says which domains have train cases.
All errors are one-line `DataError`s naming the file (or dataset root) and the problem.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlsa.data.io import describe_values, is_lossy
from vlsa.errors import DataError, DataErrors

log = logging.getLogger(__name__)


def check_grey_levels(path: str | Path, grey: np.ndarray, levels: dict[int, str], dataset: str,
                      num_classes: int, tolerance: int = 32, max_off: float = 0.05) -> None:
    """Refuse a mask whose values are not the dataset's grey levels.

    grey: H x W stored mask values; levels: grey level -> class name. Values within `tolerance`
    of a level are accepted (JPEG and resampling smear edges) as long as no more than `max_off`
    of the pixels lie farther away. Values that are all class indices (< num_classes) but not
    levels are refused too (e.g. DoFE masks holding 0/1/2 would otherwise read as all cup).
    Raises DataError naming the file, the values found and the expected levels.
    """
    values = np.unique(grey)
    known = np.array(sorted(levels))
    index_like = values.max() < num_classes and not set(values.tolist()) <= set(levels)
    distance = np.abs(grey.astype(np.int64)[..., None] - known).min(axis=-1)
    off = float((distance > tolerance).mean())
    if index_like or off > max_off:
        expected = ", ".join(f"{v} {n}" for v, n in sorted(levels.items(), reverse=True))
        why = "; they look like class indices" if index_like else f"; {off:.0%} of pixels are off these levels"
        if is_lossy(path) and not index_like:
            why += " (JPEG mask: lossy)"
        raise DataError(path, f"mask values {describe_values(values)} are not {dataset} grey levels ({expected}){why}")


def unknown_values_message(path: str | Path, unknown: list[int], known: list[int], found: int) -> str:
    """The one line for mask values outside a dataset's encoding, at most a few values shown;
    a JPEG mask is called lossy, since compression smears its grey levels."""
    if is_lossy(path):
        return (f"mask is JPEG (lossy): {found} distinct values, e.g. {describe_values(unknown, 4)} not in the "
                f"encoding {known}; save masks losslessly (PNG)")
    return f"mask values {describe_values(unknown)} not in classes.yaml (known: {known})"


def check_annotated_frames(path: str | Path, case: str, named: dict[str, int], labels: np.ndarray) -> None:
    """The frames a csv names (phase -> 0-based frame index) must carry labels.

    labels: x, y, z, t label volume. Raises DataError with the case code, the empty frames and
    the frames that do carry labels (and a hint when they are the named ones shifted by one).
    """
    labelled = [int(t) for t in np.flatnonzero(labels.reshape(-1, labels.shape[-1]).any(axis=0))]
    empty = {phase: t for phase, t in named.items() if t not in labelled}
    if not empty:
        return
    said = ", ".join(f"{phase}={t}" for phase, t in empty.items())
    hint = ""
    for shift, base in ((-1, "1-based"), (1, "shifted by one frame")):
        if labelled and sorted(t + shift for t in named.values()) == labelled:
            hint = f" (the csv's ED/ES look {base})"
            break
    raise DataError(path, f"case {case}: the csv names frame(s) {said} but they carry no labels; "
                          f"frames with labels: {labelled}{hint}")


class _Tally:
    """Label histogram of one domain/split while its samples stream past."""

    def __init__(self, spec, domain: str, split: str, where):
        self.spec, self.domain, self.split, self.where = spec, domain, split, where
        self.hist = np.zeros(spec.num_classes, dtype=np.int64)
        self.images = 0
        self.first = None

    def add(self, sample) -> None:
        if sample.label is None:
            return
        self.hist += np.bincount(np.clip(sample.label.ravel(), 0, self.spec.num_classes - 1),
                                 minlength=self.spec.num_classes)
        self.images += 1
        self.first = self.first or sample.name

    def check(self) -> None:
        if self.images == 0:
            return
        names = self.spec.label_names
        where = f"{self.domain}/{self.split}"
        if self.hist[0] == 0:
            present = [names[k] for k in np.flatnonzero(self.hist)]
            what = f"class {present[0]!r} covers" if len(present) == 1 else f"classes {present} cover"
            raise DataError(self.where, f"{what} every pixel of all {self.images} images of {where} (first: "
                                        f"{self.first}); the masks are not in this dataset's label encoding")
        if self.hist[1:].sum() == 0:
            log.warning("%s: no image of %s has any foreground label (%d images, first: %s)",
                        self.where, where, self.images, self.first)


def checked(samples: Iterable, spec, domain: str, split: str, where) -> Iterator:
    """Yield `samples`, then run the whole-domain plausibility check on what went past."""
    tally = _Tally(spec, domain, split, where)
    for sample in samples:
        tally.add(sample)
        yield sample
    tally.check()


def plausible(samples_method):
    """Decorator for a reader's `samples(domain, split)`: the domain-level plausibility check."""

    @functools.wraps(samples_method)
    def wrapper(reader, domain, split, *args, **kwargs):
        return checked(samples_method(reader, domain, split, *args, **kwargs), reader.spec, domain, split,
                       getattr(reader, "root", None))

    return wrapper


# readers say a domain/split holds nothing with a DataError whose problem starts with this
EMPTY = "empty domain"


def is_empty_split(exc: DataError) -> bool:
    """Whether a reader's DataError says a domain/split has no cases (rather than a bad file)."""
    return exc.problem.startswith(EMPTY)


@dataclass
class DomainSummary:
    domain: str
    split: str
    images: int
    groups: int
    label_fraction: dict[str, float]


def _summarise(reader, domain: str, split: str) -> DomainSummary:
    spec = reader.spec
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
        raise DataError(getattr(reader, "root", None), f"{EMPTY}: {domain}/{split} has no samples")
    total = max(1, hist.sum())
    return DomainSummary(domain, split, count, len(groups), {n: float(h / total) for n, h in zip(spec.label_names, hist)})


def verify(reader, domains: list[str], splits=("train", "test"), allow_empty: tuple[str, ...] = (),
           sources: list[str] | tuple[str, ...] = (), keep_going: bool = False) -> list[DomainSummary]:
    """Load every sample of `domains` x `splits` once; -> one summary per domain and split.

    allow_empty: splits that may hold nothing (summarised with 0 images) instead of an error, e.g.
    ("train", "test") for `vlsa verify`, where a target-only domain has no train cases.
    sources: domains (among `domains`, with "train" in `splits`) that must have train cases.
    Raises DataError (one line) for a bad file, for an empty split not in `allow_empty`, for a
    domain of `sources` without train cases, and when nothing at all is readable. keep_going: check
    every domain and split before raising, then raise DataErrors with each one's first problem
    (a reader reads a split as one stream, so a split's check ends at its first bad file).
    """
    summaries, problems = [], []
    # a reader that can tell that its split may separate one subject's images says so (folder)
    for warning in getattr(reader, "split_warnings", lambda _: [])(domains):
        log.warning("%s", warning)
    for domain in domains:
        for split in splits:
            try:
                summaries.append(_summarise(reader, domain, split))
            except DataError as exc:
                if split not in allow_empty or not is_empty_split(exc):
                    if not keep_going:
                        raise
                    problems.append(exc)
                    continue
                summaries.append(DomainSummary(domain, split, 0, 0, {}))
    root = getattr(reader, "root", None)
    if problems:
        if len(problems) == 1:
            raise problems[0]
        raise DataErrors(problems, f"in {len(problems)} domain/split(s) of {root}; each split is checked up to "
                                   "its first bad file")
    if summaries and not any(s.images for s in summaries):
        raise DataError(root, f"{EMPTY}: no samples in any of {list(domains)} ({'/'.join(splits)})")
    if sources:
        if "train" not in splits or not set(sources) <= set(domains):
            raise ValueError("verify: sources must be among the domains, with the train split verified")
        missing = [d for d in sources if d not in can_be_source(summaries)]
        if missing:
            raise DataError(root, f"source domain(s) {missing} have no train cases (domains with train cases: "
                                  f"{can_be_source(summaries)})")
    return summaries


def can_be_source(summaries: list[DomainSummary]) -> list[str]:
    """The domains whose train split holds samples, in order: those a run can train on."""
    return [s.domain for s in summaries if s.split == "train" and s.images > 0]
