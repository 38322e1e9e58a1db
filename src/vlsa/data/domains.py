"""Opening a dataset by name, and the domain splits of the DG protocols."""

from __future__ import annotations

from pathlib import Path

from vlsa.errors import ConfigError, DataError

DATASETS = ("fundus", "riga", "mms", "nnunet", "folder", "drishti", "acdc", "sunnybrook")


def open_reader(dataset: str, root: str | Path, spacing: float | None = None, test_fraction: float = 0.3,
                domain_pattern: str | None = None, agreement: int = 2, roi_scale: float = 2.5):
    """Return the reader for `dataset` (`fundus` = DoFE layout, `riga`, `mms`, `nnunet`, `folder`, `drishti`).

    `domain_pattern` (nnunet only): regex finding a case's domain in its name (else domains.csv).
    `agreement`, `roi_scale` (drishti only): experts (of 4) a label pixel needs; ROI side / disc diameter."""
    if dataset == "fundus":
        from vlsa.data.fundus import DoFEReader

        return DoFEReader(root)
    if dataset == "riga":
        from vlsa.data.fundus import RigaReader

        return RigaReader(root, test_fraction=test_fraction)
    if dataset == "mms":
        from vlsa.data.mms import MMSReader

        return MMSReader(root, spacing=spacing, test_fraction=test_fraction)
    if dataset == "nnunet":
        from vlsa.data.nnunet import NNUNetReader

        return NNUNetReader(root, spacing=spacing, test_fraction=test_fraction, domain_pattern=domain_pattern)
    if dataset == "folder":
        from vlsa.data.folder import FolderReader

        return FolderReader(root, test_fraction=test_fraction, spacing=spacing)
    if dataset == "drishti":
        from vlsa.data.drishti import DrishtiReader

        return DrishtiReader(root, agreement=agreement, roi_scale=roi_scale)
    if dataset == "acdc":
        from vlsa.data.acdc import ACDCReader

        return ACDCReader(root, spacing=spacing, test_fraction=test_fraction)
    if dataset == "sunnybrook":
        from vlsa.data.sunnybrook import SunnybrookReader

        return SunnybrookReader(root, spacing=spacing)
    raise DataError(None, f"unknown dataset {dataset!r} (choose from {', '.join(DATASETS)})")


def missing_target_root(name: str, root) -> ConfigError:
    """The error for a target dataset whose folder is not there, e.g. a packaged config's conventional
    path (../shared/realdata/...) on another machine: it names the way to point it elsewhere."""
    return ConfigError(f"config key 'data.target_datasets.{name}.root': {root} not found; point it at the dataset "
                       f"with --set data.target_datasets.{name}.root=PATH (or train without other datasets' "
                       "targets: --set data.target_datasets={})")


def check_domains(requested: list[str], available: list[str], what: str, root) -> None:
    unknown = [d for d in requested if d not in available]
    if unknown:
        raise DataError(root, f"unknown {what} domain(s) {unknown} (available: {available})")


def protocol_splits(domains: list[str], mode: str) -> list[tuple[list[str], list[str]]]:
    """(sources, targets) for every run of a DG protocol.

    single-source: each domain alone is the source, all others are targets.
    lodo (leave-one-domain-out): all domains but one are sources, the left-out one is the target.
    """
    if len(domains) < 2:
        raise DataError(None, f"a DG protocol needs at least 2 domains, got {domains}")
    if mode == "single-source":
        return [([d], [t for t in domains if t != d]) for d in domains]
    if mode == "lodo":
        return [([s for s in domains if s != d], [d]) for d in domains]
    raise DataError(None, f"unknown protocol mode {mode!r} (single-source or lodo)")
