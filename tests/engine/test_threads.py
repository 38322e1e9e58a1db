"""One thread setting for train / evaluate / predict / protocol (issue 25, row 1): `--threads` on
every command, the order of the sources, the free cores as the default, the recorded count on
--resume, and a warning when the machine is oversubscribed (simulated: measuring real load in a
test would be flaky)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import tiny_overrides
from vlsa.cli import main
from vlsa.config import build_config
from vlsa.engine import threads


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    threads.request(None)
    threads._warned.clear()
    torch.set_num_threads(before)


def _machine(monkeypatch, usable: int, busy: float) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: usable)
    monkeypatch.setattr(threads, "busy_cores", lambda: busy)


@pytest.fixture(scope="module")
def run(fundus_root, tmp_path_factory):
    from vlsa.engine.train import train

    return train(build_config({}, tiny_overrides(fundus_root, steps=2) + ["train.threads=1"]),
                 tmp_path_factory.mktemp("runs") / "r", quiet=True)


def test_sources_in_order_and_the_free_cores_by_default(monkeypatch):
    _machine(monkeypatch, usable=4, busy=1.0)
    assert threads.choose() == (3, "the free cores")
    assert threads.choose(recorded=2) == (2, "the run's run.json")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert threads.choose(recorded=2) == (5, "OMP_NUM_THREADS")
    assert threads.choose(configured=6, recorded=2) == (6, "train.threads")
    threads.request(7)
    assert threads.choose(configured=6, recorded=2) == (7, "--threads")
    monkeypatch.delenv("OMP_NUM_THREADS")
    threads.request(None)
    # a core that another process keeps even a third busy is not free; never fewer than one thread
    _machine(monkeypatch, usable=2, busy=0.35)
    assert threads.auto_threads() == 1
    _machine(monkeypatch, usable=2, busy=0.1)
    assert threads.auto_threads() == 2
    _machine(monkeypatch, usable=2, busy=2.0)
    assert threads.auto_threads() == 1
    _machine(monkeypatch, usable=64, busy=0.0)
    assert threads.auto_threads() == threads.MAX_AUTO


def test_the_busy_measurement_counts_other_processes_only(monkeypatch):
    import os
    import time

    # /proc/stat over the window: cpu0 busy all of it, cpu1 half; this process ran one core's worth
    ticks = iter([{"cpu": (0, 0), "cpu0": (0, 0), "cpu1": (0, 0)},
                  {"cpu": (30, 40), "cpu0": (20, 20), "cpu1": (10, 20)}])
    clock = iter([5.0, 5.0 + threads.WINDOW_S])
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(ticks))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(time, "process_time", lambda: next(clock))
    monkeypatch.setattr(time, "sleep", lambda s: None)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    threads.busy_cores.cache_clear()
    try:
        assert threads.busy_cores() == pytest.approx(0.5)  # 1.5 cores busy, 1.0 of them this process
    finally:
        threads.busy_cores.cache_clear()


def test_evaluate_and_predict_honour_threads(run, tmp_path):
    torch.set_num_threads(3)
    assert main(["evaluate", "--run", str(run), "--domains", "Domain2", "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "x.png")
    assert main(["predict", "--run", str(run), "--input", str(tmp_path / "x.png"), "--output", str(tmp_path / "p"),
                 "--threads", "2"]) == 0
    assert torch.get_num_threads() == 2


def test_oversubscription_is_warned_about_and_the_default_avoids_it(fundus_root, tmp_path, monkeypatch, capsys,
                                                                    caplog):
    _machine(monkeypatch, usable=2, busy=1.0)  # another process keeps the second core busy
    args = [a for o in tiny_overrides(fundus_root, steps=2) for a in ("--set", o)]
    assert main(["train", *args, "--out", str(tmp_path / "two"), "--threads", "2"]) == 0
    err = capsys.readouterr().err
    assert ("vlsa: warning: the machine is oversubscribed: other processes keep 1.0 of the 2 cores this process "
            "may use busy, and 2 torch threads (from --threads) share them") in err and "use --threads 1" in err
    assert json.loads((tmp_path / "two" / "run.json").read_text())["machine"]["threads"] == 2
    # by default: the one free core, no warning
    assert main(["train", *args, "--out", str(tmp_path / "auto")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert json.loads((tmp_path / "auto" / "run.json").read_text())["machine"]["threads"] == 1
    # every core busy: one thread, and with --verbose a note saying why steps are slow
    _machine(monkeypatch, usable=2, busy=2.0)
    with caplog.at_level(logging.INFO, logger="vlsa"):
        assert main(["-v", "train", *args, "--out", str(tmp_path / "busy")]) == 0
    assert "other processes keep 2.0 of the 2 cores this process may use busy" in caplog.text
    assert "warning" not in capsys.readouterr().err


def test_resume_uses_the_runs_recorded_count(fundus_root, tmp_path, monkeypatch):
    from vlsa.engine.train import train

    _machine(monkeypatch, usable=2, busy=0.0)
    config = build_config({}, tiny_overrides(fundus_root, steps=4))
    full = train(config, tmp_path / "full", quiet=True)
    part = train(config, tmp_path / "part", quiet=True, stop_at=2)
    assert json.loads((part / "run.json").read_text())["machine"]["threads"] == 2
    _machine(monkeypatch, usable=2, busy=1.0)  # the machine got busy: the default alone would pick 1
    train(None, part, resume=True, quiet=True)
    assert torch.get_num_threads() == 2
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(part / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_thread_count_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--run", "x", "--threads", "0"])
    assert exc.value.code == 2 and "--threads: expected a positive whole number, got '0'" in capsys.readouterr().err
