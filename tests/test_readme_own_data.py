"""The README's own-data workflow, run as written on a tiny three-site folder dataset.

The commands are parsed from README.md between the own-data markers and run unchanged; the only
thing added is the documented $VLSA_SET (a tiny budget and the U-Net, whose speed is all this
test needs; the model choice does not change the workflow)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
from PIL import Image

from tests.own_data import make_scans, make_sites
from vlsa.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = ("train.steps=4 train.val_every=2 train.batch_size=2 train.device=cpu data.image_size=32 "
        "model.name=unet model.unet.channels=[8,16] eval.overlays=2")


def readme_commands() -> list[str]:
    text = README.read_text()
    block = re.search(r"<!-- own-data:start -->\s*```bash\n(.*?)```\s*<!-- own-data:end -->", text, re.S)
    assert block, "README.md lost its own-data block"
    lines = [ln.strip() for ln in block.group(1).replace("\\\n", " ").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def test_readme_own_data_workflow_runs_as_written(tmp_path, monkeypatch, capsys):
    commands = readme_commands()
    assert [c.split()[1] for c in commands] == ["verify", "train", "evaluate", "evaluate", "predict", "protocol"]
    make_sites(tmp_path / "mysites")
    make_scans(tmp_path / "new_scans")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VLSA_SET", TINY)
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "vlsa"
        assert main(argv[1:]) == 0, command
    out = capsys.readouterr().out
    assert "ok: dataset passed" in out and "next: vlsa evaluate --run runs/hospA" in out

    run = tmp_path / "runs" / "hospA"
    info = json.loads((run / "run.json").read_text())
    assert Path(info["dataset_root"]).is_absolute() and info["mask_values"] == [0, 128, 255]
    full = json.loads((run / "metrics.json").read_text())
    assert list(full["domains"]) == ["hospA", "hospB", "hospC"] and full["split"] == "test"
    every = json.loads((run / "metrics_split-all.json").read_text())
    assert list(every["domains"]) == ["hospB", "hospC"]  # unseen sites only
    assert every["domains"]["hospB"]["n"] == 10 > full["domains"]["hospB"]["n"]  # every image, not the test split
    assert (run / "report.html").is_file() and (run / "overlays" / "hospB.png").is_file()
    for scan in ("scan0", "scan1"):
        values = set(np.unique(np.asarray(Image.open(tmp_path / "predictions" / f"{scan}.png"))).tolist())
        assert values <= {0, 128, 255}, values  # the dataset's own mask values
    table = (tmp_path / "runs" / "lodo" / "protocol.md").read_text()
    assert "| lodo-hospA |" in table and "Model: unet; budget: 4 steps" in table

    # the run works from any directory (absolute paths), and stays the same after
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["evaluate", "--run", str(run), "--domains", "hospB"]) == 0
    assert json.loads((run / "metrics.json").read_text()) == full
