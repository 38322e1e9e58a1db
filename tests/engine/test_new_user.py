"""A new user's slips that used to lose data or give wrong numbers with exit 0 (issue 16), and the
friction fixes around them. Runs are tiny U-Nets on a three-site folder dataset (tests/own_data.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal

import numpy as np
import pytest
import torch

from tests.own_data import make_scans, make_sites, write_classes
from vlsa.cli import main
from vlsa.config import build_config

TINY = ["data.image_size=32", "train.steps=4", "train.val_every=2", "train.batch_size=2", "train.device=cpu",
        "model.name=unet", "model.unet.channels=[8,16]", "eval.overlays=3"]


def tiny(root, source="hospA", steps=4):
    return ["data.dataset=folder", f"data.root={root}", f"data.source={source}", *TINY, f"train.steps={steps}"]


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    return make_sites(tmp_path_factory.mktemp("own") / "mysites")


@pytest.fixture(scope="module")
def folder_run(sites, tmp_path_factory):
    from vlsa.engine.train import train

    run = tmp_path_factory.mktemp("runs") / "hospA"
    return train(build_config({}, tiny(sites)), run, quiet=True)


def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("vlsa: error: ") and "Traceback" not in err
    for f in fragments:
        assert f in err, (f, err)
    return err


# --- wrong results / data loss ------------------------------------------------------------------

def test_predict_never_writes_over_its_inputs(folder_run, tmp_path, capsys):
    scans = make_scans(tmp_path / "new")
    before = {p: p.read_bytes() for p in scans}
    for output in (tmp_path / "new", tmp_path / "new" / "pred", tmp_path):
        assert main(["predict", "--run", str(folder_run), "--input", str(tmp_path / "new"), "--output", str(output)]) == 2
        _one_line_error(capsys, "overlaps the input")
    # a file input: its own folder is refused, a sibling folder is fine
    assert main(["predict", "--run", str(folder_run), "--input", str(scans[0]), "--output", str(tmp_path / "new")]) == 2
    _one_line_error(capsys, "overlaps the input")
    assert {p: p.read_bytes() for p in scans} == before
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["scan0.png", "scan1.png"]
    assert main(["predict", "--run", str(folder_run), "--input", str(scans[0]), "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "scan0.png").is_file()


def test_a_subset_or_other_data_never_replaces_the_full_metrics(folder_run, sites, tmp_path, capsys):
    from vlsa.engine.evaluate import evaluate_run
    from vlsa.engine.protocol import run_one

    evaluate_run(folder_run, quiet=True)
    full = (folder_run / "metrics.json").read_bytes()
    assert main(["evaluate", "--run", str(folder_run), "--domains", "hospB"]) == 0
    assert (folder_run / "metrics.json").read_bytes() == full
    subset = json.loads((folder_run / "metrics_hospB.json").read_text())
    assert list(subset["domains"]) == ["hospB"]
    other = tmp_path / "copy"
    shutil.copytree(sites, other)
    assert main(["evaluate", "--run", str(folder_run), "--data", str(other)]) == 0
    assert (folder_run / "metrics.json").read_bytes() == full and (folder_run / "metrics_data-copy.json").is_file()
    # every image of a site is for unseen sites only (a source's training images would inflate it)
    assert main(["evaluate", "--run", str(folder_run), "--split", "all", "--domains", "hospA"]) == 2
    _one_line_error(capsys, "choose target domains only")
    assert (folder_run / "metrics.json").read_bytes() == full
    # a protocol reads the full results back
    cfg = build_config({}, tiny(sites))
    assert list(run_one(cfg, folder_run, quiet=True)["domains"]) == ["hospA", "hospB", "hospC"]


def test_duplicate_class_names_are_refused(tmp_path, capsys):
    root = make_sites(tmp_path / "d", per_site=4)
    write_classes(root, [("disc", 128, "a"), ("disc", 255, "b")])
    assert main(["verify", "--dataset", "folder", "--root", str(root)]) == 2
    _one_line_error(capsys, "classes.yaml", "'disc' is used twice")
    write_classes(root, [("disc", 128, "a"), ("Disc", 255, "b")])  # one class to a reader of the tables
    assert main(["verify", "--dataset", "folder", "--root", str(root)]) == 2
    _one_line_error(capsys, "classes.yaml", "'Disc' is used twice")
    write_classes(root, [("background", 128, "a"), ("cup", 255, "b")])
    assert main(["verify", "--dataset", "folder", "--root", str(root)]) == 2
    _one_line_error(capsys, "classes.yaml", "'background' is reserved for mask value 0")


def test_evaluate_and_predict_refuse_an_unknown_device(tmp_path, capsys):
    for command in (["evaluate", "--run", str(tmp_path)], ["predict", "--run", str(tmp_path), "--input", str(tmp_path),
                                                           "--output", str(tmp_path / "o")]):
        with pytest.raises(SystemExit) as exc:  # argparse's usage error: exit 2, never a torch traceback
            main([*command, "--device", "foo"])
        assert exc.value.code == 2
        assert "invalid choice: 'foo'" in capsys.readouterr().err


@pytest.mark.parametrize("classes,channels,shown", [
    ([("cup", 255, "c"), ("disc", 128, "d")], 1, "classes ['cup', 'disc']"),   # same classes, other order
    ([("disc", 100, "d"), ("cup", 255, "c")], 1, "values [100, 255]"),         # other mask values
    (None, 3, "3 channel(s)"),                                                 # RGB instead of grey
])
def test_evaluate_on_other_data_checks_classes_and_channels(folder_run, sites, tmp_path, capsys, classes, channels,
                                                            shown):
    other = tmp_path / "other"
    shutil.copytree(sites, other)
    write_classes(other, classes or [("disc", 128, "d"), ("cup", 255, "c")], channels)
    assert main(["evaluate", "--run", str(folder_run), "--data", str(other)]) == 2
    err = _one_line_error(capsys, str(other / "classes.yaml"), shown, "the run's classes ['disc', 'cup']",
                          "values [128, 255]")
    assert "1 channel(s)" in err
    assert not list(folder_run.glob("metrics_data-other*"))


# --- friction -----------------------------------------------------------------------------------

def test_sigint_saves_last_and_says_how_to_resume(sites, tmp_path, capsys, monkeypatch):
    import vlsa.engine.train as train_module

    run = tmp_path / "run"
    original = train_module.learning_rate

    def interrupt_at_step_2(step, cfg):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during step 3
        return original(step, cfg)

    monkeypatch.setattr(train_module, "learning_rate", interrupt_at_step_2)
    assert main(["train", "--out", str(run), *sum((["--set", s] for s in tiny(sites, steps=6)), [])]) == 130
    err = capsys.readouterr().err
    assert "stopped by SIGINT at step 3" in err and f"vlsa train --out {run} --resume" in err
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    monkeypatch.setattr(train_module, "learning_rate", original)
    assert main(["train", "--out", str(run), "--resume"]) == 0
    out, err = capsys.readouterr()
    assert "best source validation Dice" in out and "next: vlsa evaluate --run" in out
    assert str(run / "checkpoints" / "best.pt") in out
    assert "val=-1.000" not in err
    assert main(["train", "--out", str(run), "--resume"]) == 2
    _one_line_error(capsys, "already finished (6 of 6 steps)", f"vlsa evaluate --run {run}")


def test_configs_by_name_from_any_directory(tmp_path, monkeypatch, capsys):
    from vlsa.config import load_config

    monkeypatch.chdir(tmp_path)
    assert load_config("fundus_sdg").data.dataset == "fundus"
    assert load_config("folder_sdg.yaml").data.dataset == "folder"
    (tmp_path / "fundus_sdg.yaml").write_text("seed: 7\n")  # a file of that name wins
    assert load_config("fundus_sdg.yaml").seed == 7
    assert main(["train", "--config", "nonexistent"]) == 2
    _one_line_error(capsys, "nonexistent: config file not found", "folder_sdg")


def test_config_typos_get_a_suggestion_and_space_separated_set_a_hint(capsys):
    assert main(["train", "--set", "train.step=3"]) == 2
    # the typo is on the command line: the message says so instead of blaming the config file
    _one_line_error(capsys, "--set train.step: unknown config key 'train.step'; did you mean 'train.steps'?")
    assert main(["train", "--config", "fundus_sdg", "--set", "train.steps=abc"]) == 2
    assert "fundus_sdg" not in _one_line_error(capsys, "--set train.steps: config key 'train.steps'")
    assert main(["train", "--set", "train.steps", "60"]) == 2
    _one_line_error(capsys, "--set train.steps=60")
    assert build_config({}, ["data.source=hospA,hospB"]).data.source == ["hospA", "hospB"]


def test_default_run_folder_names_the_backbone():
    from vlsa.cli import default_run_dir

    a = default_run_dir(build_config({}, ["model.name=vlsa", "model.backbone.name=cnn"]))
    b = default_run_dir(build_config({}, ["model.name=vlsa", "model.backbone.name=medsam"]))
    assert a != b and "cnn" in a and "medsam" in b
    assert default_run_dir(build_config({}, ["model.name=unet"])) == "runs/fundus-unet-Domain1-s0"


def test_two_inputs_with_one_output_name_are_both_named(tmp_path):
    from vlsa.engine.predict import collect_inputs
    from vlsa.errors import DataError

    make_scans(tmp_path / "a", n=1)
    make_scans(tmp_path / "b", n=1)
    with pytest.raises(DataError, match=r"a/scan0\.png and .*b/scan0\.png would both write the output 'scan0'"):
        collect_inputs([tmp_path / "a", tmp_path / "b"])


def test_predict_writes_the_datasets_own_mask_values(folder_run, tmp_path):
    from PIL import Image

    make_scans(tmp_path / "in", n=1)
    for values, allowed in (("index", {0, 1, 2}), ("dataset", {0, 128, 255})):
        assert main(["predict", "--run", str(folder_run), "--input", str(tmp_path / "in"), "--output",
                     str(tmp_path / values), "--values", values]) == 0
        got = set(np.unique(np.asarray(Image.open(tmp_path / values / "scan0.png"))).tolist())
        assert got <= allowed and got, got
    index = np.asarray(Image.open(tmp_path / "index" / "scan0.png"))
    dataset = np.asarray(Image.open(tmp_path / "dataset" / "scan0.png"))
    assert np.array_equal(np.array([0, 128, 255])[index], dataset)


def test_diagnose_on_a_unet_does_not_claim_maps(folder_run):
    from vlsa.diagnostics.run import diagnose_run

    diagnose_run(folder_run, domains=["hospA", "hospB"], max_pixels=100, quiet=True)
    md = (folder_run / "diagnostics.md").read_text()
    assert "maps_<domain>.png" not in md and "no EM/text maps" in md
    assert not list((folder_run / "diagnostics").glob("maps_*.png"))


def test_protocol_table_records_model_budget_and_lodo_rows():
    from vlsa.engine.protocol import protocol_markdown

    metrics = {d: {"role": "target" if d == "A" else "source", "dice": {"x": 0.5, "mean": 0.5}} for d in "AB"}
    result = {"mode": "lodo", "dataset": "folder", "domains": ["A", "B"], "model": "vlsa (cnn)",
              "budget": {"steps": 60, "batch_size": 8, "lr": 0.002, "image_size": 96, "seed": 1},
              "runs": {"lodo-A": {"source": ["B"], "domains": metrics}},
              "table": {"lodo-A": {"A": 0.5, "B": 0.5, "unseen": 0.5, "unseen_x": 0.5}}}
    md = protocol_markdown(result)
    assert "Model: vlsa (cnn); budget: 60 steps, batch 8, lr 0.002, 96 px, seed 1" in md
    assert "source \\ target" not in md and "| held out (trained on the rest) \\ evaluated | A | B |" in md
    assert md.splitlines()[4].startswith("Rows: the held-out domain")
    from vlsa.engine.protocol import model_label

    # the cnn backbone is trained from scratch: no 'frozen' in its label; a frozen foundation encoder says so
    assert model_label(build_config({}, [])) == "vlsa (cnn)"
    assert model_label(build_config({}, ["model.backbone.name=medsam"])) == "vlsa (medsam, frozen)"
    assert model_label(build_config({}, ["model.name=unet"])) == "unet"


def test_overlays_show_the_worst_cases_first_at_native_resolution():
    from types import SimpleNamespace

    from vlsa.data.spec import DatasetSpec
    from vlsa.engine.evaluate import overlay_tiles

    spec = DatasetSpec("t", ("background", "a", "b"), {"a": (1,), "b": (2,)}, channels=3)
    images = [np.full((3, 30, 50), v, np.float32) for v in (0.2, 0.5, 0.8)]  # three cases, told apart by grey
    label = np.zeros((30, 50), np.int64)
    label[5:15, 5:15], label[20:25, 30:40] = 1, 2
    samples = [SimpleNamespace(group=f"c{i}", label=label, slice_index=None) for i in range(3)]
    scores = SimpleNamespace(case_ids=["c0", "c1", "c2"],
                             cases=[{"dice": {"a": d, "b": d}} for d in (0.9, 0.1, 0.5)])
    picture = overlay_tiles(images, samples, [label] * 3, spec, 2, scores)
    legend, caption, pad, h = 14, 14, 4, 30
    assert picture.shape[1] == 2 * 50 + 4  # truth | prediction at the native 50 px width
    assert picture.shape[0] == legend + 2 * (pad + caption + h)  # the two worst of three
    tops = [legend + k * (pad + caption + h) + pad + caption for k in range(2)]
    grey = [int(picture[t + 1, 48, 0]) for t in tops]  # a background pixel of each panel
    assert grey == [round(0.5 * 255), round(0.8 * 255)]  # Dice 0.1 first, then 0.5; the 0.9 case left out
    # each class has its own colour, the same in truth and prediction panels
    a_colour, b_colour = picture[tops[0] + 10, 10], picture[tops[0] + 22, 35]
    assert not np.array_equal(a_colour, b_colour)
    assert np.array_equal(picture[tops[0] + 10, 54 + 10], a_colour)


def test_fundus_mask_values_reproduce_the_dofe_mask_files(fundus_root):
    from PIL import Image

    from vlsa.data.fundus import DoFEReader
    from vlsa.engine.compat import mask_values

    reader = DoFEReader(fundus_root)
    lut = np.array(mask_values(reader))
    assert lut.tolist() == [255, 128, 0]
    sample = next(iter(reader.samples("Domain1", "train")))
    mask = np.asarray(Image.open(fundus_root / "Domain1" / "train" / "ROIs" / "mask" / f"{sample.name}.png").convert("L"))
    exact = np.isin(mask, [0, 128, 255])  # the decoded grey levels (anti-aliased edges aside)
    assert exact.mean() > 0.9 and np.array_equal(lut[sample.label][exact], mask[exact])


def test_another_datasets_reader_with_the_same_classes_is_accepted(fundus_root, tmp_path):
    """A Drishti-GS1 run scored on DoFE crops (`evaluate --data DOFE --dataset fundus`): each reader
    decodes its own mask encoding into (background, rim, cup), so the grey levels may differ; the
    same reader with other values, or other class names, is still refused."""
    from types import SimpleNamespace

    from vlsa.data.fundus import DoFEReader
    from vlsa.engine.compat import check_compatible
    from vlsa.errors import VlsaError

    reader = DoFEReader(fundus_root)
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"reader": "DrishtiReader", "mask_values": [0, 1, 2]}))
    check_compatible(run, reader.spec, reader)  # no error: same named classes, another release's encoding
    (run / "run.json").write_text(json.dumps({"reader": "DoFEReader", "mask_values": [0, 1, 2]}))
    with pytest.raises(VlsaError, match=r"values \[128, 0\].*values \[1, 2\]"):
        check_compatible(run, reader.spec, reader)  # the run's own reader with other values: another labelling
    (run / "run.json").write_text(json.dumps({"reader": "DrishtiReader", "mask_values": [0, 1, 2]}))
    other = SimpleNamespace(**{**vars(reader.spec), "label_names": ("background", "cup", "rim")})
    with pytest.raises(VlsaError, match=r"classes \['cup', 'rim'\]"):
        check_compatible(run, other, reader)


def test_verify_reports_the_bad_files_of_every_domain_before_it_stops(tmp_path, capsys):
    root = make_sites(tmp_path / "sites", per_site=6, size=32)
    for site in ("hospA", "hospC"):  # one truncated image in two sites
        path = root / site / "images" / "case03.png"
        path.write_bytes(path.read_bytes()[:40])
    assert main(["verify", "--dataset", "folder", "--root", str(root)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vlsa: error:")]
    assert any("hospA" in line and "case03.png" in line for line in err), err
    assert any("hospC" in line and "case03.png" in line for line in err), err
    assert "2 problem(s)" in err[-1] and "first bad file" in err[-1]
    assert not any("hospB" in line for line in err)
