"""GIN-IPA (Ouyang et al., IEEE TMI 2023): intensity changes that keep shapes, a smooth blending map,
deterministic draws, and a config switch that changes no earlier digest when off."""

from pathlib import Path

import pytest
import torch

from vlsa.config import build_config, load_config
from vlsa.data.gin_ipa import LAYERS, blending_map, gin, gin_ipa
from vlsa.data.transforms import appearance, appearance_views, has_appearance
from vlsa.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _piecewise_constant() -> torch.Tensor:
    """1 x 48 x 48: background 0, a square of 1, a smaller square of 2 inside it."""
    x = torch.zeros(1, 48, 48)
    x[:, 4:44, 4:44] = 1.0
    x[:, 16:32, 16:32] = 2.0
    return x


def test_gin_keeps_the_norm_and_the_shapes_but_not_the_intensities():
    x = _piecewise_constant()
    changed = 0
    for seed in range(8):
        y = gin(x, torch.Generator().manual_seed(seed))
        assert y.shape == x.shape
        assert torch.allclose(y.norm(), x.norm(), rtol=1e-5)  # the paper's Frobenius normalisation
        # convolutions and a pointwise non-linearity: constant regions stay constant away from edges
        r = LAYERS  # each layer's kernel reaches at most one pixel further
        inner = y[0, 16 + r:32 - r, 16 + r:32 - r]
        ring = y[0, 4 + r:16 - r, 4 + r:44 - r]
        assert inner.numel() == 64 and ring.numel() == 4 * 32
        assert inner.std() < 1e-4 and ring.std() < 1e-4
        changed += not torch.allclose(y, x, atol=1e-3)
    assert changed >= 6  # alpha ~ U(0, 1): almost every draw is another appearance


def test_blending_map_is_smooth_varying_and_in_unit_range():
    m = blending_map(48, 48, torch.Generator().manual_seed(3))
    assert m.shape == (1, 48, 48) and m.min() >= 0 and m.max() <= 1
    assert m.max() - m.min() > 0.2  # it varies across the image ...
    assert (m[:, 1:] - m[:, :-1]).abs().max() < 0.2  # ... smoothly (a few control points)


def test_gin_ipa_is_deterministic_standardised_and_changes_images():
    x = torch.randn(4, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    a = gin_ipa(x, torch.Generator().manual_seed(5))
    b = gin_ipa(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == x.shape
    assert torch.allclose(a.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(a.std(dim=(1, 2, 3)), torch.ones(4), atol=1e-3)
    assert not torch.allclose(a, gin_ipa(x, torch.Generator().manual_seed(6)))


def test_a_probability_below_one_keeps_some_images_as_they_came():
    x = torch.randn(64, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    kept = [torch.equal(a, b) for a, b in zip(gin_ipa(x, torch.Generator().manual_seed(1), p=0.5), x)]
    assert 16 < sum(kept) < 48  # about half, drawn per image
    assert not any(torch.equal(a, b) for a, b in zip(gin_ipa(x, torch.Generator().manual_seed(1)), x))
    # the default p = 1 is the paper's setting and keeps its digest (a neutral key)
    assert build_config({}, ["data.augment.gin_ipa_p=1"]).digest() == build_config().digest()
    on = ["data.augment.gin_ipa=true"]
    assert build_config({}, [*on, "data.augment.gin_ipa_p=0.5"]).digest() != build_config({}, on).digest()
    # the cardiac config's GIN-IPA goes off with one key (its probability is then inert)
    off = load_config(ROOT / "configs" / "mms_sdg.yaml", ["data.augment.gin_ipa=false"]).data.augment
    assert off.gin_ipa_p == 0.5 and not has_appearance(off.model_copy(update={"colour": 0, "intensity": 0}))
    with pytest.raises(ConfigError, match="gin_ipa_p"):
        build_config({}, ["data.augment.gin_ipa=true", "data.augment.gin_ipa_p=0"])


def test_the_switch_reaches_the_policy_and_the_bank_and_keeps_digests_when_off():
    off = build_config()
    assert off.data.augment.gin_ipa is False
    assert off.digest() == "4b82035816f32cec"  # unchanged by the new key
    on = build_config({}, ["data.augment.gin_ipa=true", "data.augment.colour=0", "data.augment.intensity=0"])
    assert on.digest() != build_config({}, ["data.augment.colour=0", "data.augment.intensity=0"]).digest()
    assert has_appearance(on.data.augment)
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    plain = build_config({}, ["data.augment.colour=0", "data.augment.intensity=0"]).data.augment
    assert torch.equal(appearance(x, plain, torch.Generator().manual_seed(2)), x)
    assert not torch.allclose(appearance(x, on.data.augment, torch.Generator().manual_seed(2)), x)
    views = appearance_views(x, torch.tensor([1, 1]), on.data.augment)
    assert torch.equal(views, appearance_views(x, torch.tensor([1, 1]), on.data.augment))  # a bank view
    assert not torch.allclose(views, x)
    # the consistency term accepts GIN-IPA as the appearance augmentation it compares draws of
    assert build_config({}, ["data.augment.gin_ipa=true", "data.augment.colour=0", "data.augment.intensity=0",
                             "data.augment.consistency=1"]).data.augment.consistency == 1
