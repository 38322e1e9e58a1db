"""train.ema: the moving average of the weights is what is validated, checkpointed and evaluated;
a resumed run reproduces the uninterrupted one (averaged and trained weights); off keeps digests."""

import pytest
import torch

from tests.conftest import tiny_overrides
from vlsa.config import build_config
from vlsa.engine.train import train


def _weights(run, key="model"):
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    return state[key] if key == "model" else state["extra"][key]


VLSA = ["model.name=vlsa", "model.decoder.dim=16", "model.decoder.embed_dim=16", "model.em.k=8",
        "model.backbone.cnn_width=8"]


@pytest.mark.parametrize("model", [[], VLSA], ids=["unet", "vlsa"])
def test_checkpoints_hold_the_average_and_resume_exactly(fundus_root, tmp_path, model):
    overrides = tiny_overrides(fundus_root, steps=6) + ["train.ema=0.5", *model]
    full = train(build_config({}, overrides), tmp_path / "full", quiet=True)
    averaged, trained = _weights(full), _weights(full, "training_model")
    state = torch.load(full / "checkpoints" / "last.pt", weights_only=True)
    assert state["extra"]["ema_updates"] == 6
    # the averaged weights lag the trained ones: at decay 0.5 they are a blend of the last steps
    assert max((averaged[k].float() - trained[k].float()).abs().max().item() for k in averaged) > 1e-5
    # stopped after step 3 (a checkpoint) and resumed: the same weights, both sets, as the full run
    train(build_config({}, overrides), tmp_path / "split", quiet=True, stop_at=3)
    split = train(None, tmp_path / "split", resume=True, quiet=True)
    for key in ("model", "training_model"):
        a, b = _weights(full, key), _weights(split, key)
        assert all(torch.equal(a[k], b[k]) for k in a), key
    # the selected checkpoint, which evaluate and predict load as "model", holds the average too
    best = torch.load(full / "checkpoints" / "best.pt", weights_only=True)
    assert best["extra"]["ema_updates"] == best["step"]
    assert any(not torch.equal(best["model"][k], best["extra"]["training_model"][k]) for k in best["model"])


def test_off_is_the_last_weights_and_keeps_the_digest():
    assert build_config().train.ema == 0
    assert build_config({}, ["train.ema=0"]).digest() == build_config().digest()
    assert build_config({}, ["train.ema=0.99"]).digest() != build_config().digest()


def test_resume_names_what_differs_and_refuses_an_edited_run_config(fundus_root, tmp_path):
    from vlsa.errors import VlsaError

    run = tmp_path / "run"
    overrides = tiny_overrides(fundus_root, steps=6) + ["train.ema=0.5"]
    train(build_config({}, overrides), run, quiet=True, stop_at=3)
    with pytest.raises(VlsaError, match=r"differs from the run's \(in train\.ema\)"):
        train(build_config({}, tiny_overrides(fundus_root, steps=6)), run, resume=True, quiet=True)
    # config.yaml edited after the checkpoint (here: EMA switched off): resuming would continue a
    # plain run from the averaged weights, so it is refused
    saved = (run / "config.yaml").read_text()
    assert "ema: 0.5" in saved
    (run / "config.yaml").write_text(saved.replace("ema: 0.5", "ema: 0.0"))
    with pytest.raises(VlsaError, match="was made with another config than"):
        train(None, run, resume=True, quiet=True)
    (run / "config.yaml").write_text(saved)
    assert torch.load(train(None, run, resume=True, quiet=True) / "checkpoints" / "last.pt",
                      weights_only=True)["step"] == 6


def test_an_average_longer_than_the_run_is_warned_about(fundus_root, tmp_path, capsys):
    train(build_config({}, tiny_overrides(fundus_root, steps=4) + ["train.ema=0.9"]), tmp_path / "long")
    assert "train.ema=0.9 averages over about 10 steps, more than half of the 4 steps" in capsys.readouterr().err
    train(build_config({}, tiny_overrides(fundus_root, steps=4) + ["train.ema=0.5"]), tmp_path / "short")
    assert "warning" not in capsys.readouterr().err
