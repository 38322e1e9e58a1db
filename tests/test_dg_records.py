"""Committed unit records of the DG table (benchmarks/dg_table.py): a unit trained in one session
is read back in a later one with an empty runs folder, but only while it describes what dg_table
would train now (same config digest, current scoring)."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import dg_table  # noqa: E402

from vlsa.config import save_config  # noqa: E402
from vlsa.engine.inference import SCORING_VERSION  # noqa: E402


def _unit(runs: Path, method: str, seed: int, dice: float, threads: int | None = 1) -> None:
    """A finished fundus unit of `method` on disk, as run_protocol leaves it (one source run)."""
    unit = runs / "fundus" / dg_table.slug(method) / f"s{seed}"
    config = dg_table.unit_config("fundus", method, seed, quick=True, threads=threads)
    config.data.source, config.data.targets = ["Domain1"], ["Domain2"]  # as run_protocol saves a source run
    save_config(config, unit / "Domain1" / "config.yaml")
    splits = dg_table.unit_splits("fundus", seed, True)["Domain1"]  # the cases the run trained on, as run.json keeps them
    (unit / "Domain1" / "run.json").write_text(json.dumps({"sources": ["Domain1"], "train_cases": {"Domain1": splits["train"]},
                                                           "val_cases": splits["val"]}))
    domains = {"Domain1": {"role": "source", "dice": {"rim": 0.9, "cup": 0.9, "mean": 0.9}, "hd95": {"mean": 2.0},
                           "cases": [1, 2, 3]},
               "Domain2": {"role": "target", "dice": {"rim": dice, "cup": dice, "mean": dice}, "hd95": {"mean": 5.0},
                           "cases": [4, 5, 6]}}
    run = {"domains": domains, "domains_postprocess_off": domains, "scoring": SCORING_VERSION}
    (unit / "protocol.json").write_text(json.dumps({"mode": "single-source", "runs": {"Domain1": run}}))


def test_a_finished_unit_is_read_back_from_its_record_when_the_runs_folder_is_gone(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "results" / "dg_synthetic_quick_units"
    _unit(runs, "VLSA", 0, 0.8)
    _unit(runs, "ERM U-Net", 0, 0.7, threads=None)  # threads are how, not what: same record key
    dg_table.archive_units(runs, records, quick=True)
    record = json.loads((records / "fundus" / "vlsa" / "s0.json").read_text())
    assert "cases" not in record["runs"]["Domain1"]["domains"]["Domain2"]  # slim: metrics only
    units = dg_table.collect(tmp_path / "empty", records, quick=True)
    assert set(units) == {("fundus", "VLSA"), ("fundus", "ERM U-Net"), ("fundus", "VLSA w/o post-processing")}
    table = dg_table.summarise(units)["fundus"]
    assert table["VLSA"]["unseen_dice"] == 0.8 and table["ERM U-Net"]["unseen_dice"] == 0.7
    # the runs folder wins over a record of the same unit
    _unit(tmp_path / "new", "VLSA", 0, 0.6)
    assert dg_table.summarise(dg_table.collect(tmp_path / "new", records, quick=True))["fundus"]["VLSA"]["unseen_dice"] == 0.6


def test_a_record_of_another_config_or_an_older_scoring_is_not_used(tmp_path, monkeypatch):
    runs, records = tmp_path / "runs", tmp_path / "units"
    _unit(runs, "VLSA", 0, 0.8)
    _unit(runs, "ERM U-Net", 0, 0.7)
    dg_table.archive_units(runs, records, quick=True)
    path = records / "fundus" / "erm_u_net" / "s0.json"
    old = json.loads(path.read_text())
    old["runs"]["Domain1"]["scoring"] = SCORING_VERSION - 1
    path.write_text(json.dumps(old))
    vlsa = records / "fundus" / "vlsa" / "s0.json"
    assert dg_table.collect(tmp_path / "empty", records, quick=True)[("fundus", "VLSA")]
    other = json.loads(vlsa.read_text())
    vlsa.write_text(json.dumps({**other, "splits": "0" * 16}))  # trained on other splits (another split rule)
    assert ("fundus", "VLSA") not in dg_table.collect(tmp_path / "empty", records, quick=True)
    vlsa.write_text(json.dumps(other))
    monkeypatch.setitem(dg_table.METHODS, "VLSA", ["model.em.k=32"])  # VLSA's default changed since
    assert dg_table.collect(tmp_path / "empty", records, quick=True) == {}
    # and a unit trained with the old config is not recorded under the new one
    dg_table.archive_units(runs, tmp_path / "again", quick=True)
    assert not (tmp_path / "again" / "fundus" / "vlsa").exists()


def test_a_cached_run_made_with_another_config_is_a_one_line_error(tmp_path):
    """dg_table refuses to mix a run folder trained with another config into a unit: exit 2, the
    folder named, no traceback (as a changed default leaves stale runs behind)."""
    import os
    import subprocess

    runs = tmp_path / "runs"
    config = dg_table.unit_config("fundus", "VLSA", 0, quick=True, threads=1)
    config.train.steps = 21  # another config than dg_table would train now
    config.data.source, config.data.targets = ["Domain1"], ["Domain2", "Domain3", "Domain4"]
    stale = runs / "quick" / "fundus" / dg_table.slug("VLSA") / "s0" / "Domain1"
    save_config(config, stale / "config.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "VLSA_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dg_table.py"), "--quick", "--datasets", "fundus",
                           "--methods", "VLSA", "--seeds", "0", "--threads", "1", "--runs", str(runs),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    import re

    lines = [line for line in re.split(r"[\r\n]", proc.stderr) if "error" in line.lower()]  # not the progress bars
    assert len(lines) == 1 and str(stale / "config.yaml") in lines[0] and "another config" in lines[0]


def test_a_report_with_no_units_anywhere_is_an_error_not_an_empty_table(tmp_path):
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dg_table.py"), "--report-only", "--quick",
                           "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "no finished units" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "dg_synthetic_quick.md").exists()


def test_another_out_folder_still_reads_the_committed_records(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    dg_table.write_results(tmp_path / "out", "dg_synthetic", runs, dg_table.provenance(), {})
    table = json.loads((tmp_path / "out" / "dg_synthetic.json").read_text())
    committed = json.loads((ROOT / "benchmarks" / "results" / "dg_synthetic.json").read_text())
    assert table["table"] == committed["table"]


def test_a_vlsa_only_change_of_the_dataset_config_keeps_the_unet_records_valid():
    erm, vlsa = (dg_table.unit_config("mms", m, 0) for m in ("ERM U-Net + RandConv", "VLSA"))
    wider = [c.model_copy(update={"model": c.model.model_copy(update={
        "backbone": c.model.backbone.model_copy(update={"cnn_width": 32})})}, deep=True) for c in (erm, vlsa)]
    # the U-Net never reads model.backbone: same unit, same record key; VLSA's unit is a new one
    assert dg_table.unit_digest(wider[0]) == dg_table.unit_digest(erm)
    assert dg_table.unit_digest(wider[1]) != dg_table.unit_digest(vlsa)
    # and a U-Net change still changes the U-Net's key
    deeper = erm.model_copy(deep=True)
    deeper.model.unet.num_res_units = 2
    assert dg_table.unit_digest(deeper) != dg_table.unit_digest(erm)


def test_the_committed_records_still_match_what_dg_table_would_train():
    """Every committed unit record of a METHODS row carries the key dg_table computes now, and every
    record the digest of the splits dg_table would train and score on now."""
    records = ROOT / "benchmarks" / "results" / "dg_synthetic_units"
    for path in sorted(records.glob("*/*/s*.json")):
        record = json.loads(path.read_text())
        assert record["splits"] == dg_table.split_digest(path.parts[-3], int(path.stem[1:]), False), path
        dataset, method = path.parts[-3], next((m for m in dg_table.METHODS if dg_table.slug(m) == path.parts[-2]), None)
        if method is None:  # an external row (nnU-Net), keyed by its budget
            continue
        assert record["key"] == dg_table.expected_key(dataset, method, int(path.stem[1:]), quick=False), path


def test_a_unit_of_an_unfinished_run_or_other_training_cases_is_not_used(tmp_path):
    """Issue 30 rows 1 and 2: a run evaluated before its training finished, or trained on other
    cases than the current splits give it, never enters the table or the records."""
    runs, records = tmp_path / "runs", tmp_path / "units"
    _unit(runs, "VLSA", 0, 0.8)
    _unit(runs, "ERM U-Net", 0, 0.7)
    protocol = runs / "fundus" / "vlsa" / "s0" / "protocol.json"
    result = json.loads(protocol.read_text())
    result["runs"]["Domain1"]["run_state"] = {"finished": False, "steps_done": 10, "steps": 20}
    protocol.write_text(json.dumps(result))
    info_path = runs / "fundus" / "erm_u_net" / "s0" / "Domain1" / "run.json"
    info = json.loads(info_path.read_text())
    info["train_cases"]["Domain1"] = info["train_cases"]["Domain1"][1:]  # one case less than the split gives
    info_path.write_text(json.dumps(info))
    assert dg_table.collect(runs, quick=True) == {}
    dg_table.archive_units(runs, records, quick=True)
    assert not (records / "fundus" / "erm_u_net").exists()
    assert dg_table.collect(tmp_path / "empty", records, quick=True).get(("fundus", "VLSA")) is None


def test_nnunet_units_scored_without_post_processing_are_their_own_row(tmp_path):
    """Issue 30 row 5: nnU-Net units scored before its post-processing was decided are shown as
    'nnU-Net v2 w/o post-processing' and kept out of the target check, which says so."""
    units = {}
    for method, dice in (("VLSA", 0.80), ("ERM U-Net", 0.70)):
        _unit(tmp_path / "runs", method, 0, dice)
    nn = tmp_path / "runs" / "fundus" / dg_table.slug("nnU-Net v2") / "s0"
    nn.mkdir(parents=True)
    domains = {"Domain1": {"role": "source", "dice": {"mean": 0.9}, "hd95": {"mean": 2.0}},
               "Domain2": {"role": "target", "dice": {"mean": 0.78}, "hd95": {"mean": 9.0}}}
    (nn / "protocol.json").write_text(json.dumps({"mode": "single-source", "runs": {"Domain1": {"domains": domains}}}))
    units = dg_table.collect(tmp_path / "runs", quick=True)
    assert ("fundus", "nnU-Net v2") not in units and ("fundus", "nnU-Net v2 w/o post-processing") in units
    check = dg_table.target_check(dg_table.summarise(units))["fundus"]
    assert check["best_baseline"] == "ERM U-Net" and check["missing"][-1] == "nnU-Net v2"
    like = check["unprocessed"]["nnU-Net v2"]  # VLSA w/o post-processing (0.8) vs nnU-Net's 0.78
    assert like["margin"] == pytest.approx(0.02) and like["met"] is False
    assert any("Not compared: **nnU-Net v2**" in n for n in check["notes"])
