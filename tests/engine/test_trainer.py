"""The training loop's named steps, each on its own: resume checks, one optimisation step, restore,
validation, the end of a run without a validation split, and another training mode reusing the
steps with its own data, model and loss (the shape the whole-photo disc locator will take)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.conftest import tiny_overrides
from vlsa.config import build_config
from vlsa.data.spec import DatasetSpec
from vlsa.engine import run_folder
from vlsa.engine.checkpoint import load_checkpoint
from vlsa.engine.data import Prepared
from vlsa.engine.inference import predict_prepared, score
from vlsa.engine.train import Trainer, learning_rate, prepare_data, resume_state, train
from vlsa.errors import VlsaError


def _config(root, *extra, steps=6):
    return build_config({}, tiny_overrides(root, steps=steps) + list(extra))


def _weights(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_resume_state_checks_the_run_folder_before_anything_loads(fundus_root, tmp_path):
    config = _config(fundus_root)
    config.data.root = str(fundus_root / ".." / fundus_root.name)
    same, state = resume_state(config, tmp_path / "fresh", resume=False)
    assert state is None and same is config and config.data.root == str(fundus_root.resolve())
    with pytest.raises(VlsaError, match=r"last\.pt: nothing to resume \(no last checkpoint\)"):
        resume_state(config, tmp_path / "fresh", resume=True)
    (tmp_path / "busy" / "checkpoints").mkdir(parents=True)
    (tmp_path / "busy" / "checkpoints" / "last.pt").write_bytes(b"")
    with pytest.raises(VlsaError, match="already holds a run; pass --resume"):
        resume_state(config, tmp_path / "busy", resume=False)


def test_train_step_is_a_function_of_the_weights_and_the_step(fundus_root, tmp_path):
    a, b = Trainer(_config(fundus_root), tmp_path / "a", quiet=True), Trainer(_config(fundus_root), tmp_path / "b",
                                                                              quiet=True)
    a.prepare()
    b.prepare()
    assert all(torch.equal(v, _weights(b)[k]) for k, v in _weights(a).items())  # same seed, same start
    before = _weights(a)
    loss, lr = a.train_step(0)
    assert lr == learning_rate(0, a.config.train) and a.optimizer.param_groups[0]["lr"] == lr
    assert math.isfinite(loss) and 0 < loss < 10
    assert max((a.model.state_dict()[k].float() - v.float()).abs().max().item() for k, v in before.items()) > 0
    # b draws other random numbers in between; its step 0 still gives a's weights
    torch.rand(100)
    b.train_step(0)
    assert all(torch.equal(v, _weights(b)[k]) for k, v in _weights(a).items())
    # another step index is another batch and learning rate
    a.train_step(1)
    b.train_step(2)
    assert any(not torch.equal(v, _weights(b)[k]) for k, v in _weights(a).items())


def test_restore_continues_exactly_from_a_saved_checkpoint(fundus_root, tmp_path):
    config = _config(fundus_root, "train.ema=0.5")
    a = Trainer(config, tmp_path / "a", quiet=True)
    a.prepare()
    a.start()
    for step in range(2):
        a.train_step(step)
    a.save_checkpoint(2, run_folder.last_path(a.out))
    b = Trainer(config, tmp_path / "a", quiet=True)
    b.prepare()
    b.restore(load_checkpoint(run_folder.last_path(a.out)))
    assert b.start_step == 2 and int(b.ema.n_averaged) == 2
    a.train_step(2)
    b.train_step(2)
    for ours, theirs in ((a.model, b.model), (a.ema.module, b.ema.module)):
        assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in ours.state_dict().items())


def test_validate_scores_the_evaluated_weights_on_the_source_validation_split(fundus_root, tmp_path):
    t = Trainer(_config(fundus_root, "train.ema=0.5"), tmp_path / "v", quiet=True)
    t.prepare()
    t.train_step(0)
    t.train_step(1)  # from the second update on, the average differs from the trained weights
    assert any(not torch.equal(v, t.model.state_dict()[k]) for k, v in t.ema.module.state_dict().items())
    native, _ = predict_prepared(t.ema.module, t.data.val_set, t.config.eval.batch_size, t.device)
    expected = score(t.data.val_set, native, t.data.spec, distances=False).aggregate()["dice"]["mean"]
    assert len(t.data.val_set) > 0 and t.validate() == pytest.approx(expected, abs=0)
    assert t.model.training  # validation leaves the model in training mode


def _no_validation(config):
    data = prepare_data(config)
    return replace(data, val_set=Prepared(torch.zeros(0), torch.zeros(0), [], []))


def test_without_a_validation_split_the_last_weights_are_selected(fundus_root, tmp_path, capsys):
    t = Trainer(_config(fundus_root, steps=3), tmp_path / "nv", data=_no_validation)
    assert t.run() == 3
    best, last = (load_checkpoint(run_folder.best_path(t.out)), load_checkpoint(run_folder.last_path(t.out)))
    assert best["step"] == last["step"] == 3 and math.isnan(best["best"]["score"])
    assert all(torch.equal(v, last["model"][k]) for k, v in best["model"].items())
    assert "no source validation split: the last weights (step 3) are kept" in capsys.readouterr().out
    rows = run_folder.read_log(t.out / "log.csv", 99)
    assert [r["step"] for r in rows] == ["1", "2", "3"] and all(r["val_dice"] == "" for r in rows)


DISC = DatasetSpec("fundus-disc", ("background", "disc"), {"disc": (1,)}, channels=3)


def _disc_only(config):
    """Another training mode's data: the optic disc (rim + cup) against the background."""
    data = prepare_data(config)
    for part in (data.train_set, data.val_set):
        part.labels = (part.labels > 0).long()
        for s in part.samples:
            s.label = (s.label > 0).astype(np.int64)
    return replace(data, spec=DISC)


def test_another_training_mode_reuses_the_steps_with_its_own_data_model_and_loss(fundus_root, tmp_path):
    from vlsa.losses import SegmentationLoss
    from vlsa.models import build_model

    seen = []
    dice_ce = SegmentationLoss()

    def loss(logits, labels):
        seen.append((logits.shape[1], int(labels.max())))
        return dice_ce(logits, labels)

    config = _config(fundus_root, steps=3)
    run = tmp_path / "locator"
    Trainer(config, run, quiet=True, data=_disc_only, model=build_model, loss=loss).run()
    state = load_checkpoint(run_folder.best_path(run))
    assert state["spec"]["label_names"] == ["background", "disc"]
    assert seen and all(k == 2 and top <= 1 for k, top in seen)
    assert 0 <= state["best"]["score"] <= 1 and json.loads((run / "run.json").read_text())["sources"] == ["Domain1"]


def test_update_run_info_merges_into_run_json(fundus_root, tmp_path):
    run = train(_config(fundus_root, steps=2), tmp_path / "r", quiet=True)
    before = json.loads((run / "run.json").read_text())
    after = run_folder.update_run_info(run, finished=True, train_cases=["a", "b"])
    assert after == {**before, "finished": True, "train_cases": ["a", "b"]}
    assert json.loads((run / "run.json").read_text()) == after
