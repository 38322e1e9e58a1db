"""Every volumetric reader scores on the original annotation grid (issue 30, row 3).

The same volumes are written in each reader's layout; a prediction that is perfect on the grid
resampled to `data.spacing` must get the same Dice / HD95 from every reader: the ones of the
original-grid scoring (`volume_planes` keeps the annotation as annotated), not the 1.000 / 0 mm a
reader scoring against its own resampled label would report. A new volumetric reader adds its
writer to WRITERS (layout on disk -> (dataset name, domain)).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from vlsa.data.domains import open_reader
from vlsa.engine.geometry import labels_to_original
from vlsa.engine.inference import score

ZOOMS = (1.25, 1.25, 8.0)  # mm; read at SPACING, so every plane is resampled
SPACING = 1.67
CODES = ("A0X1Y2", "A3Z4W5")
NAMES = ("lv", "myo", "rv")


def _heart(shape=(41, 37, 3), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """An x, y, z image and its label (1 LV disc, 2 MYO ring, 3 RV blob), off-centre so that
    resampling moves boundaries."""
    rng = np.random.default_rng(seed)
    x, y = np.mgrid[: shape[0], : shape[1]]
    label = np.zeros(shape, np.uint8)
    for z in range(shape[2]):
        r = np.hypot(x - 18.3 - z, y - 17.6)
        label[..., z][r < 11.2] = 2
        label[..., z][r < 6.7 + z] = 1
        label[..., z][(np.hypot(x - 20.5, y - 29.4) < 5.3) & (label[..., z] == 0)] = 3
    image = (label * 60 + rng.normal(0, 5, shape) + 20).astype(np.float32)
    return image, label


def _volumes() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """volume id -> (image, label): ED and ES of each case."""
    out = {}
    for i, code in enumerate(CODES):
        for k, phase in enumerate(("ED", "ES")):
            out[f"{code}_{phase}"] = _heart(seed=2 * i + k)
    return out


def _nifti(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, np.diag([*ZOOMS[: min(3, data.ndim)], *([1.0] * (3 - min(3, data.ndim))), 1.0]))
    img.header.set_zooms((*ZOOMS, 1.0)[: data.ndim])
    nib.save(img, str(path))


def write_mms(root):
    rows = [",External code,VendorName,Vendor,Centre,ED,ES"]
    vols = _volumes()
    for i, code in enumerate(CODES):
        (ed_img, ed_lab), (es_img, es_lab) = vols[f"{code}_ED"], vols[f"{code}_ES"]
        case = root / "Training" / "Labeled" / code
        _nifti(case / f"{code}_sa.nii.gz", np.stack([ed_img, es_img], axis=-1))
        _nifti(case / f"{code}_sa_gt.nii.gz", np.stack([ed_lab, es_lab], axis=-1))
        rows.append(f"{i},{code},Siemens,A,1,0,1")
    (root / "info.csv").write_text("\n".join(rows) + "\n")
    return "mms", "A"


def write_nnunet(root):
    vols = _volumes()
    for case, (image, label) in vols.items():
        _nifti(root / "imagesTr" / f"{case}_0000.nii.gz", image)
        _nifti(root / "labelsTr" / f"{case}.nii.gz", label)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "cine"}, "labels": {"background": 0, **{n: i + 1 for i, n in enumerate(NAMES)}},
        "numTraining": len(vols), "file_ending": ".nii.gz"}))
    (root / "domains.csv").write_text("case,domain,split,subject\n" + "".join(
        f"{case},A,train,{case.split('_')[0]}\n" for case in vols))
    return "nnunet", "A"


def write_folder(root):
    (root / "classes.yaml").write_text("channels: 1\nclasses:\n" + "".join(
        f"  - name: {n}\n    value: {i + 1}\n" for i, n in enumerate(NAMES)))
    for case, (image, label) in _volumes().items():
        _nifti(root / "A" / "images" / f"{case}.nii.gz", image)
        _nifti(root / "A" / "masks" / f"{case}.nii.gz", label)
    return "folder", "A"


def write_acdc(root):
    """ACDC's official NIfTI release: patientNNN/patientNNN_frameXX[_gt].nii.gz + Info.cfg, labels in
    ACDC's order (1 RV, 2 MYO, 3 LV; the reader maps them to vlsa's 1 LV, 3 RV)."""
    acdc_order = np.array([0, 3, 2, 1], np.uint8)  # vlsa index -> ACDC label
    vols = _volumes()
    for i, code in enumerate(CODES):
        case = root / "training" / f"patient{i + 1:03d}"
        case.mkdir(parents=True)
        (case / "Info.cfg").write_text("ED: 1\nES: 2\nGroup: NOR\nHeight: 170.0\nNbFrame: 2\nWeight: 70.0\n")
        for frame, phase in ((1, "ED"), (2, "ES")):
            image, label = vols[f"{code}_{phase}"]
            _nifti(case / f"patient{i + 1:03d}_frame{frame:02d}.nii.gz", image)
            _nifti(case / f"patient{i + 1:03d}_frame{frame:02d}_gt.nii.gz", acdc_order[label])
    return "acdc", "ACDC"


WRITERS = {"mms": write_mms, "nnunet": write_nnunet, "folder": write_folder, "acdc": write_acdc}


def _scores(root, writer) -> dict:
    dataset, domain = writer(root)
    reader = open_reader(dataset, root, spacing=SPACING, test_fraction=0.0)
    samples = list(reader.samples(domain, "train"))
    assert len({s.group for s in samples}) == len(_volumes())  # each reader names its volumes its own way
    # perfect on the resampled grid, mapped back to the annotation's grid as evaluation maps predictions
    preds = [labels_to_original(s.label, reader.spec.num_classes, s.original_shape) for s in samples]
    return score(SimpleNamespace(samples=samples), preds, reader.spec).aggregate()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _scores(tmp_path_factory.mktemp("mms"), write_mms)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_volumetric_reader_scores_on_the_original_grid(name, reference, tmp_path):
    got = _scores(tmp_path, WRITERS[name])
    assert got["n"] == reference["n"] == 4
    # the original-grid numbers: resampling to 1.67 mm and back loses boundary voxels
    assert reference["dice"]["mean"] < 0.995 and reference["hd95"]["mean"] > 0.5
    for metric in ("dice", "hd95"):
        for key in (*NAMES, "mean"):
            assert got[metric][key] == pytest.approx(reference[metric][key], abs=1e-9), (name, metric, key)
