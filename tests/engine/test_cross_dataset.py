"""Experiments across datasets (issue 24 part 4) and roles from (dataset, root, domain) (issue 25
row 4): `data.target_datasets` entries are read with their own readers, verified before training,
recorded in run.json, evaluated into one metrics.json under NAME/DOMAIN keys; another root's
domains are targets even where a name matches a source's."""

import json
import os
import shutil

import pytest
import yaml

from tests.conftest import tiny_overrides
from vlsa.cli import main
from vlsa.config import build_config
from vlsa.engine.evaluate import evaluate_run
from vlsa.engine.train import train
from vlsa.report.tables import scored_on


@pytest.fixture(scope="module")
def other_roots(fundus_root, tmp_path_factory):
    """The same images at another root (as real crops named Domain1..4 beside synthetic ones) and
    exported as an nnU-Net dataset (another reader, the same label space)."""
    base = tmp_path_factory.mktemp("elsewhere")
    copy = base / "crops"
    shutil.copytree(fundus_root, copy)
    nn = base / "Dataset501_Fundus"
    assert main(["export", "nnunet", "--dataset", "fundus", "--root", str(fundus_root), "--out", str(nn)]) == 0
    return base, copy, nn


@pytest.fixture(scope="module")
def cross_run(fundus_root, other_roots, tmp_path_factory):
    base, copy, nn = other_roots
    run = tmp_path_factory.mktemp("runs") / "cross"
    cfg = build_config({"data": {"target_datasets": {"crops": {"dataset": "fundus", "root": "crops",
                                                                "domains": ["Domain3", "Domain4"]},
                                                     "nn": {"dataset": "nnunet", "root": str(nn), "domains": "Domain2"}}}},
                       tiny_overrides(fundus_root, source="Domain3", steps=2) + ["eval.overlays=1"])
    here = os.getcwd()
    os.chdir(base)  # a relative target root is resolved like data.root
    try:
        train(cfg, run, quiet=True)
    finally:
        os.chdir(here)
    return run


def test_run_json_records_every_targets_dataset_reader_and_resolved_root(cross_run, other_roots):
    _, copy, nn = other_roots
    run = json.loads((cross_run / "run.json").read_text())
    assert run["dataset"] == "fundus" and run["reader"] == "DoFEReader"
    assert run["target_datasets"] == {
        "crops": {"dataset": "fundus", "reader": "DoFEReader", "root": str(copy.resolve()), "domains": ["Domain3", "Domain4"]},
        "nn": {"dataset": "nnunet", "reader": "NNUNetReader", "root": str(nn.resolve()), "domains": ["Domain2"]}}
    saved = yaml.safe_load((cross_run / "config.yaml").read_text())
    assert saved["data"]["target_datasets"]["crops"]["root"] == str(copy.resolve())


def test_evaluate_scores_every_dataset_with_its_own_reader_into_one_table(cross_run, monkeypatch):
    from vlsa.data.fundus import DoFEReader

    monkeypatch.setattr(DoFEReader, "label_rule", "DoFE grey levels (255 background, 128 rim, 0 cup)", raising=False)
    metrics = evaluate_run(cross_run, quiet=True)
    assert list(metrics["domains"]) == ["Domain3", "Domain1", "Domain2", "Domain4", "crops/Domain3", "crops/Domain4",
                                        "nn/Domain2"]
    d = metrics["domains"]
    assert d["Domain3"]["role"] == "source" and "dataset" not in d["Domain3"]  # the run's own keys as before
    assert d["crops/Domain3"]["role"] == "target" and d["crops/Domain3"]["dataset"] == "fundus"
    assert d["nn/Domain2"]["role"] == "target" and d["nn/Domain2"]["dataset"] == "nnunet"
    # the same images at another root, or through another reader, score the same: only the role differs
    assert d["crops/Domain3"]["dice"] == d["Domain3"]["dice"] and d["crops/Domain3"]["n"] == d["Domain3"]["n"]
    assert d["nn/Domain2"]["dice"] == pytest.approx(d["Domain2"]["dice"])
    assert metrics["target_datasets"]["nn"]["reader"] == "NNUNetReader"
    # the reader's label rule, per dataset (the Drishti reader states its expert agreement threshold)
    assert metrics["label_rule"].startswith("DoFE grey levels")
    assert metrics["target_datasets"]["crops"]["label_rule"].startswith("DoFE grey levels")
    assert "nn" in metrics["target_datasets"] and "label_rule" not in metrics["target_datasets"]["nn"]
    md = (cross_run / "metrics.md").read_text()
    assert "- Labels of fundus: DoFE grey levels" in md and "- Labels of crops: DoFE grey levels" in md
    assert "| crops/Domain3 | unseen |" in md and "| nn/Domain2 | unseen |" in md
    # what was scored, per dataset (a target dataset may score all its images: the DoFE sample's crops)
    assert "Scored per image; fundus: test split; target datasets crops: test split, nn: test split." in md
    with_all = {**metrics, "target_datasets": {**metrics["target_datasets"],
                                               "nn": {**metrics["target_datasets"]["nn"], "split": "all"}}}
    assert scored_on(with_all).endswith("crops: test split, nn: all images (all splits)")
    unseen = [v["dice"]["mean"] for v in d.values() if v["role"] == "target"]
    assert f"| unseen mean |  | {sum(v['n'] for v in d.values() if v['role'] == 'target')} |" in md
    assert len(unseen) == 6
    assert (cross_run / "overlays" / "crops" / "Domain3.png").is_file()
    # a subset by key, and the report lists the dataset's overlays
    assert main(["evaluate", "--run", str(cross_run), "--domains", "nn/Domain2", "--report"]) == 0
    assert list(json.loads((cross_run / "metrics_nn-Domain2.json").read_text())["domains"]) == ["nn/Domain2"]
    assert "nn/Domain2" in (cross_run / "report_nn-Domain2.html").read_text()


@pytest.fixture(scope="module")
def domain3_run(fundus_root, tmp_path_factory):
    """A run trained on the synthetic Domain3 only."""
    run = tmp_path_factory.mktemp("runs") / "domain3"
    train(build_config({}, tiny_overrides(fundus_root, source="Domain3", steps=2)), run, quiet=True)
    return run


def test_data_elsewhere_labels_a_domain_named_like_the_source_a_target(domain3_run, fundus_root, other_roots):
    """`vlsa evaluate --data <crops elsewhere>` on a run trained on synthetic Domain3: the crops'
    Domain3 is another root's domain, unseen in training (issue 25 row 4)."""
    _, copy, _ = other_roots
    run = domain3_run
    elsewhere = evaluate_run(run, data=copy, quiet=True)
    assert elsewhere["domains"]["Domain3"]["role"] == "target"
    assert {d["role"] for d in elsewhere["domains"].values()} == {"target"}
    assert elsewhere["file"] == "metrics_data-crops.json"
    own = evaluate_run(run, data=fundus_root, quiet=True)  # the run's own root, named explicitly
    assert own["domains"]["Domain3"]["role"] == "source" and own["file"] == "metrics.json"


def test_real_refuge_crops_are_targets_of_a_run_trained_on_synthetic_domain3(domain3_run, fundus_root, realdata,
                                                                             tmp_path):
    """The issue's case on the real DoFE crops (REFUGE train is their Domain3), both through
    --data and as a target dataset of a run."""
    crops = realdata / "dofe-samples"
    assert main(["evaluate", "--run", str(domain3_run), "--data", str(crops)]) == 0
    real = json.loads((domain3_run / "metrics_data-dofe-samples.json").read_text())
    assert real["domains"]["Domain3"]["role"] == "target" and real["domains"]["Domain3"]["n"] == 1
    run = tmp_path / "run"
    cfg = build_config({}, tiny_overrides(fundus_root, source="Domain3", steps=1) + [
        "data.target_datasets.refuge.dataset=fundus", f"data.target_datasets.refuge.root={crops}",
        "data.target_datasets.refuge.domains=Domain3,Domain4"])
    train(cfg, run, quiet=True)
    metrics = evaluate_run(run, quiet=True)
    assert metrics["domains"]["Domain3"]["role"] == "source"  # the synthetic one it trained on
    assert metrics["domains"]["refuge/Domain3"]["role"] == "target" and metrics["domains"]["refuge/Domain3"]["n"] == 1


def test_a_target_dataset_of_another_label_space_stops_training_before_it_starts(fundus_root, cardiac_root, other_roots,
                                                                                 tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), *sum((["--set", o] for o in tiny_overrides(fundus_root)), []),
            "--set", "data.target_datasets.heart.dataset=mms", "--set", f"data.target_datasets.heart.root={cardiac_root}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vlsa: error: config key 'data.target_datasets.heart': mms at ") and "\n" not in err
    assert "labels ['background', 'lv', 'myo', 'rv']" in err and "the run's fundus has ['background', 'rim', 'cup']" in err
    assert not out.exists()
    # the run's own dataset and root as a "target dataset": its domains belong in data.targets
    same = args[:-4] + ["--set", "data.target_datasets.me.dataset=fundus", "--set", f"data.target_datasets.me.root={fundus_root}"]
    assert main(same) == 2
    assert "list its domains in data.targets instead" in capsys.readouterr().err
    unknown = args[:-4] + ["--set", "data.target_datasets.x.dataset=fundus", "--set",
                           f"data.target_datasets.x.root={other_roots[1]}", "--set", "data.target_datasets.x.domains=Domain9"]
    assert main(unknown) == 2
    assert "unknown data.target_datasets.x domain(s) ['Domain9']" in capsys.readouterr().err and not out.exists()
