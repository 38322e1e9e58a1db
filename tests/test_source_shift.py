"""The corrupted source-validation score (benchmarks/source_shift.py): the same corrupted images for
every candidate, and each corruption really changes the image."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import source_shift  # noqa: E402


def _images(n=3, c=3, s=24):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, c, s, s, generator=g)
    x[:, :, 8:16, 8:16] += 1.0  # a bright structure, so gamma/inversion have something to act on
    return (x - x.mean(dim=(2, 3), keepdim=True)) / x.std(dim=(2, 3), keepdim=True)


@pytest.mark.parametrize("name", list(source_shift.corruptions()))
def test_each_corruption_is_deterministic_zscored_and_changes_the_image(name):
    images = _images()
    a = source_shift.corrupt(images, source_shift.corruptions()[name])
    b = source_shift.corrupt(images, source_shift.corruptions()[name])  # fresh transform objects
    assert a.shape == images.shape
    assert torch.equal(a, b)
    assert torch.allclose(a.mean(dim=(2, 3)), torch.zeros(3, 3), atol=1e-4)
    assert torch.allclose(a.std(dim=(2, 3)), torch.ones(3, 3), atol=1e-3)
    assert (a - images).abs().mean() > 0.01


def test_a_corrupted_image_does_not_depend_on_the_rest_of_the_batch():
    images = _images()
    t = source_shift.corruptions()["noise 0.15"]
    whole = source_shift.corrupt(images, t)
    first = source_shift.corrupt(images[:1], t)
    assert torch.equal(whole[:1], first)


def test_inversion_reverses_the_intensity_order():
    images = _images(n=1, c=1)
    inv = source_shift.corrupt(images, source_shift.corruptions()["inversion"])
    assert torch.allclose(inv, -images, atol=1e-4)


def test_channel_gamma_differs_between_channels():
    images = _images(n=1, c=3)
    images[:, 1:] = images[:, :1]  # three identical channels
    out = source_shift.corrupt(images, source_shift.corruptions()["channel gamma"])
    assert not torch.allclose(out[:, 0], out[:, 1], atol=1e-3)


def test_an_encoder_resolution_run_is_scored_on_the_same_corrupted_model_size_images(fundus_root, tmp_path,
                                                                                    monkeypatch):
    from tests.conftest import tiny_overrides
    from vlsa.config import build_config
    from vlsa.engine.train import train

    seen: dict = {}

    def recording(images, transform, _corrupt=source_shift.corrupt):
        seen.setdefault(run, []).append(images.clone())
        return _corrupt(images, transform)

    monkeypatch.setattr(source_shift, "corrupt", recording)
    calls = {}
    for run, backbone in (("cnn", "cnn"), ("hybrid", "hybrid")):
        overrides = [*tiny_overrides(fundus_root, steps=2), "model.name=vlsa", f"model.backbone.name={backbone}",
                     "model.backbone.cnn_width=4", "model.decoder.dim=16", "model.decoder.embed_dim=16",
                     "model.em.k=4", "model.text.encoder=none", "data.augment.views=1", "eval.overlays=0"]
        run_dir = train(build_config({}, overrides), tmp_path / run, quiet=True)
        result = source_shift.shifted_val(run_dir)
        assert set(result["per_corruption"]) == set(source_shift.corruptions())
        assert 0 <= result["corrupted"] <= 1 and 0 <= result["clean"] <= 1
        calls[run] = len(seen[run])
        assert source_shift.shifted_val(run_dir) == result and len(seen[run]) == calls[run]  # cached
    # the hybrid reads 256 px images, yet it is scored on the cnn's corrupted 32 px images
    assert [x.shape[-1] for x in seen["hybrid"]] == [32] * len(source_shift.corruptions())
    assert all(torch.equal(a.float(), b.float()) for a, b in zip(seen["cnn"], seen["hybrid"]))
