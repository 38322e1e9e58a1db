"""From a config to tensors: open the dataset (generating the synthetic one if needed) and the
other datasets whose domains are targets (`data.target_datasets`), split the source domains into
train/validation by case, and fit samples to the model's input size."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vlsa.data.domains import check_domains, missing_target_root, open_reader
from vlsa.data.sample import Sample
from vlsa.data.splits import hash_pick
from vlsa.engine.geometry import Geometry, geometry_for, normalise, to_model
from vlsa.errors import ConfigError, DataError

SYNTHETIC = ("fundus", "mms")
# the data-section keys a reader is opened with; a target dataset's own value wins where given
READER_OPTIONS = ("spacing", "test_fraction", "domain_pattern", "agreement", "roi_scale")
# foundation encoders that read images at their own resolution (px), not at data.image_size
ENCODER_INPUT = {"medsam": 256, "hybrid": 256}


def encoder_size(config) -> int | None:
    """The side (px) at which the model reads images when it differs from `data.image_size`:
    LiteMedSAM's 256 px for VLSA with the medsam backbone; None when the model reads the
    model-size image (its logits are always at data.image_size)."""
    model = config.model
    size = ENCODER_INPUT.get(model.backbone.name) if model.name == "vlsa" else None
    return size if size is not None and size > config.data.image_size else None


def model_input(image: np.ndarray, geom: Geometry, config) -> torch.Tensor:
    """One C x H x W image as read -> the normalised tensor the model reads: C x S x S at the
    model size S, or, for a foundation encoder (`encoder_size`), C x E x E float16 resized from
    the image as read (2D photographs) or from the model-size slice (volume slices, which are
    already at the physical spacing: their field of view must stay the model's)."""
    img, _ = to_model(image, None, geom)
    enc = encoder_size(config)
    if enc is None:
        return normalise(img, config.data.normalise)
    import torch.nn.functional as F

    src = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)) if geom.mode == "resize" else img
    hi = F.interpolate(src[None], size=(enc, enc), mode="bilinear", antialias=geom.mode == "resize",
                       align_corners=False)[0]
    return normalise(hi, config.data.normalise).half()


def cache_dir() -> Path:
    return Path(os.environ.get("VLSA_CACHE", Path.home() / ".cache" / "vlsa"))


def synthetic_root(dataset: str, synth) -> Path:
    """Generate (once, atomically) and return the synthetic dataset for these parameters."""
    params = {"dataset": dataset, **synth.model_dump(), "generator": 1}
    key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    root = cache_dir() / "synth" / f"{dataset}-{key}"
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        from vlsa.data.synth import generate

        generate("cardiac" if dataset == "mms" else "fundus", tmp, synth.per_domain, synth.size, synth.seed)
        try:
            os.replace(tmp, root)
        except OSError:
            if not root.is_dir():  # another process (a distributed rank) finished first: use its copy
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def dataset_root(config) -> Path:
    data = config.data
    if data.root is not None:
        return Path(data.root)
    if data.dataset not in SYNTHETIC:
        raise ConfigError(f"config key 'data.root': required for dataset {data.dataset!r}")
    return synthetic_root(data.dataset, data.synth)


def reader_options(data, target=None) -> dict:
    """The reader options (READER_OPTIONS) of the run's data section, with `target`'s own
    (a TargetDatasetConfig) where it gives them."""
    options = {key: getattr(data, key) for key in READER_OPTIONS}
    if target is not None:
        options |= {key: getattr(target, key) for key in READER_OPTIONS if getattr(target, key, None) is not None}
    return options


def open_configured(config, root: str | Path | None = None):
    root = Path(root) if root is not None else dataset_root(config)
    return open_reader(config.data.dataset, root, **reader_options(config.data))


def resolve_roots(config) -> None:
    """Make `data.root` and every target dataset's root absolute (in place), so a run's config
    works from any folder."""
    if config.data.root is not None:
        config.data.root = str(Path(config.data.root).expanduser().resolve())
    for target in config.data.target_datasets.values():
        if target.root is not None:
            target.root = str(Path(target.root).expanduser().resolve())


def domains_of(config, reader) -> tuple[list[str], list[str]]:
    """(sources, targets) named by the config, checked against the dataset."""
    available = reader.domains()
    check_domains(config.data.source, available, "source", reader.root)
    targets = config.data.targets
    if targets is None:
        targets = [d for d in available if d not in config.data.source]
    check_domains(targets, available, "target", reader.root)
    leak = sorted(set(targets) & set(config.data.source))
    if leak:
        raise ConfigError(f"config key 'data.targets': {leak} are also sources")
    return list(config.data.source), list(targets)


def domain_key(name: str, domain: str) -> str:
    """metrics.json key of a target dataset's domain: NAME/DOMAIN (the run's own domains keep
    their plain names), unique across datasets by construction."""
    return f"{name}/{domain}"


@dataclass(frozen=True)
class TargetDataset:
    """One opened `data.target_datasets` entry: its reader and the domains to evaluate."""

    name: str
    dataset: str
    reader: object
    domains: tuple[str, ...]
    split: str = "test"  # the entry's `split`: test (the literature's protocol) or all

    def keys(self) -> list[str]:
        return [domain_key(self.name, d) for d in self.domains]

    def record(self) -> dict:
        """What run.json and metrics.json keep of it: dataset, reader, resolved root, domains."""
        out = {"dataset": self.dataset, "reader": type(self.reader).__name__,
               "root": str(Path(self.reader.root).resolve()), "domains": list(self.domains)}
        if self.split != "test":
            out["split"] = self.split
        rule = getattr(self.reader, "label_rule", None)
        return out if rule is None else {**out, "label_rule": rule}


def open_target_datasets(config, spec) -> list[TargetDataset]:
    """Open every `data.target_datasets` entry with its own reader and options. Raises ConfigError
    naming the entry when its label space (label names, channels) differs from `spec`'s (the
    run's), when it is the run's own dataset and root (list those domains in `data.targets`), or
    when its root is missing; DataError for unknown domains."""
    out = []
    own = (config.data.dataset, dataset_root(config).resolve()) if config.data.target_datasets else None
    for name, target in config.data.target_datasets.items():
        key = f"config key 'data.target_datasets.{name}'"
        if target.root is None and target.dataset not in SYNTHETIC:
            raise ConfigError(f"{key}.root: required for dataset {target.dataset!r}")
        root = Path(target.root) if target.root is not None else synthetic_root(target.dataset, config.data.synth)
        if not root.is_dir():  # a packaged config's conventional path (../shared/realdata/...) elsewhere
            raise missing_target_root(name, root)
        if (target.dataset, root.resolve()) == own:
            raise ConfigError(f"{key}: is the run's own dataset ({target.dataset} at {root}); "
                              "list its domains in data.targets instead")
        reader = open_reader(target.dataset, root, **reader_options(config.data, target))
        theirs = reader.spec
        if tuple(theirs.label_names) != tuple(spec.label_names) or theirs.channels != spec.channels:
            raise ConfigError(f"{key}: {target.dataset} at {root} has labels {list(theirs.label_names)} and "
                              f"{theirs.channels} channel(s), the run's {config.data.dataset} has "
                              f"{list(spec.label_names)} and {spec.channels}; a target must share the label space")
        available = reader.domains()
        domains = available if target.domains is None else target.domains
        check_domains(domains, available, f"data.target_datasets.{name}", reader.root)
        out.append(TargetDataset(name, target.dataset, reader, tuple(domains), target.split))
    return out


def verify_target_datasets(config, reader) -> dict:
    """Before training on `reader` (the run's dataset): open every target dataset
    (`open_target_datasets`) and load each of its domains' test split once
    (vlsa.data.integrity.verify), so a bad target is reported before hours of training.
    -> what run.json records of the data: {"dataset", "reader", "target_datasets": {NAME: record}}."""
    from vlsa.data.integrity import verify

    targets = open_target_datasets(config, reader.spec)
    for t in targets:
        verify(t.reader, list(t.domains), splits=("test",))
    return {"dataset": config.data.dataset, "reader": type(reader).__name__,
            "target_datasets": {t.name: t.record() for t in targets}}


def trainable_domains(reader, domains: list[str]) -> list[str]:
    """The domains that have train cases (can be sources); a domain with test cases only is a
    target-only domain. Reads at most one sample per domain."""
    from vlsa.data.integrity import is_empty_split

    out = []
    for d in domains:
        try:
            next(iter(reader.samples(d, "train")))
        except StopIteration:
            continue
        except DataError as exc:
            if not is_empty_split(exc):
                raise
            continue
        out.append(d)
    return out


@dataclass
class Prepared:
    """Samples fitted to the model: images N x C x S x S (N x C x E x E float16 for a foundation
    encoder read at its own resolution E, see `encoder_size`), labels N x S x S, and what evaluation
    needs to map predictions back (native labels, geometry, grouping, spacing)."""

    images: torch.Tensor
    labels: torch.Tensor
    samples: list[Sample]
    geometries: list[Geometry]
    display: np.ndarray | None = None  # N x S x S x 3 uint8, the images as a person sees them (overlays)

    def __len__(self) -> int:
        return len(self.samples)


def prepare(samples: list[Sample], config, spec) -> Prepared:
    size = config.data.image_size
    from vlsa.report.overlay import to_rgb

    images, labels, geoms, display = [], [], [], []
    for s in samples:
        geom = geometry_for(spec.volumetric, s.image.shape[-2:], size)
        img, lab = to_model(s.image, s.label, geom)
        display.append(to_rgb(img.numpy()))
        images.append(normalise(img, config.data.normalise) if encoder_size(config) is None
                      else model_input(s.image, geom, config))
        labels.append(lab)
        geoms.append(geom)
        s.image = None  # the model-size copy is all training needs; keeps memory flat on real data
    if not images:
        return Prepared(torch.zeros(0), torch.zeros(0), [], [])
    return Prepared(torch.stack(images), torch.stack(labels), samples, geoms, np.stack(display))


def split_train_val(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Hold out whole cases (all slices of a subject) of the source domains for validation:
    exactly round(fraction * n) cases by salted hash (`vlsa.data.splits.hash_pick`)."""
    val_cases = hash_pick([s.case_id for s in samples], fraction, salt=f"val-{seed}")
    train = [s for s in samples if s.case_id not in val_cases]
    val = [s for s in samples if s.case_id in val_cases]
    return train, val


def load_source(config, reader, sources: list[str]) -> tuple[list[Sample], list[Sample]]:
    """The source domains' train cases split into (train, validation) by case (`split_train_val`).
    Raises DataError for a source case that does not annotate every region (`check_trainable`)."""
    samples = []
    for domain in sources:
        samples.extend(reader.samples(domain, "train"))
    check_trainable(samples, reader.spec)
    return split_train_val(samples, config.data.val_fraction, config.seed)


def check_trainable(samples: list[Sample], spec) -> None:
    """Training reads every pixel's label, so a region a source case does not annotate (a partly
    annotated dataset, `DatasetSpec.annotated` / `Sample.annotated`) would be learnt as background
    and never predicted: refused, naming the first such case. Such a dataset is a target (scored on
    the regions it annotates), not a source."""
    for s in samples:
        have = s.annotated if s.annotated is not None else spec.annotated_regions
        missing = [r for r in spec.regions if r not in have]
        if missing:
            raise DataError(s.name, f"source case annotates {list(have)} only, not {missing}: training would learn "
                                    f"{'it' if len(missing) == 1 else 'them'} as background; use this dataset as a "
                                    "target (data.target_datasets) or train on fully annotated cases")


def source_validation(config, reader=None) -> list[Sample]:
    """The source-validation samples of `config` (the source cases its training holds out, never a
    target): the split checkpoint selection and the post-processing decision score. reader: the
    configured dataset reader (opened from `config` when None; DataError where the data is absent)."""
    reader = open_configured(config) if reader is None else reader
    sources, _ = domains_of(config, reader)
    return load_source(config, reader, sources)[1]


def label_fraction(prepared: Prepared, num_classes: int) -> np.ndarray:
    return torch.bincount(prepared.labels.flatten(), minlength=num_classes).numpy() / max(1, prepared.labels.numel())
