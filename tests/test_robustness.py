"""The bad-input table: what a user sees for each bad input (exit status 2, one line, nothing
half-written), reader fuzzing, interruption and untrusted checkpoints."""

import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import tiny_overrides
from tests.data.test_mms import _case, _csv
from vlsa.data.folder import FolderReader
from vlsa.errors import DataError


def vlsa(*args):
    """Run the command line in-process (the subprocess path is covered by tests/test_cli.py)."""
    import contextlib
    import io

    from vlsa.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, err.getvalue().strip()


def _dofe(root, n=2, mask_shape=(16, 16), image_bytes=None, with_mask=True):
    for domain, split in (("Domain1", "train"), ("Domain1", "test"), ("Domain2", "train"), ("Domain2", "test")):
        base = root / domain / split / "ROIs"
        (base / "image").mkdir(parents=True, exist_ok=True)
        (base / "mask").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(base / "image" / f"a{i}.png")
            if with_mask:
                Image.fromarray(np.full(mask_shape, 255, np.uint8)).save(base / "mask" / f"a{i}.png")
        if image_bytes is not None:
            (base / "image" / "a0.png").write_bytes(image_bytes)
    return root


def _mms(root, mutate=None):
    _case(root, "A1B2C3")
    _case(root, "A2B2C3")
    _csv(root, [("A1B2C3", "Siemens", "A", 1, 1, 3), ("A2B2C3", "Siemens", "A", 1, 1, 3)])
    if mutate:
        mutate(root / "Training" / "Labeled" / "A1B2C3" / "A1B2C3_sa.nii.gz")
    return root


def _truncate(path):
    path.write_bytes(path.read_bytes()[:300])


def _make_3d(path):
    nib.save(nib.Nifti1Image(np.zeros((20, 24, 3), np.float32), np.eye(4)), str(path))


def _nan(path):
    nib.save(nib.Nifti1Image(np.full((20, 24, 3, 5), np.inf, np.float32), np.eye(4)), str(path))


def _zero_size(path):
    nib.save(nib.Nifti1Image(np.zeros((0, 24, 3, 5), np.float32), np.eye(4)), str(path))


def _folder_bad_values(root):
    root.mkdir(parents=True)
    (root / "classes.yaml").write_text("classes:\n  - {name: lesion, value: 255}\n")
    for d in ("s1", "s2"):
        (root / d / "images").mkdir(parents=True)
        (root / d / "masks").mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / d / "images" / f"i{i}.png")
            Image.fromarray(np.full((8, 8), 7, np.uint8)).save(root / d / "masks" / f"i{i}.png")
    return root


BAD_DATA = {
    # case: (dataset, builder, expected message)
    "missing root": ("fundus", lambda r: r / "nope", "nope: dataset root not found"),
    "empty domain": ("fundus", lambda r: _dofe(r, n=0), "empty domain: no images for Domain1/test"),
    "image without mask": ("fundus", lambda r: _dofe(r, with_mask=False), "a0.png: image has no mask in"),
    "mask of another size": ("fundus", lambda r: _dofe(r, mask_shape=(16, 12)), "mask size 12x16 differs from image size 16x16"),
    "unknown mask values": ("folder", _folder_bad_values, "mask values [7] not in classes.yaml"),
    "corrupt PNG": ("fundus", lambda r: _dofe(r, image_bytes=b"\x89PNG\r\n\x1a\n garbage"), "a0.png: cannot read image"),
    "zero-size image file": ("fundus", lambda r: _dofe(r, image_bytes=b""), "a0.png: cannot read image"),
    "truncated NIfTI": ("mms", lambda r: _mms(r, _truncate), "A1B2C3_sa.nii.gz: corrupt or truncated NIfTI"),
    "3D where 4D expected": ("mms", lambda r: _mms(r, _make_3d), "expected a 4D (x, y, z, t) volume, got 3D"),
    "NaN/Inf voxels": ("mms", lambda r: _mms(r, _nan), "A1B2C3_sa.nii.gz: NIfTI contains NaN or Inf values"),
    "zero-size NIfTI": ("mms", lambda r: _mms(r, _zero_size), "A1B2C3_sa.nii.gz: NIfTI has zero size"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_table(case, tmp_path):
    dataset, build, message = BAD_DATA[case]
    root = build(tmp_path / "data")
    out = tmp_path / "run"
    code, err = vlsa("train", "--set", f"data.dataset={dataset}", "--set", f"data.root={root}",
                     "--set", f"data.source={'A' if dataset == 'mms' else ('s1' if dataset == 'folder' else 'Domain1')}",
                     "--set", "train.steps=1", "--out", out)
    assert code == 2, err
    assert err.startswith("vlsa: error: ") and err.count("\n") == 0 and "Traceback" not in err
    assert message in err, err
    assert not out.exists() or not any(out.rglob("*"))  # nothing half-written


def _trained(tmp_path, fundus_root, *extra):
    args = [a for o in tiny_overrides(fundus_root, steps=2) + list(extra) for a in ("--set", o)]
    code, err = vlsa("train", *args, "--out", tmp_path / "run")
    assert code == 0, err
    return tmp_path / "run"


def test_bad_config_and_checkpoint_table(fundus_root, tmp_path):
    run = _trained(tmp_path, fundus_root)
    cases = {
        "unknown config key": (["train", "--set", "model.backbone.nmae=cnn"], "unknown config key 'model.backbone.nmae'"),
        "wrong type": (["train", "--set", "train.lr=fast"], "config key 'train.lr': Input should be a valid number"),
        "non-existent checkpoint": (["evaluate", "--run", tmp_path], "checkpoints/best.pt: checkpoint not found"),
        "output under a file": (["train", "--set", f"data.root={fundus_root}", "--out", run / "config.yaml" / "x"],
                                "cannot create the run directory"),
    }
    for name, (args, message) in cases.items():
        code, err = vlsa(*args)
        assert code == 2 and err.count("\n") == 0 and message in err, (name, err)
    # a checkpoint of another model configuration
    other = tmp_path / "other"
    code, _ = vlsa("train", *[a for o in tiny_overrides(fundus_root, steps=1) + ["model.unet.channels=[4,8]"]
                              for a in ("--set", o)], "--out", other)
    assert code == 0
    (run / "checkpoints" / "best.pt").write_bytes((other / "checkpoints" / "best.pt").read_bytes())
    code, err = vlsa("evaluate", "--run", run)
    assert code == 2 and "checkpoint was made for another model configuration" in err and err.count("\n") == 0


def test_pickled_checkpoint_is_refused(fundus_root, tmp_path):
    run = _trained(tmp_path, fundus_root)
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    state["extra"] = {"payload": BadPayload()}
    torch.save(state, run / "checkpoints" / "best.pt")
    code, err = vlsa("predict", "--run", run, "--input", run / "curves.png", "--output", tmp_path / "out")
    assert code == 2 and "refused, the checkpoint carries pickled objects" in err and err.count("\n") == 0
    assert not (tmp_path / "out").exists()
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["config_hash"] and state["vlsa_version"]  # provenance recorded in every checkpoint


class BadPayload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(1, 40), w=st.integers(1, 40), mask_h=st.integers(1, 40),
       values=st.lists(st.integers(0, 255), min_size=1, max_size=4), sixteen=st.booleans())
def test_folder_reader_fuzz(tmp_path_factory, h, w, mask_h, values, sixteen):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "classes.yaml").write_text("classes:\n  - {name: a, value: 255}\n  - {name: b, value: 128}\n")
    (root / "d" / "images").mkdir(parents=True)
    (root / "d" / "masks").mkdir(parents=True)
    rng = np.random.default_rng(h * 41 + w)
    img = rng.integers(0, 65535 if sixteen else 255, (h, w)).astype(np.uint16 if sixteen else np.uint8)
    Image.fromarray(img).save(root / "d" / "images" / "x.png")
    mask = rng.choice(values, size=(mask_h, w)).astype(np.uint8)
    Image.fromarray(mask).save(root / "d" / "masks" / "x.png")
    try:
        reader = FolderReader(root, test_fraction=0.5)
        samples = list(reader.samples("d", "train")) + list(reader.samples("d", "test"))
    except DataError as exc:
        assert "\n" not in str(exc)
        return
    (s,) = samples
    assert s.image.shape == (1, h, w) and np.isfinite(s.image).all()
    assert set(np.unique(s.label)) <= {0, 1, 2} and mask_h == h and set(values) <= {0, 128, 255}


def _wait_for(path, proc, timeout=120):
    start = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() - start < timeout
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_interrupted_training_resumes_to_the_uninterrupted_result(fundus_root, tmp_path, sig):
    overrides = tiny_overrides(fundus_root, steps=150) + ["train.val_every=10", "train.log_every=10", "train.threads=1"]
    args = [a for o in overrides for a in ("--set", o)]
    ref = tmp_path / "ref"
    assert vlsa("train", *args, "--out", ref)[0] == 0
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "vlsa", "train", *args, "--out", str(run)],
                            stderr=subprocess.PIPE, text=True)
    _wait_for(run / "checkpoints" / "last.pt", proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    stopped = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"]
    if sig in (signal.SIGTERM, signal.SIGINT):  # last.pt saved, exit 128 + signal, the resume command shown
        err = proc.stderr.read()
        assert proc.returncode == 128 + sig and f"stopped by {sig.name} at step" in err and "--resume" in err
    assert 0 < stopped < 150
    if sig != signal.SIGKILL:  # a graceful stop finishes its writes; a kill may leave a temp file behind
        assert not list(run.rglob("*.partial*"))
    else:  # what a kill during an atomic write leaves (made certain here, the kill's timing is not)
        (run / ".log.csv.99999.partial.csv").write_text("step,loss\n")
    assert vlsa("train", "--resume", "--out", run)[0] == 0
    assert not list(run.rglob("*.partial*"))  # the resume clears what a killed process left
    a = torch.load(ref / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 150
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
