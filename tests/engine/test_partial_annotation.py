"""Partly annotated datasets (issue 24 part 2, issue 25 row 5): a region the target does not
annotate (RV on Sunnybrook) is "not annotated" in metrics.json / .md / .csv, left out of every
mean, and a model predicting it is neither rewarded nor punished; a case annotating LV only
(an endocardial contour without the epicardial one) is left out of the MYO mean."""

import csv
import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from vlsa.config import build_config
from vlsa.data.sample import Sample
from vlsa.data.spec import CARDIAC
from vlsa.engine.data import Prepared
from vlsa.engine.inference import score

NOT_ANNOTATED = "not annotated"  # the documented word in metrics.json, .md and .csv
NO_RV = replace(CARDIAC, name="no-rv", annotated=("lv", "myo"))  # as the Sunnybrook reader declares it


def _heart(shift=0):
    lab = np.zeros((16, 16), np.int64)
    lab[4:12, 3 + shift:11 + shift] = 2
    lab[5:11, 4 + shift:10 + shift] = 1
    return lab  # no RV label: the dataset does not annotate it


def _slices(volume, n=3, annotated=None):
    return [Sample(image=np.zeros((1, 16, 16), np.float32), label=_heart(), domain="d", case_id=volume,
                   name=f"{volume}_z{z}", volume_id=volume, slice_index=z, spacing=(1.5, 1.5), slice_thickness=8.0,
                   annotated=None if annotated is None else annotated[z]) for z in range(n)]


def _prepared(samples):
    return Prepared(torch.zeros(len(samples)), torch.zeros(len(samples)), samples, [])


def _rv_everywhere(samples):
    """A model that finds LV and MYO exactly and calls every other pixel RV."""
    return [np.where(s.label > 0, s.label, 3) for s in samples]


def test_score_leaves_rv_out_when_the_dataset_does_not_annotate_it():
    samples = _slices("v1") + _slices("v2")
    agg = score(_prepared(samples), _rv_everywhere(samples), NO_RV).aggregate()
    assert agg["dice"]["rv"] == NOT_ANNOTATED and agg["dice"]["mean"] == 1.0
    assert agg["n"] == 2 and agg["n_annotated"] == {"lv": 2, "myo": 2, "rv": 0}
    # the run's spec annotates everything; the evaluated dataset's annotation is passed beside it
    assert score(_prepared(samples), _rv_everywhere(samples), CARDIAC, annotated=("lv", "myo")).aggregate() == agg
    # today's rule where RV *is* annotated (empty in truth, predicted): Dice 0 in the mean
    assert score(_prepared(samples), _rv_everywhere(samples), CARDIAC).aggregate()["dice"]["mean"] == pytest.approx(2 / 3)


def test_a_slice_annotating_lv_only_is_left_out_of_the_volume_myo_score():
    # volume v1: slice 1 has an endocardial contour only: its MYO (predicted, not labelled) is not scored
    per_slice = [("lv", "myo"), ("lv",), ("lv", "myo")]
    samples = _slices("v1", annotated=per_slice)
    samples[1].label = np.where(samples[1].label == 2, 0, samples[1].label)
    preds = [_heart() for _ in samples]
    agg = score(_prepared(samples), preds, NO_RV).aggregate()
    assert agg["dice"]["myo"] == 1.0 and agg["hd95"]["myo"] == 0.0
    # a 2D case (an image) annotating LV only: out of the MYO mean, in the LV mean
    spec2d = replace(NO_RV, volumetric=False)
    images = [Sample(image=np.zeros((1, 16, 16), np.float32), label=_heart(), domain="d", case_id=f"c{i}",
                     name=f"c{i}", annotated=a) for i, a in enumerate([None, ("lv",)])]
    missed_myo = [_heart(), np.where(_heart() == 2, 0, _heart())]
    agg2 = score(_prepared(images), missed_myo, spec2d).aggregate()
    assert agg2["n_annotated"] == {"lv": 2, "myo": 1, "rv": 0}
    assert agg2["dice"]["myo"] == 1.0 and agg2["dice"]["lv"] == 1.0


class _NoRVReader:
    """Two domains of volumes whose dataset does not annotate RV (Sunnybrook-like)."""

    spec = NO_RV

    def __init__(self, root):
        self.root = root

    def domains(self):
        return ["siteA", "siteB"]

    def samples(self, domain, split):
        return iter(_slices(f"{domain}-{split}-1") + _slices(f"{domain}-{split}-2"))


def test_evaluate_reports_rv_not_annotated_in_json_md_and_csv(tmp_path, monkeypatch):
    import vlsa.engine.evaluate as ev

    config = build_config({}, ["data.dataset=mms", f"data.root={tmp_path}", "data.source=siteA", "data.image_size=16",
                               "model.name=unet", "eval.postprocess=off", "eval.overlays=1"])
    monkeypatch.setattr(ev, "load_run", lambda run_dir, device="cpu": (config, CARDIAC, None))
    monkeypatch.setattr(ev, "open_configured", lambda config, root=None: _NoRVReader(tmp_path))
    monkeypatch.setattr(ev, "predict_prepared", lambda model, prepared, bs, dev, tta="off": (_rv_everywhere(prepared.samples), None))
    run = tmp_path / "run"
    run.mkdir()
    from vlsa.config import save_config

    save_config(config, run / "config.yaml")  # evaluation records the run's state (no checkpoint here)
    result = ev.evaluate_run(run, quiet=True)
    on_disk = json.loads((run / "metrics.json").read_text())
    for domain in ("siteA", "siteB"):
        d = on_disk["domains"][domain]
        assert d["dice"]["rv"] == NOT_ANNOTATED and d["hd95"]["rv"] == NOT_ANNOTATED
        assert d["dice"]["mean"] == d["dice"]["lv"] == d["dice"]["myo"] == 1.0  # the LV/MYO mean, RV not in it
        assert d["hd95"]["mean"] == 0.0
    assert result["domains"]["siteB"]["role"] == "target"
    md = (run / "metrics.md").read_text()
    assert "| siteB | unseen | 2 | 1.000 | 1.000 | not annotated | 1.000 |" in md
    assert "| unseen mean |  | 2 | 1.000 | 1.000 | not annotated | 1.000 |" in md
    assert "siteB: rv not annotated" in md
    rows = list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))
    rv = [r for r in rows if r["domain"] == "siteB" and r["metric"] == "dice" and r["class"] == "rv"]
    assert rv[0]["value"] == NOT_ANNOTATED
    mean = [r for r in rows if r["domain"] == "siteB" and r["metric"] == "dice" and r["class"] == "mean"]
    assert float(mean[0]["value"]) == 1.0


def test_a_partly_annotated_source_is_refused_before_training_naming_the_case():
    """Training reads every pixel's label: RV missing from a source case would be learnt as
    background, so such a case is refused (named), whether the dataset or the case says so."""
    from types import SimpleNamespace

    from vlsa.engine.data import check_trainable, load_source
    from vlsa.errors import DataError

    full = _slices("v1")
    check_trainable(full, CARDIAC)  # every region annotated: trainable
    with pytest.raises(DataError, match=r"v1_z0.*annotates \['lv', 'myo'\] only, not \['rv'\]"):
        check_trainable(full, NO_RV)
    lv_only = _slices("v2", annotated=[("lv", "myo", "rv"), ("lv",), ("lv", "myo", "rv")])
    with pytest.raises(DataError, match=r"v2_z1.*not \['myo', 'rv'\]: training would learn them as background"):
        check_trainable(lv_only, CARDIAC)
    reader = SimpleNamespace(spec=NO_RV, samples=lambda domain, split: _slices("v3"))
    config = build_config({}, ["data.dataset=mms"])
    with pytest.raises(DataError, match="use this dataset as a target"):
        load_source(config, reader, ["A"])
