"""The nnU-Net v2 row: our glue (export, splits, reading nnU-Net's prediction files, scoring, resuming)
without nnU-Net, and one tiny real nnU-Net run when nnunetv2 is installed."""

import json

import numpy as np
import pytest

from vlsa.baselines import nnunet_row
from vlsa.baselines.nnunet_row import Budget, run_row, write_splits
from vlsa.data.domains import open_reader
from vlsa.data.export_nnunet import write_label
from vlsa.data.io import load_image
from vlsa.data.splits import hash_pick


def _fake_nnunet(reader, calls, speck: bool = False, size: int | None = None):
    """Stands in for nnU-Net: 'predicts' the ground truth of every input case, as label files (on the
    model grid of `size` when given); `speck`: plus a stray 2 x 2 patch of cup in a corner, which
    post-processing removes."""
    truth = {s.name: s.label if size is None else nnunet_row.on_model_grid(s, size, False).label
             for d in reader.domains() for split in ("train", "test") for s in reader.samples(d, split)}

    def run(unit, inputs, budget, seed, threads, splits):
        calls.append(unit.name)
        outputs = {}
        for domain, folder in inputs.items():
            out = unit / "predictions" / domain
            out.mkdir(parents=True)
            for image in sorted((folder / "imagesTr").glob("*_0000.png")):
                label = truth[image.name[: -len("_0000.png")]].copy()
                if speck:
                    label[:2, :2] = 2
                write_label(out, image.name[: -len("_0000.png")], label, ".png")
            outputs[domain] = out
        return outputs

    return run


def test_row_scores_predictions_with_vlsa_metrics_and_resumes(fundus_root, tmp_path, monkeypatch):
    reader = open_reader("fundus", fundus_root)
    calls = []
    monkeypatch.setattr(nnunet_row, "available", lambda: True)
    monkeypatch.setattr(nnunet_row, "run_nnunet", _fake_nnunet(reader, calls))
    result = run_row(reader, "fundus", tmp_path, Budget(), sources=["Domain1", "Domain2"], log=lambda _: None)
    saved = json.loads((tmp_path / "protocol.json").read_text())
    assert saved["mode"] == "single-source" and list(saved["runs"]) == ["Domain1", "Domain2"]
    run = saved["runs"]["Domain1"]
    assert {d: m["role"] for d, m in run["domains"].items()} == {
        "Domain1": "source", "Domain2": "target", "Domain3": "target", "Domain4": "target"}
    assert all(m["dice"]["mean"] == 1.0 and m["hd95"]["mean"] == 0.0 for m in run["domains"].values())
    assert run["domains"]["Domain3"]["n"] == len(list(reader.samples("Domain3", "test")))
    assert saved["table"]["Domain2"]["unseen"] == 1.0 and result["budget"]["total_iterations"] == 600
    # nnU-Net trained on the source's train cases only
    trained = json.loads((tmp_path / "Domain1" / "nnUNet_raw" / "Dataset500_fundusDomain1" / "dataset.json").read_text())
    assert trained["numTraining"] == len(list(reader.samples("Domain1", "train")))
    run_row(reader, "fundus", tmp_path, Budget(), sources=["Domain1", "Domain2"], log=lambda _: None)
    assert calls == ["Domain1", "Domain2"]  # finished units are read back, not rerun
    # nnU-Net predicted the validation fold too: the cases every other row holds out
    fold = json.loads((tmp_path / "Domain1" / "splits_final.json").read_text())[0]
    predicted = sorted(p.stem for p in (tmp_path / "Domain1" / "predictions" / nnunet_row.VALIDATION).glob("*.png"))
    assert predicted == sorted(fold["val"]) and run["postprocess"]["val_cases"] == len(fold["val"]) > 0


def test_row_is_post_processed_by_the_engine_rule_decided_on_its_validation_fold(fundus_root, tmp_path, monkeypatch):
    """Issue 30 row 5: the nnU-Net row gets the post-processing every engine row gets (`auto`,
    decided on its own validation fold), and keeps both numbers."""
    reader = open_reader("fundus", fundus_root)
    monkeypatch.setattr(nnunet_row, "available", lambda: True)
    monkeypatch.setattr(nnunet_row, "run_nnunet", _fake_nnunet(reader, [], speck=True))
    run = run_row(reader, "fundus", tmp_path, Budget(), sources=["Domain1"], log=lambda _: None)["runs"]["Domain1"]
    decision = run["postprocess"]
    assert decision["applied"] is True and decision["mode"] == "auto"
    assert decision["val_dice_on"] == 1.0 > decision["val_dice_off"]  # the speck removed on validation
    on, off = run["domains_postprocess_on"], run["domains_postprocess_off"]
    assert run["domains"] == on and set(on) == set(off) == set(reader.domains())
    for domain in reader.domains():
        assert on[domain]["dice"]["cup"] == 1.0 > off[domain]["dice"]["cup"]
        assert on[domain]["hd95"]["mean"] < off[domain]["hd95"]["mean"]


def test_a_unit_scored_without_post_processing_is_not_read_back(fundus_root, tmp_path, monkeypatch):
    reader = open_reader("fundus", fundus_root)
    calls, records = [], tmp_path / "units"
    monkeypatch.setattr(nnunet_row, "available", lambda: True)
    monkeypatch.setattr(nnunet_row, "run_nnunet", _fake_nnunet(reader, calls))
    run_row(reader, "fundus", tmp_path / "a", Budget(), sources=["Domain1"], records=records, log=lambda _: None)
    old = json.loads((records / "Domain1.json").read_text())
    for key in ("postprocess", "domains_postprocess_on", "domains_postprocess_off"):
        del old[key]  # as the committed records of the row before issue 30
    (records / "Domain1.json").write_text(json.dumps(old))
    assert nnunet_row.read_record(records / "Domain1.json", Budget()) is None
    assert not nnunet_row.finished(tmp_path / "b", ["Domain1"], Budget(), records)
    run_row(reader, "fundus", tmp_path / "b", Budget(), sources=["Domain1"], records=records, log=lambda _: None)
    assert calls == ["Domain1", "Domain1"] and "postprocess" in json.loads((records / "Domain1.json").read_text())


def test_finished_sources_come_back_from_committed_records_in_a_new_session(fundus_root, tmp_path, monkeypatch):
    """A source trained in one session is recorded; a later session (empty runs folder) reads it back
    instead of retraining, but only with the same budget; the seed is finished only with all sources."""
    from vlsa.baselines.nnunet_row import finished

    reader = open_reader("fundus", fundus_root)
    calls, records = [], tmp_path / "units" / "s0"
    monkeypatch.setattr(nnunet_row, "available", lambda: True)
    monkeypatch.setattr(nnunet_row, "run_nnunet", _fake_nnunet(reader, calls))
    quiet = {"log": lambda _: None, "records": records}
    run_row(reader, "fundus", tmp_path / "session1", Budget(), sources=["Domain1"], write=False, **quiet)
    assert not (tmp_path / "session1" / "protocol.json").exists()  # a partial row is not a seed's result
    assert not finished(tmp_path / "session2", reader.domains(), Budget(), records)
    run_row(reader, "fundus", tmp_path / "session2", Budget(), sources=["Domain2", "Domain3", "Domain4"],
            write=False, **quiet)
    assert finished(tmp_path / "session3", reader.domains(), Budget(), records)
    result = run_row(reader, "fundus", tmp_path / "session3", Budget(), **quiet)
    assert calls == ["Domain1", "Domain2", "Domain3", "Domain4"]  # nothing retrained in session 3
    assert list(result["runs"]) == reader.domains() and (tmp_path / "session3" / "protocol.json").is_file()
    other = Budget(epochs=3)
    assert not finished(tmp_path / "session4", reader.domains(), other, records)
    run_row(reader, "fundus", tmp_path / "session4", other, sources=["Domain1"], **quiet)
    assert calls[-1] == "Domain1"  # another budget: the record is not used


def test_splits_hold_out_the_validation_cases_of_the_other_rows(cardiac_root, tmp_path):
    from vlsa.data.export_nnunet import export_nnunet
    from vlsa.engine.data import split_train_val

    reader = open_reader("mms", cardiac_root)
    raw = export_nnunet(reader, tmp_path / "Dataset500_x", domains=["A"], splits=["train"]).out
    (fold,) = json.loads(write_splits(raw, tmp_path / "splits.json", 0.5, seed=3).read_text())
    train, val = split_train_val(list(reader.samples("A", "train")), 0.5, seed=3)
    assert set(fold["val"]) == {s.volume_id for s in val} and set(fold["train"]) == {s.volume_id for s in train}
    assert not set(fold["val"]) & set(fold["train"])
    subjects = {s.case_id for s in reader.samples("A", "train")}
    assert {v.rsplit("_", 1)[0] for v in fold["val"]} == hash_pick(subjects, 0.5, salt="val-3")


@pytest.mark.skipif(not nnunet_row.available(), reason="nnunetv2 not installed (pip install 'vlsa[nnunet]')")
def test_tiny_real_nnunet_run(tmp_path):
    """nnU-Net's own planning, preprocessing, 2 training iterations and prediction on 32 px images."""
    from vlsa.data.synth.fundus import generate_fundus

    root = generate_fundus(tmp_path / "fundus", per_domain=6, size=32, seed=0)
    reader = open_reader("fundus", root)
    result = run_row(reader, "fundus", tmp_path / "row", Budget(epochs=1, iterations=2, batch=2, val_iterations=1),
                     sources=["Domain1"], log=lambda _: None)
    unit = tmp_path / "row" / "Domain1"
    assert any((unit / "nnUNet_results").rglob("checkpoint_final.pth"))
    log = (unit / "nnunet.log").read_text()
    assert "This split has" in log and "Training done." in log
    for domain, metrics in result["runs"]["Domain1"]["domains"].items():
        preds = sorted(p.stem for p in (unit / "predictions" / domain).glob("*.png"))
        assert preds == sorted(s.name for s in reader.samples(domain, "test"))
        assert metrics["n"] == len(preds) and 0.0 <= metrics["dice"]["mean"] <= 1.0
    assert np.isfinite(result["table"]["Domain1"]["unseen"])


def test_configured_unit_is_scored_on_what_evaluate_scores_per_case(fundus_root, tmp_path, monkeypatch):
    """The real-data row (benchmarks/dg_real.py): one config's source, its own test split and another
    dataset's domains (a data.target_datasets entry on its own split) under evaluate's NAME/DOMAIN
    keys, with the per-case scores the paired statistics read; nnU-Net on the model grid
    (data.image_size), scored on the original grid."""
    import shutil

    from tests.conftest import tiny_overrides
    from vlsa.config import build_config

    crops = tmp_path / "crops"
    shutil.copytree(fundus_root, crops)
    reader = open_reader("fundus", fundus_root)
    monkeypatch.setattr(nnunet_row, "available", lambda: True)
    results = {}
    for size in (64, 32):  # the images' own size (the round trip is exact), then half of it
        config = build_config({"data": {"target_datasets": {"crops": {"dataset": "fundus", "root": str(crops),
                                                                      "domains": ["Domain3"], "split": "all"}}}},
                              [*tiny_overrides(fundus_root, source="Domain1"), "data.targets=[Domain2]",
                               f"data.image_size={size}"])
        monkeypatch.setattr(nnunet_row, "run_nnunet", _fake_nnunet(reader, [], size=size))
        nnunet_row.run_configured(config, tmp_path / f"unit{size}", Budget(), log=lambda _: None)
        results[size] = json.loads((tmp_path / f"unit{size}" / "protocol.json").read_text())
    saved = results[64]
    run = saved["runs"]["Domain1"]
    assert saved["domains"] == ["Domain1", "Domain2", "crops/Domain3"] and list(saved["runs"]) == ["Domain1"]
    assert {k: (d["role"], d.get("dataset")) for k, d in run["domains"].items()} == {
        "Domain1": ("source", None), "Domain2": ("target", None), "crops/Domain3": ("target", "fundus")}
    every = [s.name for split in ("train", "test") for s in reader.samples("Domain3", split)]
    crop = run["domains"]["crops/Domain3"]
    assert crop["n"] == len(every) and sorted(crop["cases"]) == sorted(every)  # split all: every image
    assert all(c["dice"]["mean"] == 1.0 for c in crop["cases"].values())
    assert sorted(run["domains"]["Domain2"]["cases"]) == sorted(s.name for s in reader.samples("Domain2", "test"))
    assert saved["target_datasets"]["crops"]["root"] == str(crops.resolve())
    exported = next((tmp_path / "unit32" / "Domain1" / "inputs" / "crops__Domain3" / "imagesTr").iterdir())
    assert load_image(exported, 3).shape == (3, 32, 32)  # nnU-Net saw the rows' 32 px grid ...
    half = results[32]["runs"]["Domain1"]["domains"]["crops/Domain3"]
    assert 0.85 < half["dice"]["mean"] < 1.0  # ... and was scored at 64 px: the round trip costs a little
    with pytest.raises(nnunet_row.ConfigError, match="one source domain"):
        nnunet_row.run_configured(build_config({}, [*tiny_overrides(fundus_root), "data.source=[Domain1,Domain2]"]),
                                  tmp_path / "two", Budget(), log=lambda _: None)


def test_model_grid_slices_keep_the_slice_axis_nnunet_2d_cuts_along():
    """nnU-Net's 2d configuration slices along the axis of largest spacing: a slice of unknown
    thickness (ACDC's h5 copy: 1.0) is exported thicker than its in-plane spacing; a known one is
    kept, even a thin one; the slice is centre-cropped/padded to the model grid, as the engine does."""
    from vlsa.data.export_nnunet import affine_for
    from vlsa.data.sample import Sample

    def slice_(thickness, known=True, h=40, w=20):
        label = np.zeros((h, w), np.int64)
        label[2:38, 5:15] = 1  # 36 labelled rows
        return Sample(image=np.ones((1, h, w), np.float32), label=label, domain="d", case_id="p", name="p_z0",
                      volume_id="p", slice_index=0, spacing=(1.5, 1.5), slice_thickness=thickness,
                      meta={"spacing_known": known})

    grid = {(t, k): nnunet_row.on_model_grid(slice_(t, k), 32, True) for t, k in ((1.0, False), (10.0, True), (1.0, True))}
    assert [float(np.linalg.norm(affine_for(s)[:3, 2])) for s in grid.values()] == [3.0, 10.0, 1.0]
    known = grid[10.0, True]
    assert known.spacing == (1.5, 1.5)
    assert known.image.shape == (1, 32, 32) and known.label.shape == (32, 32)
    assert known.label.sum() == 32 * 10  # 40 rows cropped to the middle 32: 2 labelled rows lost each side
