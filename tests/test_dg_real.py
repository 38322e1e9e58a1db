"""The real-data DG table's statistics (benchmarks/dg_real.py) on hand-made unit records: unseen Dice
over the target sites' annotated classes only, and pairs per (seed, unseen case)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import dg_real  # noqa: E402


def record(lv: float, cases: dict[str, float]) -> dict:
    """One seed of a cardiac unit: ACDC (same site) and Sunnybrook (unseen; RV not annotated)."""
    domains = {
        "ACDC": {"role": "source", "dice": {"lv": 0.9, "myo": 0.8, "rv": 0.7, "mean": 0.8}, "hd95": {"mean": 3.0}},
        "sunnybrook/Sunnybrook": {"role": "target", "dice": {"lv": lv, "myo": 0.6, "rv": "not annotated",
                                                             "mean": (lv + 0.6) / 2},
                                  "hd95": {"mean": 5.0}, "cases": {c: {"dice": v} for c, v in cases.items()}}}
    return {"runs": {"ACDC": {"domains": domains}}}


def test_unseen_dice_skips_unannotated_classes_and_pairs_per_case():
    units = {("cardiac", "ERM U-Net + colour aug"): {0: record(0.80, {"p1": 0.70, "p2": 0.60}),
                                                    1: record(0.82, {"p1": 0.72, "p2": 0.62})},
             ("cardiac", "VLSA"): {0: record(0.90, {"p1": 0.78, "p2": 0.70}), 1: record(0.92, {"p1": 0.80, "p2": 0.71})}}
    table = dg_real.summarise(units)
    vlsa = table["cardiac"]["VLSA"]
    assert vlsa["unseen_dice"] == pytest.approx((0.75 + 0.76) / 2)  # (LV + MYO) / 2, RV left out
    assert vlsa["unseen_dice_rv"] != vlsa["unseen_dice_rv"]  # NaN: not annotated, never 0
    assert vlsa["unseen_dice_lv"] == pytest.approx(0.91) and vlsa["source_dice"] == pytest.approx(0.8)
    assert sorted(vlsa["units"]["unseen_dice"]) == ["s0/sunnybrook/Sunnybrook/p1", "s0/sunnybrook/Sunnybrook/p2",
                                                     "s1/sunnybrook/Sunnybrook/p1", "s1/sunnybrook/Sunnybrook/p2"]
    check = dg_real.target_check(table)["cardiac"]
    assert check["best_baseline"] == "ERM U-Net + colour aug" and check["paired"]["n"] == 4
    assert check["paired"]["mean"] == pytest.approx((0.08 + 0.10 + 0.08 + 0.09) / 4)
    assert check["margin"] == pytest.approx(0.05) and check["met"]
    md = "\n".join(dg_real.setting_markdown("cardiac", table["cardiac"]))
    assert "| not annotated |" in md and "nnU-Net v2 | 0 | not run in this setting yet" in md
    # every row without a unit is listed with the command that runs it there, never left out
    assert "| VLSA (medsam) | 0 | not run in this setting yet: `python benchmarks/dg_real.py --settings cardiac " \
           "--methods 'VLSA (medsam)'`" in md
    assert "| VLSA | 0 |" not in md and "--settings SETTING" not in md


def test_nnunet_units_are_keyed_by_what_nnunet_reads():
    """nnU-Net plans its own image size and augmentation: fundus and fundus-scale (which differ only
    in the zoom range) share one nnU-Net unit; another seed or dataset is another unit; the engine
    rows of the two settings stay apart."""
    row = dg_real.nnunet_row.ROW
    key = dg_real.unit_key("fundus", row, 0)
    assert key == dg_real.unit_key("fundus-scale", row, 0)
    assert key != dg_real.unit_key("fundus", row, 1) and key != dg_real.unit_key("cardiac", row, 0)
    assert dg_real.unit_key("fundus", "VLSA", 0) != dg_real.unit_key("fundus-scale", "VLSA", 0)


def test_a_shared_nnunet_record_enters_both_settings_and_the_not_run_row_goes(tmp_path, monkeypatch):
    row = dg_real.nnunet_row.ROW
    monkeypatch.setattr(dg_real, "COMMITTED", tmp_path / "none")  # this test's records only
    records = tmp_path / "dg_real_units"
    rec = {"key": dg_real.unit_key("fundus", row, 0), "runs": {"DrishtiGS1": {"domains": {
        "DrishtiGS1": {"role": "source", "dice": {"disc": 0.9, "cup": 0.8, "mean": 0.85}, "hd95": {"mean": 3.0}},
        "dofe/Domain2": {"role": "target", "dice": {"disc": 0.8, "cup": 0.6, "mean": 0.7}, "hd95": {"mean": 9.0},
                         "cases": {"a": {"dice": 0.7}}}}}}}
    dg_real.write_json(records / "fundus" / dg_real.dg_table.slug(row) / "s0.json", rec)
    stale = {**rec, "key": "0" * 16}  # another budget / data: not this unit
    dg_real.write_json(records / "fundus" / dg_real.dg_table.slug(row) / "s1.json", stale)
    units = dg_real.collect(tmp_path / "no-runs", records)
    assert set(units[("fundus", row)]) == set(units[("fundus-scale", row)]) == {0}
    table = dg_real.summarise(units)
    assert table["fundus-scale"][row]["unseen_dice"] == pytest.approx(0.7)
    md = "\n".join(dg_real.setting_markdown("fundus-scale", table["fundus-scale"]))
    assert f"| {row} | 1 |" in md and f"| {row} | 0 |" not in md


def test_the_target_is_checked_for_the_packaged_default_and_the_papers_vlsa_beside_it():
    """acdc_sdg trains VLSA text=none (chosen on source data): the cardiac target is checked for it,
    and the paper's VLSA is reported beside it; a setting without a packaged variant checks VLSA."""
    units = {("cardiac", "ERM U-Net + colour aug"): {0: record(0.80, {"p1": 0.70, "p2": 0.60})},
             ("cardiac", "VLSA"): {0: record(0.84, {"p1": 0.72, "p2": 0.62})},
             ("cardiac", "VLSA text=none"): {0: record(0.90, {"p1": 0.78, "p2": 0.70})}}
    table = dg_real.summarise(units)
    packaged, paper = dg_real.target_check(table)["cardiac"], dg_real.target_check(table, {})["cardiac"]
    assert packaged["method"] == "VLSA text=none" and packaged["met"] and packaged["margin"] == pytest.approx(0.05)
    assert paper["method"] == "VLSA" and not paper["met"] and paper["margin"] == pytest.approx(0.02)
    md = dg_real.markdown(table, {}, dg_real.provenance(), "x.png")
    assert "**VLSA text=none** (the packaged default)" in md and "**VLSA** (the paper's VLSA)" in md
    del units[("cardiac", "VLSA text=none")]
    assert dg_real.target_check(dg_real.summarise(units))["cardiac"]["method"] == "VLSA"


def test_report_only_elsewhere_reads_the_committed_records(tmp_path, monkeypatch):
    """`--out` elsewhere (a new folder): the committed records still count, as in dg_table.py."""
    row = dg_real.nnunet_row.ROW
    committed = tmp_path / "committed"
    rec = {"key": dg_real.unit_key("cardiac", row, 0), "runs": {"ACDC": {"domains": record(0.8, {"p1": 0.7})["runs"]["ACDC"]["domains"]}}}
    dg_real.write_json(committed / "cardiac" / dg_real.dg_table.slug(row) / "s0.json", rec)
    monkeypatch.setattr(dg_real, "COMMITTED", committed)
    units = dg_real.collect(tmp_path / "no-runs", tmp_path / "elsewhere" / "dg_real_units")
    assert set(units[("cardiac", row)]) == {0}


def test_a_diagnostic_row_is_listed_and_collected_only_in_the_settings_it_names(tmp_path, monkeypatch):
    name = "VLSA + RandConv"
    (only,) = dg_real.ONLY_IN[name]
    # a setting with no diagnostic row at all, so its table says nothing of them
    other = next(s for s in dg_real.SETTINGS if not any(dg_real.runs_in(s, m) for m in dg_real.DIAGNOSTIC))
    monkeypatch.setattr(dg_real, "COMMITTED", tmp_path / "none")
    assert name in dg_real.not_run(only, {}) and name not in dg_real.not_run(other, {})
    # its overrides switch RandConv on, on top of the setting's own VLSA
    assert "data.augment.randconv=true" in dg_real.METHODS[name]
    # a stray folder of it under another setting is not read into that setting's table
    rec = {"runs": {}}
    for setting in (only, other):
        folder = tmp_path / "runs" / setting / dg_real.dg_table.slug(name) / "s0"
        folder.mkdir(parents=True)
        (folder / "protocol.json").write_text(dg_real.json.dumps(rec))
    units = dg_real.collect(tmp_path / "runs", tmp_path / "records")
    assert (only, name) in units and (other, name) not in units
    md = "\n".join(dg_real.setting_markdown(other, {}))
    assert name not in md and "Diagnostic rows" not in md
    assert "not candidates for the default" in "\n".join(dg_real.setting_markdown(only, {}))


def test_every_row_has_a_kind_and_a_derived_row_takes_its_parents():
    kinds = {m: dg_real.row_kind(m) for m in [*dg_real.METHODS, *dg_real.DERIVED]}
    assert set(kinds.values()) <= {"baseline", "vlsa", "ablation", "variant", "diagnostic"}
    assert kinds["nnU-Net v2"] == kinds["nnU-Net v2 w/o post-processing"] == "baseline"
    assert kinds["VLSA w/o post-processing"] == "ablation" and kinds["VLSA + RandConv"] == "diagnostic"
    assert kinds["VLSA (medsam)"] == "vlsa" and kinds["VLSA (medsam, 16 views)"] == "variant"
    with pytest.raises(KeyError, match="not a row"):
        dg_real.row_kind("VLSA (clip)")


def test_sim_to_real_scores_the_real_targets_only_of_the_first_source_run():
    def run(synthetic: float, real: float) -> dict:
        return {"domains": {
            "Domain1": {"role": "source", "dice": {"disc": 0.9, "mean": 0.9}, "hd95": {"mean": 2.0}},
            "Domain2": {"role": "target", "dice": {"disc": synthetic, "mean": synthetic}, "hd95": {"mean": 3.0},
                        "cases": {"s1": {"dice": synthetic}}},
            "drishti/DrishtiGS1": {"role": "target", "dice": {"disc": real, "mean": real}, "hd95": {"mean": 9.0},
                                   "cases": {"r1": {"dice": real}}}}}

    # the protocol's second run (another synthetic source) is not the row: nnU-Net trains only the first
    rec = {"runs": {"Domain1": run(0.95, 0.4), "Domain2": run(0.85, 0.6)}}
    row, paired = dg_real.seed_row(rec, real_targets_only=True)
    assert row["unseen_dice"] == pytest.approx(0.4) and row["unseen_hd95"] == pytest.approx(9.0)
    assert paired == {"drishti/DrishtiGS1/r1": 0.4}
    # a real setting counts every target site
    row, paired = dg_real.seed_row(rec)
    assert row["unseen_dice"] == pytest.approx((0.95 + 0.4) / 2) and set(paired) == {"Domain2/s1", "drishti/DrishtiGS1/r1"}
    assert set(dg_real.REAL_TARGETS_ONLY) == {s for s in dg_real.SETTINGS if s.endswith("-sim")}


def test_a_fresh_checkout_skips_the_units_its_committed_records_hold(tmp_path, monkeypatch):
    """benchmarks/runs/ is empty on a new machine: a unit recorded with this config's key counts as
    finished, one recorded with another key (another budget, data or scoring) does not."""
    method, committed = "ERM U-Net", tmp_path / "committed"
    monkeypatch.setattr(dg_real, "COMMITTED", committed)
    folder = committed / "cardiac-sim" / dg_real.dg_table.slug(method)
    dg_real.write_json(folder / "s0.json", {"key": dg_real.unit_key("cardiac-sim", method, 0), "runs": {}})
    dg_real.write_json(folder / "s1.json", {"key": "0" * 16, "runs": {}})
    records = tmp_path / "out" / "dg_real_units"
    assert dg_real.recorded(records, "cardiac-sim", method, 0)
    assert not dg_real.recorded(records, "cardiac-sim", method, 1)
    assert not dg_real.recorded(records, "cardiac-sim", method, 2)


def test_sim_to_real_train_seconds_are_per_synthetic_source_run():
    """Older sim-to-real units trained every synthetic site (4 runs), newer ones the first only: the
    row's time is per run, so both kinds of unit report the same thing."""
    run = record(0.8, {"p1": 0.7})["runs"]["ACDC"]
    old = {"runs": {f"Domain{i}": run for i in range(1, 5)}, "train_seconds": 400.0}
    new = {"runs": {"Domain1": run}, "train_seconds": 100.0}
    table = dg_real.summarise({("fundus-sim", "VLSA"): {0: old, 1: new}, ("fundus", "VLSA"): {0: old}})
    assert table["fundus-sim"]["VLSA"]["train_seconds"] == pytest.approx(100.0)
    assert table["fundus"]["VLSA"]["train_seconds"] == pytest.approx(400.0)


def test_retrain_trains_a_recorded_unit_and_never_over_the_committed_records(tmp_path, monkeypatch, capsys):
    """--retrain brings a recorded unit's run folder back (select_real.py reads checkpoints); it
    refuses the committed results folder, whose records it would replace."""
    method, committed = "VLSA", tmp_path / "committed"
    monkeypatch.setattr(dg_real, "COMMITTED", committed)
    monkeypatch.setattr(dg_real, "REAL", tmp_path)
    dg_real.write_json(committed / "fundus-scale" / dg_real.dg_table.slug(method) / "s0.json",
                       {"key": dg_real.unit_key("fundus-scale", method, 0), "runs": {}})
    trained = []
    monkeypatch.setattr(dg_real, "run_protocol", lambda config, protocol, unit, **kw: trained.append(unit))
    monkeypatch.setattr(dg_real, "write_results", lambda *a: (a[0] / "dg_real.md").write_text("table"))
    argv = ["dg_real.py", "--settings", "fundus-scale", "--methods", method, "--seeds", "0",
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    (tmp_path / "out").mkdir()
    monkeypatch.setattr(sys, "argv", argv)
    dg_real.main()
    assert trained == []  # recorded: skipped
    monkeypatch.setattr(sys, "argv", [*argv, "--retrain"])
    dg_real.main()
    assert trained == [tmp_path / "runs" / "fundus-scale" / "vlsa" / "s0"]
    monkeypatch.setattr(sys, "argv", [*argv[:-2], "--retrain"])  # --out: the committed results folder
    with pytest.raises(dg_real.VlsaError, match="--retrain needs --out elsewhere"):
        dg_real.main()
    assert len(trained) == 1
