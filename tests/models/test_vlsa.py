import pytest
import torch

from vlsa.config import build_config
from vlsa.data.spec import CARDIAC, FUNDUS
from vlsa.models import build_model
from vlsa.models.text import encoders
from vlsa.models.text.prompts import class_prompts


def _vlsa(*overrides, spec=FUNDUS, size=32):
    cfg = build_config({}, ["model.name=vlsa", "model.backbone.name=cnn", "model.backbone.cnn_width=8",
                            "model.decoder.dim=16", "model.decoder.embed_dim=16", "model.em.k=8",
                            f"data.image_size={size}", *overrides])
    return build_model(cfg, spec)


@pytest.mark.parametrize("overrides", [(), ("model.em.enabled=false",), ("model.decoder.text_guidance=false",),
                                       ("model.text.encoder=none",)])
def test_forward_shapes_for_every_ablation(overrides):
    model = _vlsa(*overrides)
    out = model(torch.randn(2, 3, 32, 32), return_aux=True)
    assert out["logits"].shape == (2, 3, 32, 32)
    if "model.em.enabled=false" in overrides:
        assert out["responsibilities"] is None
    else:
        assert out["responsibilities"].shape == (2, 16, 8)  # 4 x 4 deepest pixels x K
    assert (out["text_attention"] is None) == ("model.decoder.text_guidance=false" in overrides)


def test_prompts_name_every_label_index():
    prompts = class_prompts(CARDIAC)
    assert len(prompts) == 4 and len({len(p) for p in prompts}) == 1
    assert "pale, bright central depression" in class_prompts(FUNDUS)[2][0]


def test_text_embeddings_are_computed_once_and_frozen():
    _vlsa()  # warm the cache
    calls = encoders.CALLS["encode"]
    model = _vlsa()
    emb = model.text_embeddings.clone()
    for _ in range(3):
        model(torch.randn(1, 3, 32, 32)).sum().backward()
    assert encoders.CALLS["encode"] == calls
    assert "text_embeddings" in dict(model.named_buffers())
    assert torch.equal(model.text_embeddings, emb)
    assert emb.shape == (3, 384) and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    # a pretrained encoder, not noise: the fundus cup is closer to the fundus rim than to the LV
    cardiac = encoders.class_embeddings("minilm", class_prompts(CARDIAC))
    assert emb[2] @ emb[1] > emb[2] @ cardiac[1] + 0.1


def test_save_load_round_trip_reproduces_logits(tmp_path):
    model = _vlsa()
    model.train()
    model(torch.randn(2, 3, 32, 32))  # move the running EM bases
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    other = _vlsa()
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    other.eval()
    assert torch.equal(model(x), other(x))
