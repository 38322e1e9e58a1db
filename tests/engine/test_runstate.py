"""A run records the cases it trained on; evaluation refuses a test split that holds one, and says
which split rule made the splits (issue 30, row 2)."""

import json
import shutil

import pytest

from tests.conftest import tiny_overrides
from vlsa.config import build_config
from vlsa.engine.evaluate import evaluate_run
from vlsa.engine.train import train
from vlsa.errors import VlsaError


def test_evaluation_refuses_a_test_split_holding_a_training_case(fundus_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(fundus_root, data)
    run = train(build_config({}, tiny_overrides(data, steps=3)), tmp_path / "run", quiet=True)
    info = json.loads((run / "run.json").read_text())
    trained = info["train_cases"]["Domain1"]
    assert trained and not set(trained) & set(info["val_cases"])
    clean = evaluate_run(run, domains=["Domain1"], quiet=True)
    assert "mms-test" not in clean["split_rule"]["test"] and "train/ and test/ folders" in clean["split_rule"]["test"]
    assert "val-0" in clean["split_rule"]["validation"] and "per-id" in clean["split_rule"]["hash_rule"]
    # the folders are reorganised after training: one case the run trained on is now a test case
    case = trained[0]
    for kind in ("image", "mask"):
        shutil.move(str(data / "Domain1" / "train" / "ROIs" / kind / f"{case}.png"),
                    str(data / "Domain1" / "test" / "ROIs" / kind / f"{case}.png"))
    with pytest.raises(VlsaError, match=rf"run\.json: the test split of Domain1 holds case\(s\) this run trained on \({case}\)"):
        evaluate_run(run, domains=["Domain1"], quiet=True)
