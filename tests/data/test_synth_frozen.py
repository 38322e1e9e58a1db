"""The synthetic benchmark is frozen: a small `vlsa synth` output must keep its exact content.

The digest covers every file's path and decoded content (pixel arrays of PNGs, voxel arrays and
affines of NIfTI volumes, bytes of other files), so it does not depend on the PNG / gzip encoder
version but changes with any change to the generators, their seeds or their splits.
If this test fails, the generators changed: the DG benchmark numbers are no longer comparable.
"""

import hashlib

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from vlsa.data.synth import generate

FROZEN = {
    ("fundus", 4, 48): "e671e6646db400746e33f27887772b882b4b6bc6faabaf41ca980c2e84b3ab51",
    ("cardiac", 1, 48): "498ebe33fc787e01a90ebe0d996abf38a778861dd3e66f2df84a26cf94fb5bc2",
}


def content_digest(root) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        h.update(str(p.relative_to(root)).encode() + b"\0")
        if p.suffix == ".png":
            a = np.asarray(Image.open(p))
            h.update(str((a.shape, a.dtype.str)).encode() + a.tobytes())
        elif p.name.endswith((".nii", ".nii.gz")):
            img = nib.load(p)
            a = np.asarray(img.dataobj)
            h.update(str((a.shape, a.dtype.str)).encode() + a.tobytes() + np.asarray(img.affine, np.float64).tobytes())
        else:
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("kind,count,size", list(FROZEN))
def test_synth_output_is_frozen(kind, count, size, tmp_path):
    root = generate(kind, tmp_path / kind, count, size, 0)
    assert content_digest(root) == FROZEN[(kind, count, size)]
