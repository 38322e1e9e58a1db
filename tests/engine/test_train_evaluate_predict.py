import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import tiny_overrides, train_tiny_run
from vlsa.cli import main
from vlsa.config import build_config
from vlsa.engine.evaluate import evaluate_run
from vlsa.engine.runinfo import source_revision
from vlsa.engine.train import learning_rate, train


@pytest.fixture(scope="module")
def fundus_run(fundus_root, tmp_path_factory):
    return train_tiny_run(fundus_root, tmp_path_factory, "runs")


def test_run_directory_contents(fundus_run):
    for name in ("config.yaml", "run.json", "log.csv", "curves.png", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (fundus_run / name).is_file(), name
    run = json.loads((fundus_run / "run.json").read_text())
    assert run["seed"] == 0 and run["versions"]["torch"] == torch.__version__
    assert run["sources"] == ["Domain1"] and "Domain1" not in run["targets"]
    assert run["git"] == source_revision()  # this checkout's commit (None for a wheel install)
    state = torch.load(fundus_run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 6 and state["config_hash"] and state["vlsa_version"]
    assert not list(fundus_run.rglob("*.partial*"))


def test_evaluate_writes_metrics_in_the_documented_shape(fundus_run, capsys):
    metrics = evaluate_run(fundus_run)
    assert metrics["dataset"] == "fundus" and metrics["source"] == ["Domain1"]
    assert list(metrics["domains"]) == ["Domain1", "Domain2", "Domain3", "Domain4"]
    d1 = metrics["domains"]["Domain1"]
    assert d1["role"] == "source" and metrics["domains"]["Domain2"]["role"] == "target"
    assert set(d1["dice"]) == {"disc", "cup", "mean"} and set(d1["hd95"]) == {"disc", "cup", "mean"}
    assert d1["n"] == 5  # Domain1 test split of 10 images
    assert 0.0 <= d1["dice"]["mean"] <= 1.0
    on_disk = json.loads((fundus_run / "metrics.json").read_text())
    assert on_disk["domains"]["Domain3"]["dice"] == metrics["domains"]["Domain3"]["dice"]
    assert (fundus_run / "metrics.csv").read_text().startswith("domain,role,n,metric,class,value,sd")
    assert "| Domain1 | source |" in (fundus_run / "metrics.md").read_text()
    assert (fundus_run / "overlays" / "Domain2.png").is_file()
    printed = capsys.readouterr()
    assert "unseen mean" in printed.out
    # every domain here has 2-5 test cases: the user is told such means are anecdotes, in both places
    sizes = ", ".join(f"{name} (n={d['n']})" for name, d in metrics["domains"].items())
    few = f"fewer than 10 cases in {sizes}"
    assert f"vlsa: warning: {few}" in printed.err
    assert f"- F{few[1:]}" in (fundus_run / "metrics.md").read_text()


def test_predict_png_keeps_size_and_name(fundus_run, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(inputs / "eye_1.png")
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (33, 33, 3), dtype=np.uint8)).save(inputs / "eye_2.jpg")
    assert main(["predict", "--run", str(fundus_run), "--input", str(inputs), "--output", str(tmp_path / "out"), "--overlay"]) == 0
    out1 = np.asarray(Image.open(tmp_path / "out" / "eye_1.png"))
    out2 = np.asarray(Image.open(tmp_path / "out" / "eye_2.png"))
    assert out1.shape == (50, 70) and out2.shape == (33, 33)
    assert set(np.unique(out1)) <= {0, 1, 2}
    assert (tmp_path / "out" / "eye_1_overlay.png").is_file()


def test_resume_reaches_the_uninterrupted_result(fundus_root, tmp_path):
    cfg = build_config({}, tiny_overrides(fundus_root, steps=8))
    full = train(cfg, tmp_path / "full", quiet=True)
    part = train(cfg, tmp_path / "part", stop_at=3, quiet=True)
    assert torch.load(part / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    with pytest.raises(Exception, match="already holds a run"):
        train(cfg, part, quiet=True)
    # the clock continues from the last logged row (here set to 1000 s) instead of restarting at 0
    log = part / "log.csv"
    rows = log.read_text().splitlines()
    last = rows[-1].split(",")
    log.write_text("\n".join(rows[:-1] + [",".join(last[:-1] + ["1000.00"])]) + "\n")
    train(None, part, resume=True, quiet=True)
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(part / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 8
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    rows = (part / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(i) for i in range(1, 9)]
    assert all(1000 <= float(r.split(",")[-1]) < 1100 for r in rows[3:])


def test_learning_rate_schedule():
    cfg = build_config({}, ["train.steps=100", "train.warmup=10", "train.lr=0.01"]).train
    assert learning_rate(0, cfg) == pytest.approx(0.001)
    assert learning_rate(9, cfg) == pytest.approx(0.01)
    assert learning_rate(10, cfg) == pytest.approx(0.01)
    assert learning_rate(99, cfg) < 0.0001


@pytest.fixture(scope="module")
def cardiac_run(cardiac_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "cardiac"
    overrides = tiny_overrides(cardiac_root, dataset="mms", source="A") + ["data.spacing=5.0"]
    train(build_config({}, overrides), run, quiet=True)
    return run


def test_cardiac_metrics_are_per_volume(cardiac_run, cardiac_root):
    from vlsa.data.mms import MMSReader

    metrics = evaluate_run(cardiac_run, domains=["A", "B"], quiet=True)
    assert metrics["unit_of_evaluation"] == "volume" and metrics["units"] == "mm"
    # every test subject of vendor A gives 2 volumes (ED, ES)
    assert metrics["domains"]["A"]["n"] == 2 * len(MMSReader(cardiac_root).cases_of("A", "test")) > 0
    assert set(metrics["domains"]["B"]["dice"]) == {"lv", "myo", "rv", "mean"}


def test_predict_nifti_keeps_shape_and_affine(cardiac_run, cardiac_root, tmp_path):
    src = next((cardiac_root / "Training" / "Labeled").glob("B*/B*_sa.nii.gz"))
    assert main(["predict", "--run", str(cardiac_run), "--input", str(src), "--output", str(tmp_path)]) == 0
    out = nib.load(str(tmp_path / src.name))
    ref = nib.load(str(src))
    assert out.shape == ref.shape and np.allclose(out.affine, ref.affine)
    labels = np.asarray(out.dataobj)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2, 3}
    # a 3D volume with another spacing also comes back on its own grid
    vol = np.asarray(ref.dataobj)[..., 0].astype(np.float32)
    affine = np.diag([0.9, 0.9, 7.0, 1.0])
    affine[:3, 3] = [10, -5, 3]
    nib.save(nib.Nifti1Image(vol, affine), str(tmp_path / "other.nii.gz"))
    # --device auto resolves like training does (was a traceback from torch.device("auto"))
    assert main(["predict", "--run", str(cardiac_run), "--input", str(tmp_path / "other.nii.gz"),
                 "--output", str(tmp_path / "o2"), "--device", "auto"]) == 0
    out2 = nib.load(str(tmp_path / "o2" / "other.nii.gz"))
    assert out2.shape == vol.shape and np.allclose(out2.affine, affine)
