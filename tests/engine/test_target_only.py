"""Issue 25 row 3: a domain used only as a target (test cases only, as an unseen scanner in an
nnU-Net dataset) needs no train cases in `vlsa verify`, `vlsa train` and `vlsa protocol` alike;
verify says which domains can be sources and fails only when nothing is readable or a requested
source has no train cases."""

import json

import numpy as np
import pytest
from PIL import Image

from vlsa.cli import main
from vlsa.config import build_config
from vlsa.engine.protocol import run_protocol
from vlsa.errors import DataError

# case -> (domain, split): hospital A has train and test cases, the scanner "unseen" test cases only
CASES = {**{f"hospA_{i:03d}": ("hospA", "train" if i < 4 else "test") for i in range(6)},
         "unseen_001": ("unseen", "test"), "unseen_002": ("unseen", "test")}


def nnunet_dataset(root, cases=CASES):
    """A 2D nnU-Net v2 raw dataset (one grey channel, 16 x 16 PNGs, labels 0/1/2) with domains.csv."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for i, case in enumerate(cases):
        label = np.zeros((16, 16), np.uint8)
        label[3:12, 4:13] = 1
        label[6:9, 7:10] = 2
        image = (rng.normal(60, 10, (16, 16)) + 100 * (label > 0) + 5 * i).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "imagesTr" / f"{case}_0000.png")
        Image.fromarray(label).save(root / "labelsTr" / f"{case}.png")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "grey"}, "labels": {
        "background": 0, "organ": 1, "core": 2}, "numTraining": len(cases), "file_ending": ".png"}))
    rows = "".join(f"{case},{domain},{split}\n" for case, (domain, split) in cases.items())
    (root / "domains.csv").write_text("case,domain,split\n" + rows)
    return root


def tiny(root, source="hospA", steps=2):
    return ["data.dataset=nnunet", f"data.root={root}", f"data.source={source}", "data.image_size=16",
            f"train.steps={steps}", "train.batch_size=2", "train.val_every=2", "model.name=unet",
            "model.unet.channels=[8,16]", "eval.overlays=0", "train.device=cpu", "eval.postprocess=off"]


def test_verify_accepts_a_target_only_domain_and_says_which_can_be_sources(tmp_path, capsys):
    root = nnunet_dataset(tmp_path / "Dataset900_Sites")
    assert main(["verify", "--dataset", "nnunet", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "unseen train     0 images     0 units  [no cases]" in out
    assert "unseen can be: target only (no train cases)" in out
    assert "hospA can be: source or target" in out and out.rstrip().endswith("passed the integrity check")
    # a source that has no train cases is an error, one line naming it
    assert main(["verify", "--dataset", "nnunet", "--root", str(root), "--source", "unseen"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vlsa: error: ") and "source domain(s) ['unseen'] have no train cases" in err
    assert "\n" not in err and "(domains with train cases: ['hospA'])" in err


def test_verify_fails_when_nothing_is_readable(tmp_path):
    from vlsa.data.integrity import verify
    from vlsa.data.nnunet import NNUNetReader

    root = nnunet_dataset(tmp_path / "Dataset901_Empty", {"a_001": ("siteA", "train")})
    reader = NNUNetReader(root)
    assert [s.images for s in verify(reader, ["siteA"], allow_empty=("train", "test"))] == [1, 0]
    with pytest.raises(DataError, match="empty domain: domain 'siteA' has no test cases"):  # a required split
        verify(reader, ["siteA"], splits=("test",))
    with pytest.raises(DataError, match=r"empty domain: no samples in any of \['siteA'\] \(test\)"):
        verify(reader, ["siteA"], splits=("test",), allow_empty=("test",))


def test_train_and_protocol_take_a_target_only_domain_as_a_target_only(tmp_path):
    root = nnunet_dataset(tmp_path / "Dataset900_Sites")
    cfg = build_config({}, tiny(root))
    result = run_protocol(cfg, "single-source", tmp_path / "protocol", quiet=True)
    assert list(result["runs"]) == ["hospA"]  # no run trained on the target-only domain
    assert result["domains"] == ["hospA", "unseen"]
    metrics = result["runs"]["hospA"]
    assert metrics["domains"]["unseen"]["role"] == "target" and metrics["domains"]["unseen"]["n"] == 2
    assert result["table"]["hospA"]["unseen"] == metrics["domains"]["unseen"]["dice"]["mean"]
    run = json.loads((tmp_path / "protocol" / "hospA" / "run.json").read_text())
    assert run["sources"] == ["hospA"] and run["targets"] == ["unseen"]
    # lodo: holding out hospA leaves only the target-only domain, which cannot be trained on
    with pytest.raises(DataError, match=r"lodo: holding out hospA leaves no source with train cases"):
        run_protocol(cfg, "lodo", tmp_path / "lodo", quiet=True)
    assert not (tmp_path / "lodo").exists()


def test_a_protocol_evaluates_the_target_datasets_of_a_one_domain_dataset(tmp_path):
    source = nnunet_dataset(tmp_path / "Dataset902_One", {f"a_{i:03d}": ("hospA", "train" if i < 4 else "test")
                                                          for i in range(6)})
    other = nnunet_dataset(tmp_path / "Dataset903_Other")
    cfg = build_config({"data": {"target_datasets": {"other": {"dataset": "nnunet", "root": str(other),
                                                               "domains": ["unseen"]}}}}, tiny(source))
    result = run_protocol(cfg, "single-source", tmp_path / "protocol", quiet=True)
    assert list(result["runs"]) == ["hospA"] and result["domains"] == ["hospA", "other/unseen"]
    row = result["table"]["hospA"]
    assert row["unseen"] == row["other/unseen"] == result["runs"]["hospA"]["domains"]["other/unseen"]["dice"]["mean"]
    md = (tmp_path / "protocol" / "protocol.md").read_text()
    assert "| source \\ target | hospA | other/unseen | unseen mean |" in md
    assert result["target_datasets"]["other"]["root"] == str(other.resolve())
    # read back, not retrained, on a rerun
    before = (tmp_path / "protocol" / "hospA" / "checkpoints" / "last.pt").stat().st_mtime_ns
    run_protocol(cfg, "single-source", tmp_path / "protocol", quiet=True)
    assert (tmp_path / "protocol" / "hospA" / "checkpoints" / "last.pt").stat().st_mtime_ns == before


def test_a_dofe_domain_without_a_train_folder_is_target_only(fundus_root, tmp_path, capsys):
    import shutil

    root = tmp_path / "dofe"
    shutil.copytree(fundus_root, root)
    shutil.rmtree(root / "Domain4" / "train")
    assert main(["verify", "--dataset", "fundus", "--root", str(root)]) == 0
    assert "Domain4 can be: target only (no train cases)" in capsys.readouterr().out
    shutil.rmtree(root / "Domain3" / "train" / "ROIs" / "image")  # a split folder without its images: an error
    assert main(["verify", "--dataset", "fundus", "--root", str(root)]) == 2
    assert "Domain3/train/ROIs/image: folder not found" in capsys.readouterr().err
