import pytest
import torch

from vlsa.models.backbones.cnn import ResidualCNN


def test_cnn_pyramid():
    net = ResidualCNN(1, width=8)
    feats = net(torch.randn(2, 1, 64, 64))
    assert [f.shape[1] for f in feats] == net.out_channels
    assert [f.shape[-1] for f in feats] == [64 // s for s in net.strides]


def test_medsam_loads_real_weights_and_gives_the_pyramid():
    from vlsa.models.backbones.medsam import MedSAMBackbone, load_medsam_encoder

    a, b = load_medsam_encoder(True), load_medsam_encoder(False)
    assert sum(p.numel() for p in a.parameters()) == pytest.approx(5.7e6, rel=0.02)
    w = "patch_embed.seq.0.c.weight"
    assert not torch.equal(a.state_dict()[w], b.state_dict()[w])  # pretrained, not random
    net = MedSAMBackbone(1, 64)
    with torch.no_grad():
        feats = net(torch.randn(1, 1, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(128, 32, 32), (160, 16, 16), (320, 16, 16), (256, 16, 16)]
    assert not any(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("tuning", ["frozen+tokens", "lora"])
def test_medsam_parameter_efficient_tuning(tuning):
    from vlsa.models.backbones.medsam import MedSAMBackbone

    net = MedSAMBackbone(3, 32, tuning=tuning)
    sum(f.mean() for f in net(torch.randn(1, 3, 32, 32))).backward()
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable and all(("tokens" in n) if tuning == "frozen+tokens" else ("lora_" in n) for n in trainable)
    assert all(p.grad is not None for n, p in net.named_parameters() if p.requires_grad)
    assert all(p.grad is None for n, p in net.named_parameters() if not p.requires_grad)
    assert not net.frozen  # tuned backbones are not cached


def _tiny_clip(path):
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "vocab_size": 1000, "max_position_embeddings": 77},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(path)
    return path


def _tiny_dinov2(path):
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                             image_size=32, patch_size=8)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    base = tmp_path_factory.mktemp("hf")
    return {"clip": _tiny_clip(base / "clip"), "dinov2": _tiny_dinov2(base / "dinov2")}


@pytest.mark.parametrize("kind", ["clip", "dinov2"])
@pytest.mark.parametrize("tuning", ["full", "frozen", "frozen+tokens", "lora"])
def test_hf_backbone_loads_from_disk_and_tunes_the_right_parameters(tiny_models, kind, tuning):
    from vlsa.models.backbones.hf import HFBackbone

    net = HFBackbone(str(tiny_models[kind]), in_channels=3, tuning=tuning, input_size=48)
    feats = net(torch.randn(2, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [8, 16, 32, 32]
    assert [f.shape[-1] for f in feats] == [64 // s for s in net.strides] == [32, 16, 8, 4]
    sum(f.mean() for f in feats).backward()
    tower = [(n, p) for n, p in net.named_parameters() if n.startswith("model.")]
    trainable_tower = [n for n, p in tower if p.requires_grad]
    if tuning == "full":
        assert len(trainable_tower) == len(tower)
    elif tuning == "lora":
        assert trainable_tower and all("lora_" in n for n in trainable_tower)
    else:
        assert not trainable_tower
        assert all(p.grad is None for _, p in tower)  # frozen parameters get no gradient
    if tuning == "frozen+tokens":
        assert all(p.grad is not None for p in net.tokens.parameters())
    assert all(p.grad is not None for p in net.pyramid.parameters())


def test_vlsa_with_hf_backbone_and_clip_text(tiny_models):
    from vlsa.config import build_config
    from vlsa.data.spec import FUNDUS
    from vlsa.models import build_model

    path = str(tiny_models["clip"])
    cfg = build_config({}, ["model.name=vlsa", "model.backbone.name=hf", f"model.backbone.path={path}",
                            "model.backbone.input_size=32", "model.text.encoder=clip", "model.decoder.dim=16",
                            "model.decoder.embed_dim=16", "model.em.k=4", "data.image_size=32"])
    model = build_model(cfg, FUNDUS)
    assert model.text_embeddings.shape == (3, 16)  # CLIP projection_dim
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_feature_cache_on_disk_is_shared_across_processes_and_keyed_by_weights(tmp_path, monkeypatch):
    from vlsa.models.backbones import cache

    monkeypatch.setenv("VLSA_FEATURE_CACHE_DIR", str(tmp_path))
    net = ResidualCNN(3, width=8).eval()
    images = torch.rand(3, 3, 32, 32)
    cache.clear()
    first = cache.cached_features(net, images, "cnn-test")
    assert len(list(tmp_path.rglob("*.pt"))) == 3
    cache.clear()  # as a new process would start: only the disk holds the features
    before = dict(cache.STATS)
    again = cache.cached_features(net, images, "cnn-test")
    assert cache.STATS["disk_hits"] - before["disk_hits"] == 3
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    # a corrupt file is recomputed and rewritten, not an error
    victim = next(tmp_path.rglob("*.pt"))
    victim.write_bytes(b"not a tensor file")
    cache.clear()
    repaired = cache.cached_features(net, images, "cnn-test")
    assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-3) for a, b in zip(first, repaired))  # other batch/threads: float noise
    assert victim.stat().st_size > 100
    # other weights, same id and images: never served the stale features
    other = ResidualCNN(3, width=8).eval()
    cache.clear()
    fresh = cache.cached_features(other, images, "cnn-test")
    assert not torch.equal(fresh[0], first[0])
    assert len(list(tmp_path.rglob("*.pt"))) == 6
    cache.clear()


def test_hf_frozen_cache_holds_only_the_tower_and_the_pyramid_trains(tiny_models):
    # issue 15 row 1: the cached path used to cache the trainable ViTDet pyramid under no_grad
    from vlsa.config import build_config
    from vlsa.data.spec import FUNDUS
    from vlsa.models import build_model
    from vlsa.models.backbones import cache

    cfg = build_config({}, ["model.name=vlsa", "model.backbone.name=hf", f"model.backbone.path={tiny_models['clip']}",
                            "model.backbone.input_size=32", "model.backbone.tuning=frozen", "model.text.encoder=none",
                            "model.decoder.dim=16", "model.decoder.embed_dim=16", "model.em.k=4", "data.image_size=32"])
    cache.clear()
    x = torch.rand(2, 3, 32, 32)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(cfg, FUNDUS)
        assert model.cache_features
        feats = model.features(x)  # what the training loop caches and augments
        assert [f.shape[1] for f in feats] == [32] * 4 and not any(f.requires_grad for f in feats)
        model(None, features=feats, out_size=x.shape[-2:]).sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.pyramid.parameters())
        assert all(p.grad is None for p in model.backbone.model.parameters())
        models.append(model)
    # the tower is the same pretrained one (its maps may be shared); the pyramids differ by seed
    assert torch.equal(models[0].features(x)[0], models[1].features(x)[0])
    with torch.no_grad():
        assert not torch.allclose(models[0](x), models[1](x))


def test_in_memory_feature_cache_is_keyed_by_weights():
    from vlsa.models.backbones import cache

    cache.clear()
    images = torch.rand(2, 3, 32, 32)
    torch.manual_seed(0)
    a = ResidualCNN(3, width=8).eval()
    torch.manual_seed(1)
    b = ResidualCNN(3, width=8).eval()
    fa = cache.cached_features(a, images, "same-id")
    fb = cache.cached_features(b, images, "same-id")  # was served a's features from memory
    with torch.no_grad():
        # features are stored as float16: equal to b's own within fp16 rounding, far from a's
        assert all(torch.allclose(f, g, rtol=2e-3, atol=1e-3) for f, g in zip(fb, b(images)))
    assert not torch.allclose(fa[-1], fb[-1])


def test_hybrid_caches_only_the_foundation_and_trains_the_cnn_branch_on_the_warped_image():
    from vlsa.config import build_config
    from vlsa.data.spec import FUNDUS
    from vlsa.data.transforms import augment_features
    from vlsa.models import build_model
    from vlsa.models.backbones import cache

    cfg = build_config({}, ["model.name=vlsa", "model.backbone.name=hybrid", "model.text.encoder=none", "model.decoder.dim=16", "model.decoder.embed_dim=16",
                            "model.em.k=4", "data.image_size=32", "model.backbone.cnn_width=4"])
    cfg.model.backbone.fast = "off"  # the eager reference encoder (YAML would read a bare off as false)
    cache.clear()
    misses = cache.STATS["misses"]
    torch.manual_seed(0)
    model = build_model(cfg, FUNDUS)
    assert model.cache_features and model.decode_size == (32, 32)
    x = torch.randn(2, 3, 256, 256)  # encoder-resolution input, as data.model_input gives it
    feats = model.features(x)
    # 4 cached LiteMedSAM maps at strides 2-4 of the 32 px model input, then the 32 px image itself
    assert [tuple(f.shape[1:]) for f in feats] == [(128, 16, 16), (160, 8, 8), (320, 8, 8), (256, 8, 8), (3, 32, 32)]
    assert not any(f.requires_grad for f in feats) and cache.STATS["misses"] - misses == 2
    # one affine draw warps the features and the image (the CNN branch's input) together
    warped, y = augment_features(feats, torch.zeros(2, 32, 32, dtype=torch.long), cfg.data.augment,
                                 torch.Generator().manual_seed(1))
    assert not torch.equal(warped[-1], feats[-1])
    logits = model(None, features=warped, out_size=(32, 32))
    assert logits.shape == (2, FUNDUS.num_classes, 32, 32)
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.branch.parameters())
    assert all(p.grad is None for p in model.backbone.foundation.parameters())
    # the uncached pyramid (backbone.cache: false) is the cached one, up to the cache's float16 storage
    model.eval()
    with torch.no_grad():
        cached = model.backbone.pyramid_from(model.features(x), (32, 32))
        direct = model.backbone(x, out_size=(32, 32))
    assert [c.shape for c in cached] == [d.shape for d in direct]
    assert [c.shape[1] for c in cached] == [4 + 128, 8 + 160, 16 + 320, 32 + 256]
    assert all(torch.allclose(c, d, atol=2e-2) for c, d in zip(cached, direct))
    cache.clear()
