"""Fixtures of the whole-photo tests: a synthetic Drishti-GS1-layout release and a tiny fundus run
with its disc locator trained on it (once per session)."""

from __future__ import annotations

import pytest

from tests.engine.synthetic_photos import write_release

PHOTO_RUN_SETS = ["model.name=unet", "model.unet.channels=[8,16,32]", "data.image_size=32", "train.steps=10",
                  "train.batch_size=4", "train.val_every=5", "train.device=cpu", "train.threads=1",
                  "train.locator.size=64", "train.locator.steps=150", "eval.overlays=1",
                  "data.target_datasets={}",  # the packaged DoFE target lives in ../shared/realdata
                  # the packaged GIN-IPA (which the locator inherits) slows this 150-step tiny locator on
                  # synthetic photos; the real one finds every Drishti-GS1 Test disc with it
                  # (benchmarks/results/drishti_packaging.json, "located")
                  "data.augment.gin_ipa=false"]


@pytest.fixture(scope="session")
def photo_release(tmp_path_factory):
    """(root, name -> the Disc drawn in that photo): 12 Training, 6 Test photos of 150 x 180 px."""
    root = tmp_path_factory.mktemp("photos")
    return root, write_release(root, train=12, test=6, seed=0)


@pytest.fixture(scope="session")
def photo_run(photo_release, tmp_path_factory):
    """A drishti_sdg run (tiny U-Net) on the synthetic photos, with its locator in RUN/locator."""
    from vlsa.cli import main

    root, _ = photo_release
    run = tmp_path_factory.mktemp("photo-run") / "run"
    args = ["train", "--config", "drishti_sdg", "--set", f"data.root={root}", "--out", str(run)]
    for item in PHOTO_RUN_SETS:
        args += ["--set", item]
    assert main(args) == 0
    return run
