import json

from tests.conftest import tiny_overrides
from tests.engine.test_vlsa_engine import VLSA_TINY
from vlsa.cli import main
from vlsa.config import build_config
from vlsa.engine.train import train


def test_diagnose_on_a_tiny_vlsa_run(fundus_root, tmp_path, capsys):
    cfg = build_config({}, tiny_overrides(fundus_root) + VLSA_TINY + ["model.backbone.name=cnn"])
    run = train(cfg, tmp_path / "run", quiet=True)
    assert main(["diagnose", "--run", str(run), "--domains", "Domain1", "Domain3", "--max-pixels", "300"]) == 0
    result = json.loads((run / "diagnostics.json").read_text())
    assert set(result["levels"]) == {"before_em", "after_em", "pixel_embeddings"}
    d3 = result["levels"]["after_em"]["Domain3"]
    assert d3["role"] == "target" and set(d3["centroid_shift"]) <= {"background", "rim", "cup"}
    assert d3["dispersion_mean"] > 0 and -1 <= d3["silhouette"] <= 1
    assert "centroid_shift" not in result["levels"]["after_em"]["Domain1"]
    own = result["text_alignment"]["Domain1"]["nearest_own"]
    assert all(0 <= v <= 1 for v in own.values())
    for png in ("tsne.png", "maps_Domain1.png", "maps_Domain3.png"):
        assert (run / "diagnostics" / png).stat().st_size > 1000
    assert "dispersion ratio" in (run / "diagnostics.md").read_text()


def test_diagnose_on_a_unet_run(fundus_root, tmp_path):
    run = train(build_config({}, tiny_overrides(fundus_root)), tmp_path / "unet", quiet=True)
    assert main(["diagnose", "--run", str(run), "--domains", "Domain1", "Domain2", "--max-pixels", "200"]) == 0
    result = json.loads((run / "diagnostics.json").read_text())
    assert list(result["levels"]) == ["decoder"] and "text_alignment" not in result
