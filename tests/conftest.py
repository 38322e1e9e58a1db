"""Shared fixtures: tiny synthetic datasets in the real layouts, generated once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    # never write into the user's ~/.cache during tests
    os.environ["VLSA_CACHE"] = str(tmp_path_factory.mktemp("vlsa-cache"))


@pytest.fixture(scope="session")
def fundus_root(tmp_path_factory):
    from vlsa.data.synth.fundus import generate_fundus

    return generate_fundus(tmp_path_factory.mktemp("fundus"), per_domain=10, size=64, seed=0)


@pytest.fixture(scope="session")
def cardiac_root(tmp_path_factory):
    from vlsa.data.synth.cardiac import generate_cardiac

    return generate_cardiac(tmp_path_factory.mktemp("cardiac"), per_vendor=4, seed=0)


def tiny_overrides(root, dataset="fundus", source="Domain1", steps=6):
    return [f"data.dataset={dataset}", f"data.root={root}", f"data.source={source}", "data.image_size=32",
            f"train.steps={steps}", "train.batch_size=4", "train.val_every=3", "train.log_every=1",
            "model.name=unet", "model.unet.channels=[8,16,32]", "eval.overlays=2", "train.device=cpu"]


def train_tiny_run(fundus_root, tmp_path_factory, name: str):
    """A finished tiny fundus run (tiny_overrides) in a fresh temporary folder: the run directory."""
    from vlsa.config import build_config
    from vlsa.engine.train import train

    folder = tmp_path_factory.mktemp(name) / "fundus"
    train(build_config({}, tiny_overrides(fundus_root)), folder, quiet=True)
    return folder


def realdata_root():
    """`../shared/realdata` beside the project root (or $VLSA_REALDATA): the real public sets, which
    are never copied into the repository. None when absent."""
    from pathlib import Path

    root = Path(os.environ.get("VLSA_REALDATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata"))
    return root.resolve() if root.is_dir() else None


@pytest.fixture(scope="session")
def realdata():
    """Path of the real data; the test skips, saying why, where it is absent (CI has it)."""
    root = realdata_root()
    if root is None:
        pytest.skip("../shared/realdata is absent (real public datasets; CI has them)")
    return root
