"""The fast LiteMedSAM encoder path: same features as eager fp32, its identity in the cache key."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlsa.models.backbones import cache
from vlsa.models.backbones.fast_encoder import cpu_has_bf16, resolve_mode


@pytest.fixture(scope="module")
def medsam():
    from vlsa.models.backbones.medsam import MedSAMBackbone

    return MedSAMBackbone(3, 256, fast="off")


@pytest.fixture(scope="module")
def fundus_256(tmp_path_factory):
    """Two synthetic fundus ROIs at the real model size (256 px), z-scored like model inputs."""
    from vlsa.data.io import load_image
    from vlsa.data.synth.fundus import generate_fundus

    root = generate_fundus(tmp_path_factory.mktemp("fundus256"), per_domain=2, size=256, seed=0)
    files = sorted(root.rglob("image/*.png"))[::3][:2]
    imgs = torch.stack([torch.from_numpy(load_image(f, 3)) for f in files])
    return (imgs - imgs.mean()) / imgs.std()


@pytest.fixture(scope="module")
def reference(medsam, fundus_256):
    medsam.fast = "off"
    with torch.no_grad():
        return medsam(fundus_256)


@pytest.mark.parametrize("mode", ["fused", "bf16"])
def test_fast_path_matches_eager_fp32_per_feature_map(medsam, fundus_256, reference, mode):
    if mode == "bf16" and not cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    _matches_reference(medsam, fundus_256, reference, mode)
    # it is the optimised copy that ran (no BatchNorm, fused attention), kept out of the checkpoint
    fast = next(iter(medsam._fast_copies.values()))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(type(m).__name__ == "_WindowAttention" for m in fast.modules())
    assert not any("fast" in k for k in medsam.state_dict())


def test_openvino_path_matches_eager_fp32_and_is_cached_on_disk(medsam, fundus_256, reference, tmp_path,
                                                                monkeypatch):
    pytest.importorskip("openvino")
    from vlsa.models.backbones.openvino_encoder import OpenVINOEncoder

    monkeypatch.setenv("VLSA_ENCODER_CACHE_DIR", str(tmp_path))
    medsam._fast_copies.clear()
    _matches_reference(medsam, fundus_256, reference, "openvino")
    assert isinstance(next(iter(medsam._fast_copies.values())), OpenVINOEncoder)
    xml = sorted(p.name for p in tmp_path.rglob("*.xml"))
    assert xml == ["stage0.xml", "transformer.xml"]  # converted once, kept keyed by the weights
    again = OpenVINOEncoder(medsam.encoder)(medsam._prepare(fundus_256[:1]))  # read back from the cache
    assert [tuple(m.shape) for m in again] == [(1, 128, 128, 128), (1, 160, 64, 64), (1, 320, 64, 64),
                                                (1, 256, 64, 64)]
    assert sorted(p.name for p in tmp_path.rglob("*.xml")) == xml
    medsam._fast_copies.clear()


def test_openvino_failure_falls_back_to_pytorch_with_one_warning(medsam, monkeypatch, caplog):
    pytest.importorskip("openvino")
    from vlsa.models.backbones import openvino_encoder

    def broken(*args, **kwargs):
        raise RuntimeError("Cannot create ScaledDotProductAttention layer\nlong library trace")

    monkeypatch.setattr(openvino_encoder, "OpenVINOEncoder", broken)
    monkeypatch.setattr(openvino_encoder, "_FAILED", [])
    medsam.fast = "openvino"
    medsam._fast_copies.clear()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), caplog.at_level("WARNING", logger="vlsa"):
        feats = medsam(x)
        medsam(x)
    medsam.fast = "off"
    assert [f.shape[1] for f in feats] == [128, 160, 320, 256]
    assert medsam.fast_path("cpu") != "openvino"  # the cache key names the path that really ran
    warnings = [r.getMessage() for r in caplog.records if "OpenVINO could not" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "ScaledDotProductAttention" in warnings[0]
    medsam._fast_copies.clear()


def _matches_reference(medsam, fundus_256, reference, mode):
    medsam.fast = mode
    assert medsam.fast_path("cpu") == mode
    with torch.no_grad():
        got = medsam(fundus_256)
    medsam.fast = "off"
    for r, g in zip(reference, got, strict=True):
        assert g.shape == r.shape and g.dtype == torch.float32
        cosine = F.cosine_similarity(r.flatten(2), g.flatten(2), dim=1).mean()  # over channels, mean over pixels
        assert cosine >= 0.999, f"{mode}: cosine {cosine:.5f} on a {tuple(r.shape[1:])} map"
        assert not torch.equal(r, g)  # a different computation really ran


def test_out_size_sets_the_pyramid_strides(medsam):
    x = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        own = medsam(x)
        other = medsam(x, out_size=(96, 64))
    assert [tuple(f.shape[-2:]) for f in own] == [(24, 20), (12, 10), (12, 10), (12, 10)]
    assert [tuple(f.shape[-2:]) for f in other] == [(48, 32), (24, 16), (24, 16), (24, 16)]


def test_mode_resolution(monkeypatch, caplog):
    import vlsa.models.backbones.fast_encoder as fe
    from vlsa.models.backbones import openvino_encoder

    with pytest.raises(ValueError, match="model.backbone.fast"):
        resolve_mode("onnx-typo", "cpu")
    monkeypatch.setattr(openvino_encoder, "available", lambda: True)
    assert resolve_mode("auto", "cpu") == "openvino"  # the fastest measured CPU path where installed
    assert resolve_mode("openvino", "cpu") == "openvino"
    assert resolve_mode("auto", "cuda") == "bf16"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_mode("openvino", "cuda")
    monkeypatch.setattr(openvino_encoder, "available", lambda: False)
    monkeypatch.setattr(fe, "_warned", set())
    with caplog.at_level("WARNING", logger="vlsa"):
        assert resolve_mode("openvino", "cpu") == resolve_mode("auto", "cpu")  # PyTorch fallback
        resolve_mode("openvino", "cpu")
    assert len([r for r in caplog.records if "not installed" in r.getMessage()]) == 1  # warned once
    assert resolve_mode("auto", "cuda") == "bf16"
    monkeypatch.setattr(fe, "cpu_has_bf16", lambda: False)
    assert resolve_mode("auto", "cpu") == "fused"  # emulated bf16 would be slower than fp32
    with pytest.raises(ValueError, match="AVX512-BF16"):
        resolve_mode("bf16", "cpu")
    monkeypatch.setattr(fe, "cpu_has_bf16", lambda: True)
    assert resolve_mode("auto", "cpu") == "bf16"
    assert resolve_mode("off", "cpu") == "off"


class _TwoPath(torch.nn.Module):
    """A stand-in backbone with a switchable path: features differ slightly between paths."""

    def __init__(self):
        super().__init__()
        self.path = "off"

    def fast_path(self, device):
        return self.path

    def forward(self, x):
        return [x * (1.0 if self.path == "off" else 1.001), x[..., ::2, ::2] * 1e5]


def test_cache_stores_float16_and_keys_by_encoder_path(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSA_FEATURE_CACHE_DIR", str(tmp_path))
    net, images = _TwoPath(), torch.rand(2, 3, 8, 8) + 0.5
    cache.clear()
    first = cache.cached_features(net, images, "two-path")
    stored = torch.load(next(tmp_path.rglob("*.pt")), weights_only=True)
    assert stored[0].dtype == torch.float16  # compact on disk
    assert stored[1].dtype == torch.float32  # beyond float16's range: kept exact, never inf
    assert all(f.dtype == torch.float32 for f in first)
    assert torch.equal(first[0], images.half().float())
    again = cache.cached_features(net, images, "two-path")
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # a hit returns what the miss returned
    misses = cache.STATS["misses"]
    net.path = "bf16"
    changed = cache.cached_features(net, images, "two-path")
    assert cache.STATS["misses"] - misses == 2  # another path never reads the first path's features
    assert not torch.equal(changed[0], first[0])
    cache.clear()
