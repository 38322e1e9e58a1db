"""The appearance bank: views are drawn from image content + view index only (identical across
processes), differ from view to view, and reach the features a frozen backbone sees."""

import subprocess
import sys

import torch

from vlsa.config import build_config
from vlsa.data.transforms import appearance_views, random_conv


def _images():
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _digest_in_subprocess() -> str:
    code = ("import hashlib, torch; from vlsa.config import build_config; from vlsa.data.transforms import appearance_views;"
            "x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1));"
            "torch.manual_seed(12345);"  # the global RNG must not matter
            "v = appearance_views(x, torch.tensor([1, 2, 3]), build_config().data.augment);"
            "print(hashlib.sha1(v.numpy().tobytes()).hexdigest())")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_views_are_deterministic_and_shared_across_processes():
    import hashlib

    aug = build_config().data.augment
    assert aug.colour > 0 and aug.views > 1  # the default policy has the appearance part on
    x = _images()
    v = appearance_views(x, torch.tensor([1, 2, 3]), aug)
    assert hashlib.sha1(v.numpy().tobytes()).hexdigest() == _digest_in_subprocess() == _digest_in_subprocess()
    # the view of an image does not depend on its batch neighbours
    assert torch.equal(appearance_views(x[1:2], torch.tensor([2]), aug)[0], v[1])


def test_view_zero_is_the_image_and_other_views_differ():
    aug = build_config().data.augment
    x = _images()
    v0 = appearance_views(x, torch.zeros(3, dtype=torch.long), aug)
    v1 = appearance_views(x, torch.ones(3, dtype=torch.long), aug)
    v2 = appearance_views(x, torch.full((3,), 2), aug)
    assert torch.equal(v0, x)
    assert (v1 - x).abs().mean() > 0.05 and (v1 - v2).abs().mean() > 0.05


def test_colour_reaches_cached_frozen_features(fundus_root, tmp_path):
    """With a cached frozen backbone, training looks up features of appearance views: more distinct
    inputs than training images reach the backbone, and none without the appearance policy."""
    from tests.conftest import tiny_overrides
    from vlsa.engine.train import train
    from vlsa.models.backbones import cache
    from vlsa.models.backbones.cnn import ResidualCNN

    seen = []
    original = ResidualCNN.forward

    def spy(self, x):
        seen.extend(x.detach().clone())
        return original(self, x)

    base = tiny_overrides(fundus_root, steps=6) + ["model.name=vlsa", "model.decoder.dim=16", "model.decoder.embed_dim=16",
                                                   "model.em.k=8", "model.backbone.cnn_width=8", "train.val_every=100"]
    counts = {}
    for name, extra in {"policy": [], "off": ["data.augment.colour=0", "data.augment.intensity=0"]}.items():
        cfg = build_config({}, base + extra)
        seen.clear()
        cache.clear()
        ResidualCNN.forward = spy
        try:
            # a frozen, cached CNN stands in for LiteMedSAM (same code path, no download)
            from vlsa.models import vlsa as vlsa_mod

            build = vlsa_mod.build_backbone

            def frozen(cfg_b, c, s, build=build):
                b = build(cfg_b, c, s)
                b.frozen = True
                b.requires_grad_(False)
                return b

            vlsa_mod.build_backbone = frozen
            run = train(cfg, tmp_path / name, quiet=True)
        finally:
            ResidualCNN.forward = original
            vlsa_mod.build_backbone = build
        import json

        info = json.loads((run / "run.json").read_text())
        counts[name] = (len({hash(t.numpy().tobytes()) for t in seen}), info["train_samples"] + info["val_samples"])
    distinct, images = counts["policy"]
    assert distinct > images  # appearance views beyond the images as read were encoded
    assert counts["off"][0] <= counts["off"][1]  # without the policy: only the images as read


def test_randconv_changes_images_but_keeps_shape_and_standardisation():
    g = torch.Generator().manual_seed(0)
    x = _images()
    y = random_conv(x, g, p=1.0)
    assert y.shape == x.shape and not torch.allclose(y, x)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-4)


def test_view_zoom_zooms_each_view_and_its_labels_in_image_space():
    """data.augment.view_zoom: a bank view >= 1 is zoomed before the encoder by a factor fixed per
    image and view (colour draws unchanged), the same zoom is applied to its labels, and the
    feature-map warp then keeps no zoom of its own."""
    from vlsa.data.transforms import augment_features, view_zoom_theta, warp_labels

    plain = build_config(overrides=["data.augment.scale=0.4", "data.augment.colour=0", "data.augment.intensity=0.0",
                                    "data.augment.randconv=true"]).data.augment
    zoomed = plain.model_copy(update={"view_zoom": True})
    x = _images()
    views = torch.tensor([0, 3, 5])
    assert view_zoom_theta(x, views, plain) is None
    theta = view_zoom_theta(x, views, zoomed)
    factors = 1 / theta[:, 0, 0]
    assert factors[0] == 1 and all(0.6 <= f <= 1.4 and f != 1 for f in factors[1:])
    assert torch.equal(theta, view_zoom_theta(x, views, zoomed))  # fixed per image and view
    # the appearance part is the plain view's, then zoomed: the centre pixel is (nearly) kept
    a, b = appearance_views(x, views, plain), appearance_views(x, views, zoomed)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
    assert torch.allclose(a[1:, :, 7:9, 7:9].mean(), b[1:, :, 7:9, 7:9].mean(), atol=0.5)
    # labels zoomed by the same matrix: a centred square grows by the factor when zoomed in
    labels = torch.zeros(3, 32, 32, dtype=torch.long)
    labels[:, 12:20, 12:20] = 1
    area = warp_labels(labels, theta).sum(dim=(1, 2)).float()
    assert torch.allclose(area / 64, factors ** 2, rtol=0.2)
    # the feature warp keeps flip and rotation only: a rotation-free, flip-free policy leaves maps as they are
    still = zoomed.model_copy(update={"rotate": 0.0, "flip": False})
    feats = [torch.randn(3, 4, 8, 8)]
    out, y = augment_features(feats, labels, still, torch.Generator().manual_seed(0))
    assert torch.allclose(out[0], feats[0], atol=1e-5) and torch.equal(y, labels)


def test_view_zoom_with_the_consistency_term_is_refused():
    import pytest

    from vlsa.errors import ConfigError

    with pytest.raises((ConfigError, ValueError), match="view_zoom"):
        build_config(overrides=["data.augment.view_zoom=true", "data.augment.consistency=1.0"])
