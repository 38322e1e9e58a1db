"""The VLSA model through the same engine: train -> evaluate -> predict, resume, feature cache."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import tiny_overrides
from tests.models.test_backbones import _tiny_clip
from vlsa.cli import main
from vlsa.config import build_config
from vlsa.engine.train import train
from vlsa.models.backbones import cache

VLSA_TINY = ["model.name=vlsa", "model.decoder.dim=16", "model.decoder.embed_dim=16", "model.em.k=8",
             "model.backbone.cnn_width=8"]


def test_vlsa_cnn_train_evaluate_predict(fundus_root, tmp_path):
    args = [a for o in tiny_overrides(fundus_root) + VLSA_TINY + ["model.backbone.name=cnn"] for a in ("--set", o)]
    run = tmp_path / "run"
    assert main(["train", *args, "--out", str(run)]) == 0
    assert main(["evaluate", "--run", str(run), "--domains", "Domain1", "Domain2", "--report"]) == 0
    metrics = json.loads((run / "metrics_Domain1+Domain2.json").read_text())  # a subset: beside metrics.json
    assert set(metrics["domains"]) == {"Domain1", "Domain2"} and set(metrics["domains"]["Domain2"]["dice"]) == {"disc", "cup", "mean"}
    assert (run / "report_Domain1+Domain2.html").read_text().count("<table>") == 3
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(tmp_path / "x.png")
    assert main(["predict", "--run", str(run), "--input", str(tmp_path / "x.png"), "--output", str(tmp_path / "p")]) == 0
    assert np.asarray(Image.open(tmp_path / "p" / "x.png")).shape == (40, 30)
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert "em.bases" in state["model"] and "text_embeddings" in state["model"]


def test_frozen_backbone_features_are_cached_and_resume_is_exact(fundus_root, tmp_path):
    clip = _tiny_clip(tmp_path / "clip")
    overrides = tiny_overrides(fundus_root, steps=6) + VLSA_TINY + [
        "model.backbone.name=hf", f"model.backbone.path={clip}", "model.backbone.input_size=32",
        "data.augment.intensity=0"]
    cfg = build_config({}, overrides)
    cache.clear()
    cache.STATS.update(hits=0, misses=0)
    full = train(cfg, tmp_path / "full", quiet=True)
    n_images = len(json.loads((full / "run.json").read_text())["val_cases"]) + \
        json.loads((full / "run.json").read_text())["train_samples"]
    # every image's features computed at most once; later steps and validation hit the cache
    assert cache.STATS["misses"] <= n_images and cache.STATS["hits"] > 0
    part = train(cfg, tmp_path / "part", stop_at=2, quiet=True)
    train(None, part, resume=True, quiet=True)
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(part / "checkpoints" / "last.pt", weights_only=True)["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["em.bases"], build_config_bases(cfg))


def build_config_bases(cfg):
    from vlsa.data.spec import FUNDUS
    from vlsa.models import build_model

    torch.manual_seed(cfg.seed)
    return build_model(cfg, FUNDUS).state_dict()["em.bases"]


def test_checkpoint_of_another_model_config_is_refused(fundus_root, tmp_path):
    run = train(build_config({}, tiny_overrides(fundus_root, steps=2)), tmp_path / "unet", quiet=True)
    cfg_text = (run / "config.yaml").read_text().replace("name: unet", "name: vlsa")
    (run / "config.yaml").write_text(cfg_text)
    with pytest.raises(Exception, match="checkpoint was made for another model configuration"):
        from vlsa.engine.evaluate import load_run

        load_run(run)
