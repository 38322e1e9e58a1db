"""The README's "Use it on your data" blocks, run as written.

The commands are parsed from README.md between each block's markers and run unchanged, as a shell
would (comments dropped, `$VARIABLES` and `*` globs expanded); the only thing added is the
documented $VLSA_SET (a tiny budget and the U-Net, whose speed is all these tests need; the model
choice does not change the workflow). The real-data blocks run on a few real files linked into
tmp_path from ../shared/realdata (the `realdata` fixture skips where it is absent); nothing real is
copied into the repository."""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import shlex
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml
from PIL import Image

from tests.own_data import disc_image, make_scans, make_sites
from vlsa.cli import main
from vlsa.config import TrainConfig

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = ("train.steps=4 train.val_every=2 train.batch_size=2 train.device=cpu data.image_size=32 "
        "model.name=unet model.unet.channels=[8,16] eval.overlays=2 train.threads=1")
if "locator" in TrainConfig.model_fields:  # the whole-photo disc locator drishti_sdg trains too (issue 27)
    TINY += " train.locator.steps=2 train.locator.size=32"
BLOCKS = ("fundus", "cardiac", "own-data", "nnunet")  # every README block of commands a test runs


def block_lines(name: str) -> list[str]:
    """The shell lines of a README block (continuations joined), comments and blank lines dropped."""
    text = README.read_text()
    found = re.search(rf"<!-- {name}:start -->\s*```bash\n(.*?)```\s*<!-- {name}:end -->", text, re.S)
    assert found, f"README.md lost its {name} block"
    lines = [ln.strip() for ln in found.group(1).replace("\\\n", " ").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def readme_commands(name: str = "own-data") -> list[list[str]]:
    """The words of each `vlsa` line of a block, as a shell splits them (exports left out)."""
    out = []
    for line in block_lines(name):
        words = shlex.split(line, comments=True)
        if words[0] != "export":
            assert words[0] == "vlsa", line
            out.append(words)
    return out


def expand(words: list[str]) -> list[str]:
    """$VARIABLES and `*` globs expanded as a shell does, when the command runs (a glob may match
    files an earlier command wrote)."""
    words = [os.path.expandvars(w) for w in words]
    return [m for w in words for m in ((sorted(glob.glob(w)) or [w]) if "*" in w else [w])]


def exported(name: str) -> dict[str, str]:
    """NAME=value pairs of a block's `export` line."""
    line = next(ln for ln in block_lines(name) if ln.startswith("export "))
    return dict(word.split("=", 1) for word in shlex.split(line)[1:])


def run_block(name: str) -> str:
    """Run a block's commands in order; -> their subcommands, space-separated."""
    commands = readme_commands(name)
    for words in commands:
        argv = expand(words)
        assert main(argv[1:]) == 0, " ".join(argv)
    return " ".join(c[1] for c in commands)


def test_every_vlsa_command_in_the_readme_is_in_a_tested_block():
    text = README.read_text()
    for name in BLOCKS:
        text = re.sub(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", "", text, flags=re.S)
    assert not untested_commands(text), f"README.md shows vlsa commands no test runs: {untested_commands(text)}"


def untested_commands(text: str) -> list[str]:
    """`vlsa ...` lines inside the code fences of `text` (any language)."""
    found, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced and re.match(r"\s*(\$ )?vlsa\s", line):
            found.append(line.strip())
    return found


def test_the_untested_command_check_finds_a_command_in_any_fence():
    text = "```yaml\na: 1\n```\n\n```\nvlsa train --config x\n```\ntext vlsa verify\n```bash\n$ vlsa demo\n```\n"
    assert untested_commands(text) == ["vlsa train --config x", "$ vlsa demo"]


def test_readme_own_data_workflow_runs_as_written(tmp_path, monkeypatch, capsys):
    commands = readme_commands()
    assert [c[1] for c in commands] == ["verify", "train", "evaluate", "evaluate", "predict", "protocol"]
    make_sites(tmp_path / "mysites")
    # the README's classes.yaml, as written, is the one read
    yaml_block = re.search(r"```yaml\n(.*?)```", README.read_text(), re.S).group(1)
    (tmp_path / "mysites" / "classes.yaml").write_text(yaml_block)
    assert [c["value"] for c in yaml.safe_load(yaml_block)["classes"]] == [128, 255]
    make_scans(tmp_path / "new_scans")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VLSA_SET", TINY)
    assert run_block("own-data") == "verify train evaluate evaluate predict protocol"
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


def _nnunet_dataset(root: Path, sites=("hospA", "hospB"), per_site: int = 6) -> None:
    """A 2D nnU-Net v2 raw dataset whose case names carry the site (hospA_000 ...), no domains.csv."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for k, site in enumerate(sites):
        for i in range(per_site):
            image, mask = disc_image(rng, 40, 60 + 30 * k)
            Image.fromarray(image).save(root / "imagesTr" / f"{site}_{i:03d}_0000.png")
            labels = np.select([mask == 255, mask == 128], [2, 1], 0).astype(np.uint8)
            Image.fromarray(labels).save(root / "labelsTr" / f"{site}_{i:03d}.png")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "grey"}, "labels": {"background": 0, "disc": 1, "cup": 2},
        "numTraining": len(sites) * per_site, "file_ending": ".png"}))


def test_readme_nnunet_block_runs_as_written(tmp_path, monkeypatch, capsys):
    commands = readme_commands("nnunet")
    assert [c[1] for c in commands] == ["verify", "train"]
    root = next(c[c.index("--root") + 1] for c in commands if "--root" in c)
    _nnunet_dataset(tmp_path / root)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VLSA_SET", TINY)
    run_block("nnunet")
    out = capsys.readouterr().out
    assert re.search(r"hospA train\s+5 images", out) and "hospB can be: source or target" in out
    info = json.loads((tmp_path / "runs" / "nnunet" / "run.json").read_text())
    assert info["sources"] == ["hospA"] and info["targets"] == ["hospB"]
    assert (tmp_path / "runs" / "nnunet" / "checkpoints" / "best.pt").is_file()


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def drishti_subset(real: Path, out: Path, per_split: int = 3) -> Path:
    """A few Drishti-GS1 photographs with their ground truth, linked (not copied) from the real copy."""
    for split in ("Training", "Test"):
        for image in sorted((real / split / "Images").iterdir())[:per_split]:
            _link(image, out / split / "Images" / image.name)
            _link(real / split / "GT" / image.stem, out / split / "GT" / image.stem)
    return out


def acdc_subset(real: Path, out: Path, train: int = 3, test: int = 2) -> Path:
    """A few ACDC patients of the SSL4MIS copy (their h5 files linked) with lists naming only them."""
    lists = {name: (real / f"{name}.list").read_text().split() for name in ("train", "val", "test")}
    keep = {"train": list(dict.fromkeys(re.match(r"patient\d+", n)[0] for n in lists["train"]))[:train],
            "test": list(dict.fromkeys(re.match(r"patient\d+", n)[0] for n in lists["test"]))[:test]}
    for patient in keep["train"] + keep["test"]:
        for h5 in (real / "data").glob(f"{patient}_*.h5"):
            _link(h5, out / "data" / h5.name)
    for name, patients in (("train", keep["train"]), ("val", []), ("test", keep["test"])):
        (out / f"{name}.list").write_text("".join(f"{n}\n" for n in lists[name]
                                                  if re.match(r"patient\d+", n)[0] in patients))
    return out


def test_readme_fundus_block_runs_as_written(realdata, tmp_path, monkeypatch, capsys):
    names = exported("fundus")
    assert set(names) == {"DRISHTI", "DOFE"} and names["DRISHTI"].endswith("drishti-gs1")
    assert names["DOFE"].endswith("dofe-samples")  # the shared copies' names, as the README says
    monkeypatch.setenv("DRISHTI", str(drishti_subset(realdata / "drishti-gs1", tmp_path / "drishti")))
    monkeypatch.setenv("DOFE", str(realdata / "dofe-samples"))  # 8 crops: small as it is
    monkeypatch.setenv("VLSA_SET", TINY)
    monkeypatch.chdir(tmp_path)
    assert run_block("fundus") == "verify verify train evaluate predict predict train"
    out = capsys.readouterr().out
    assert re.search(r"DrishtiGS1 train\s+3 images", out) and re.search(r"Domain4 test\s+1 images", out)
    metrics = json.loads((tmp_path / "runs" / "drishti" / "metrics.json").read_text())
    assert list(metrics["domains"]) == ["DrishtiGS1", "dofe/Domain2", "dofe/Domain3", "dofe/Domain4"]
    assert metrics["domains"]["dofe/Domain2"]["role"] == "target" and (tmp_path / "runs/drishti/report.html").is_file()
    # the comment's promise: vCDR against the experts in metrics.md (ROI and whole photo, through the locator)
    md = (tmp_path / "runs" / "drishti" / "metrics.md").read_text()
    assert "## Vertical cup-to-disc ratio" in md and "| whole photo | DrishtiGS1 |" in md
    crop = next((realdata / "dofe-samples" / "Domain2" / "test" / "ROIs" / "image").iterdir())
    label = np.asarray(Image.open(tmp_path / "outputs" / "fundus" / crop.name))
    assert label.shape == np.asarray(Image.open(crop)).shape[:2] and set(np.unique(label)) <= {0, 1, 2}
    assert (tmp_path / "outputs" / "fundus" / f"{crop.stem}_overlay.png").is_file()
    assert json.loads((tmp_path / "runs" / "dofe" / "run.json").read_text())["sources"] == ["Domain1"]
    # whole photographs through the locator: a label map of the photo's size and one measures.csv row each
    rows = list(csv.DictReader(open(tmp_path / "outputs" / "photos" / "measures.csv")))
    photos = sorted((tmp_path / "drishti" / "Test" / "Images").iterdir())
    assert [r["image"] for r in rows] == [p.name for p in photos] and "vcdr" in rows[0]
    assert np.asarray(Image.open(tmp_path / "outputs" / "photos" / f"{photos[0].stem}.png")).shape == \
        np.asarray(Image.open(photos[0])).shape[:2]


def test_readme_cardiac_block_runs_as_written(realdata, tmp_path, monkeypatch, capsys):
    assert set(exported("cardiac")) == {"ACDC", "SUNNYBROOK"}
    monkeypatch.setenv("ACDC", str(acdc_subset(realdata / "acdc-ssl4mis", tmp_path / "acdc")))
    monkeypatch.setenv("SUNNYBROOK", str(realdata / "sunnybrook-scd"))  # 5 patients: small as it is
    monkeypatch.setenv("VLSA_SET", TINY)
    monkeypatch.chdir(tmp_path)
    assert run_block("cardiac") == "verify verify train evaluate synth predict predict"
    out = capsys.readouterr().out
    assert re.search(r"ACDC test\s+\d+ images\s+4 units", out)  # 2 test patients x (ED, ES)
    metrics = json.loads((tmp_path / "runs" / "acdc" / "metrics.json").read_text())
    sunny = metrics["domains"]["sunnybrook/Sunnybrook"]
    assert sunny["role"] == "target" and sunny["dice"]["rv"] == "not annotated"
    volumes = sorted(glob.glob(str(tmp_path / "data/synth_cardiac/Training/Labeled/*/*_sa.nii.gz")))
    assert len(volumes) == 4  # one subject per vendor
    for volume in volumes:
        source, written = nib.load(volume), nib.load(tmp_path / "outputs" / "cardiac" / Path(volume).name)
        assert written.shape == source.shape and np.allclose(written.affine, source.affine)
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2, 3}
    dicom = tmp_path / "outputs" / "dicom"
    assert sorted(p.name for p in dicom.glob("*.seg.dcm")) and (dicom / "clinical.csv").is_file()
    row = next(csv.DictReader(open(dicom / "clinical.csv")))
    assert row["subject"].startswith("SCD0000101") and row["lv_ef_pred"] != ""
