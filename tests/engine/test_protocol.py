import json

from tests.conftest import tiny_overrides
from vlsa.config import build_config
from vlsa.data.domains import protocol_splits
from vlsa.engine.data import load_source, open_configured
from vlsa.engine.protocol import run_protocol


def test_protocol_splits_never_put_a_target_among_sources():
    domains = ["A", "B", "C", "D"]
    for mode in ("single-source", "lodo"):
        runs = protocol_splits(domains, mode)
        assert len(runs) == 4
        for sources, targets in runs:
            assert not set(sources) & set(targets)
            assert set(sources) | set(targets) == set(domains)
    assert protocol_splits(domains, "lodo")[0] == (["B", "C", "D"], ["A"])


def test_training_and_model_selection_use_source_data_only(fundus_root):
    cfg = build_config({}, tiny_overrides(fundus_root, source="Domain2"))
    reader = open_configured(cfg)
    train, val = load_source(cfg, reader, ["Domain2"])
    assert {s.domain for s in train} == {s.domain for s in val} == {"Domain2"}
    assert {s.case_id for s in train}.isdisjoint({s.case_id for s in val})
    test_names = {s.name for s in reader.samples("Domain2", "test")}
    assert test_names.isdisjoint({s.name for s in train + val})


def test_single_source_protocol_table_and_cache(fundus_root, tmp_path):
    cfg = build_config({}, tiny_overrides(fundus_root, steps=3))
    result = run_protocol(cfg, "single-source", tmp_path, quiet=True)
    assert set(result["table"]) == {"Domain1", "Domain2", "Domain3", "Domain4"}
    for name, row in result["table"].items():
        run = json.loads((tmp_path / name / "run.json").read_text())
        assert run["sources"] == [name] and name not in run["targets"]
        unseen = [row[d] for d in result["domains"] if d != name]
        assert abs(row["unseen"] - sum(unseen) / 3) < 1e-9
    md = (tmp_path / "protocol.md").read_text()
    assert "| Domain1 | (" in md and "unseen mean" in md
    assert (tmp_path / "protocol.csv").read_text().count("\n") == 6
    # a finished protocol is read back, not retrained
    before = (tmp_path / "Domain1" / "checkpoints" / "last.pt").stat().st_mtime_ns
    run_protocol(cfg, "single-source", tmp_path, quiet=True)
    assert (tmp_path / "Domain1" / "checkpoints" / "last.pt").stat().st_mtime_ns == before


def test_rerun_with_another_config_stops_instead_of_returning_old_metrics(fundus_root, tmp_path):
    import pytest

    from vlsa.engine.protocol import run_one
    from vlsa.errors import VlsaError

    cfg = build_config({}, tiny_overrides(fundus_root, steps=2))
    first = run_one(cfg, tmp_path / "run", quiet=True)
    assert run_one(cfg, tmp_path / "run", quiet=True) == first  # same config: read back
    other = build_config({}, tiny_overrides(fundus_root, steps=4))
    with pytest.raises(VlsaError, match=r"another config .*differs in train\.steps"):
        run_one(other, tmp_path / "run", quiet=True)


def test_metrics_from_an_older_scoring_are_recomputed_not_trusted(fundus_root, tmp_path):
    from vlsa.engine.inference import SCORING_VERSION
    from vlsa.engine.protocol import run_one

    cfg = build_config({}, tiny_overrides(fundus_root, steps=2))
    fresh = run_one(cfg, tmp_path / "run", quiet=True)
    assert fresh["scoring"] == SCORING_VERSION
    stale = dict(fresh, domains={k: dict(v, dice={"mean": -1.0}) for k, v in fresh["domains"].items()})
    del stale["scoring"]  # as written before the scoring version existed
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(stale))
    before = (tmp_path / "run" / "checkpoints" / "last.pt").stat().st_mtime_ns
    again = run_one(cfg, tmp_path / "run", quiet=True)
    assert again["domains"] == fresh["domains"]  # re-evaluated from the checkpoint ...
    assert (tmp_path / "run" / "checkpoints" / "last.pt").stat().st_mtime_ns == before  # ... not retrained


def test_an_evaluated_interrupted_run_is_finished_not_read_back(fundus_root, tmp_path, capsys):
    """Issue 30 row 1: `vlsa evaluate` on a run interrupted after its first validation writes a
    current-scoring metrics.json; the protocol unit must still finish training, then score the
    finished run (and say which checkpoint its numbers come from)."""
    from vlsa.engine.evaluate import evaluate_run
    from vlsa.engine.protocol import run_one
    from vlsa.engine.train import finished_steps, train

    cfg = build_config({}, tiny_overrides(fundus_root, steps=9))
    run = tmp_path / "run"
    train(cfg, run, stop_at=3, quiet=True)
    early = evaluate_run(run, quiet=True)
    assert finished_steps(run) == 3
    # the user is told, on stderr and in metrics.md, that these numbers are of an unfinished run
    warned = [line for line in capsys.readouterr().err.splitlines() if "training is unfinished" in line]
    assert len(warned) == 1 and warned[0].startswith(f"vlsa: warning: {run}: training is unfinished (step 3 of 9)")
    assert "training is unfinished (step 3 of 9)" in (run / "metrics.md").read_text()
    result = run_one(cfg, run, quiet=True)
    assert finished_steps(run) == 9  # training continued instead of returning the step-3 metrics
    state = result["run_state"]
    assert state["finished"] and state["steps_done"] == 9
    assert early["run_state"]["finished"] is False
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["run_state"] == state and result["postprocess"]["checkpoint"] == state["checkpoint"]
    assert run_one(cfg, run, quiet=True) == result  # a finished, current evaluation is read back
    assert "unfinished" not in (run / "metrics.md").read_text() and "unfinished" not in capsys.readouterr().err


def test_single_source_protocol_can_train_the_chosen_sources_only(fundus_root, tmp_path):
    """dg_real's sim-to-real rows score one synthetic site: the others are neither trained nor
    scored; a source that is no domain, or sources with lodo, stop before any training."""
    import pytest

    from vlsa.errors import DataError

    cfg = build_config({}, tiny_overrides(fundus_root, steps=2))
    result = run_protocol(cfg, "single-source", tmp_path, quiet=True, sources=["Domain2"])
    assert list(result["runs"]) == ["Domain2"] and list(result["table"]) == ["Domain2"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["Domain2"]
    with pytest.raises(DataError, match="Domain9"):
        run_protocol(cfg, "single-source", tmp_path / "none", quiet=True, sources=["Domain9"])
    with pytest.raises(DataError, match="single-source only"):
        run_protocol(cfg, "lodo", tmp_path / "lodo", quiet=True, sources=["Domain2"])
    assert not (tmp_path / "none").exists() and not (tmp_path / "lodo").exists()
