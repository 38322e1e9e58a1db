"""The RandConv consistency term (data.augment.consistency): the JS divergence, two pixel-aligned
appearance draws per image (images and cached features), configs and digests unchanged when off,
and training where the term changes the weights."""

import hashlib
import json
import math

import pytest
import torch

from tests.conftest import tiny_overrides
from vlsa.config import build_config
from vlsa.data.transforms import augment, augment_features
from vlsa.errors import ConfigError
from vlsa.losses import js_consistency


def test_js_consistency_is_zero_for_equal_predictions_and_bounded_by_log_2():
    a = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    b = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert js_consistency(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert js_consistency(a, b).item() == pytest.approx(js_consistency(b, a).item())  # symmetric
    assert 0.01 < js_consistency(a, b).item() < math.log(2)
    # confident, opposite predictions reach the bound
    sure = torch.zeros(1, 2, 4, 4)
    sure[:, 0] = 50
    assert js_consistency(sure, sure.flip(1)).item() == pytest.approx(math.log(2), rel=1e-3)


def test_two_draws_share_the_warp_and_the_first_is_the_single_draw():
    aug = build_config({}, ["data.augment.randconv=true"]).data.augment
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    labels = torch.randint(0, 3, (3, 16, 16), generator=torch.Generator().manual_seed(3))
    one, y1 = augment(images, labels, aug, torch.Generator().manual_seed(7))
    two, y2 = augment(images, labels, aug, torch.Generator().manual_seed(7), draws=2)
    assert two.shape == (6, 3, 16, 16) and torch.equal(y1, y2)
    # runs without the term draw exactly what they drew before it existed
    assert torch.equal(two[:3], one)
    assert (two[3:] - two[:3]).abs().mean() > 0.05  # the second draw is another appearance
    # the same warp: without appearance augmentation the two draws are the same pixels
    plain = build_config({}, ["data.augment.colour=0", "data.augment.intensity=0"]).data.augment
    same, _ = augment(images, labels, plain, torch.Generator().manual_seed(7), draws=2)
    assert torch.equal(same[:3], same[3:])


def test_cached_features_of_two_views_get_one_warp():
    aug = build_config().data.augment
    feats = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    labels = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(5))
    (warped,), y = augment_features([feats.repeat(2, 1, 1, 1)], labels, aug, torch.Generator().manual_seed(6), copies=2)
    assert warped.shape == (4, 4, 8, 8) and y.shape == (2, 8, 8)
    assert torch.equal(warped[:2], warped[2:])
    (single,), y1 = augment_features([feats], labels, aug, torch.Generator().manual_seed(6))
    assert torch.equal(single, warped[:2]) and torch.equal(y1, y)


def test_the_term_off_keeps_every_earlier_digest():
    config = build_config()
    assert config.data.augment.consistency == 0
    tree = config.to_dict()
    # the config as it was before the keys added since records were keyed existed
    del tree["data"]["augment"]["consistency"], tree["train"]["ema"], tree["data"]["augment"]["gin_ipa"], tree["data"]["augment"]["gin_ipa_p"]
    del tree["data"]["agreement"], tree["data"]["roi_scale"], tree["data"]["target_datasets"]  # the real-data keys
    del tree["train"]["mode"], tree["train"]["locator"]  # the disc locator (whole fundus photos)
    del tree["eval"]["lv_slice_ring"]  # the LV slice-inclusion convention of cardiac volumetry (EF)
    del tree["eval"]["tta"]  # test-time mirroring (off)
    del tree["model"]["dsu"]  # feature-statistics uncertainty (off)
    del tree["data"]["augment"]["view_zoom"]  # bank views zoomed in image space (off)
    before = hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]
    assert config.digest() == before
    assert build_config({}, ["data.augment.consistency=10"]).digest() != before


def test_the_term_needs_an_appearance_augmentation():
    with pytest.raises(ConfigError, match="data.augment"):
        build_config({}, ["data.augment.consistency=1", "data.augment.colour=0", "data.augment.intensity=0"])


@pytest.mark.parametrize("backbone", [["model.backbone.name=medsam"], ["model.backbone.name=hybrid"],
                                      ["model.backbone.name=hf", "model.backbone.tuning=frozen"]])
def test_a_cached_backbone_with_one_view_is_refused_by_the_config(backbone):
    # at config time, before any data loads: one line naming the keys
    refusal = r"^config: data.augment.consistency > 0 needs data.augment.views >= 2 with a cached backbone \((medsam|hybrid|hf)\)"
    with pytest.raises(ConfigError, match=refusal):
        build_config({}, [*backbone, "data.augment.consistency=1", "data.augment.views=1"])
    # not cached (features computed each step from augmented images), or two views: accepted
    build_config({}, [*backbone, "data.augment.consistency=1", "data.augment.views=1", "model.backbone.cache=false"])
    build_config({}, [*backbone, "data.augment.consistency=1", "data.augment.views=2"])


def test_a_cached_backbone_needs_two_views(fundus_root, tmp_path, monkeypatch):
    from vlsa.engine.train import train
    from vlsa.models import vlsa as vlsa_mod

    build = vlsa_mod.build_backbone

    def frozen(cfg_b, c, s):  # a frozen, cached CNN stands in for LiteMedSAM (same code path)
        b = build(cfg_b, c, s)
        b.frozen = True
        b.requires_grad_(False)
        return b

    monkeypatch.setattr(vlsa_mod, "build_backbone", frozen)
    cfg = build_config({}, _vlsa(fundus_root) + ["data.augment.consistency=10", "data.augment.views=1"])
    with pytest.raises(ConfigError, match="views >= 2"):
        train(cfg, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "checkpoints").exists()
    # with two views it trains, both views drawn from the bank
    cfg = build_config({}, _vlsa(fundus_root) + ["data.augment.consistency=10", "data.augment.views=2"])
    run = train(cfg, tmp_path / "cached", quiet=True)
    assert (run / "checkpoints" / "last.pt").is_file()


def _vlsa(root):
    return tiny_overrides(root, steps=4) + ["model.name=vlsa", "model.decoder.dim=16", "model.decoder.embed_dim=16",
                                            "model.em.k=8", "model.backbone.cnn_width=8", "train.val_every=100"]


def test_the_term_changes_what_training_learns(fundus_root, tmp_path):
    """Same two draws per step, the JS weight at 10 vs ~0: the weights differ only through the term."""
    from vlsa.engine.train import train

    weights = {}
    for name, weight in {"on": "10", "negligible": "1e-12"}.items():
        run = train(build_config({}, _vlsa(fundus_root) + [f"data.augment.consistency={weight}"]), tmp_path / name,
                    quiet=True)
        weights[name] = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    moved = max((weights["on"][k].float() - weights["negligible"][k].float()).abs().max().item()
                for k in weights["on"])
    assert moved > 1e-4
