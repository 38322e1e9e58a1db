"""vlsa export nnunet: the synthetic sets written in nnU-Net v2 raw format read back to the same samples."""

import json

import numpy as np
import pytest

from vlsa.cli import main
from vlsa.data.domains import open_reader
from vlsa.data.export_nnunet import export_nnunet
from vlsa.data.nnunet import NNUNetReader
from vlsa.errors import VlsaError


def _same_samples(original, exported, domain, split):
    a, b = list(original.samples(domain, split)), list(exported.samples(domain, split))
    assert [s.name for s in a] == [s.name for s in b] and a
    for x, y in zip(a, b):
        assert x.image.dtype == y.image.dtype and np.array_equal(x.image, y.image), x.name
        assert np.array_equal(x.label, y.label), x.name
        assert (x.domain, x.case_id, x.volume_id, x.slice_index) == (y.domain, y.case_id, y.volume_id, y.slice_index)
        assert np.allclose(x.spacing, y.spacing, rtol=1e-6)  # NIfTI headers hold float32 voxel sizes
        assert x.slice_thickness == pytest.approx(y.slice_thickness, rel=1e-6)
    return len(a)


def test_fundus_round_trip(fundus_root, tmp_path):
    original = open_reader("fundus", fundus_root)
    out = tmp_path / "Dataset501_Fundus"
    assert main(["export", "nnunet", "--dataset", "fundus", "--root", str(fundus_root), "--out", str(out)]) == 0
    doc = json.loads((out / "dataset.json").read_text())
    assert doc["channel_names"] == {"0": "R", "1": "G", "2": "B"} and doc["file_ending"] == ".png"
    assert doc["labels"] == {"background": 0, "rim": 1, "cup": 2}
    assert doc["numTraining"] == len(list((out / "labelsTr").iterdir())) == 40
    exported = NNUNetReader(out)
    assert exported.domains() == original.domains()
    assert exported.spec.regions == original.spec.regions and exported.spec.descriptions == original.spec.descriptions
    n = sum(_same_samples(original, exported, d, s) for d in original.domains() for s in ("train", "test"))
    assert n == 40


def test_cardiac_round_trip_keeps_volumes_and_subjects(cardiac_root, tmp_path):
    original = open_reader("mms", cardiac_root, spacing=1.67)
    out = export_nnunet(original, tmp_path / "Dataset502_Cardiac", domains=["A", "C"]).out
    exported = NNUNetReader(out)
    assert exported.domains() == ["A", "C"] and exported.spec.volumetric
    assert exported.spec.label_names == ("background", "lv", "myo", "rv")
    for d in ("A", "C"):
        for split in ("train", "test"):
            _same_samples(original, exported, d, split)
    rows = (out / "domains.csv").read_text().splitlines()
    assert rows[0] == "case,domain,split,subject" and rows[1].split(",")[0] == rows[1].split(",")[3] + "_ED"


def test_export_refuses_bad_out_and_leaves_nothing(fundus_root, tmp_path):
    reader = open_reader("fundus", fundus_root)
    with pytest.raises(VlsaError, match=r"must be named DatasetXXX_Name"):
        export_nnunet(reader, tmp_path / "fundus_nnunet")
    (tmp_path / "Dataset001_X").mkdir()
    with pytest.raises(VlsaError, match=r"Dataset001_X: already exists"):
        export_nnunet(reader, tmp_path / "Dataset001_X")
    with pytest.raises(VlsaError, match=r"unknown export domain"):
        export_nnunet(reader, tmp_path / "Dataset002_X", domains=["Nowhere"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset001_X"]  # no partial folder left


def test_cli_export_bad_out_is_one_line_exit_2(fundus_root, tmp_path, capsys):
    code = main(["export", "nnunet", "--dataset", "fundus", "--root", str(fundus_root), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("vlsa: error: ") and "DatasetXXX_Name" in err and "\n" not in err
    assert not list(tmp_path.iterdir())
