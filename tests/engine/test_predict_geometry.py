"""`vlsa predict` on NIfTI: an oracle model (its logits are the image itself) shows that the label
volume comes back on the input's own grid, the right way round (a flipped or transposed output
would fail), with and without in-plane resampling to `data.spacing`."""

import nibabel as nib
import numpy as np
import pytest
import torch

from vlsa.config import build_config
from vlsa.data.spec import CARDIAC
from vlsa.engine.predict import Predictor
from vlsa.metrics import region_metrics


class Oracle(torch.nn.Module):
    """B x 1 x S x S z-scored image -> B x 4 x S x S logits: class 1 where the image is bright."""

    def forward(self, x):
        zero = torch.zeros_like(x)
        return torch.cat([zero, 4 * x - 2, zero - 10, zero - 10], dim=1)


def _predictor(spacing):
    p = Predictor.__new__(Predictor)
    overrides = ["data.dataset=mms", "data.image_size=64", "data.normalise=none"]
    p.config = build_config({}, overrides + ([f"data.spacing={spacing}"] if spacing else []))
    p.spec, p.model, p.device = CARDIAC, Oracle().eval(), torch.device("cpu")
    return p


def _volume():
    """40 x 30 x 3 volume at 1.1 x 1.3 x 8 mm with an L-shaped bright structure off-centre."""
    mask = np.zeros((40, 30, 3), np.uint8)
    mask[5:25, 4:10, :] = 1  # the long arm, near the first rows and columns
    mask[19:25, 4:20, :] = 1  # the foot
    image = np.where(mask > 0, 800.0, 100.0).astype(np.float32)
    return image, mask


@pytest.mark.parametrize("spacing", [None, 1.67, 0.9])
def test_oracle_round_trip_lands_on_the_input_grid(tmp_path, spacing):
    image, mask = _volume()
    affine = np.diag([1.1, 1.3, 8.0, 1.0])
    path = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), str(path))
    labels, out_affine, _ = _predictor(spacing).predict_volume(path)
    assert labels.shape == mask.shape and np.allclose(out_affine, affine)
    fg = labels == 1
    dice = region_metrics(fg, mask > 0, (1.1, 1.3, 8.0), distances=False)["dice"]
    assert dice > (0.999 if spacing is None else 0.93)
    for flipped in (mask[::-1], mask[:, ::-1]):
        assert region_metrics(fg, flipped > 0, (1.1, 1.3, 8.0), distances=False)["dice"] < 0.5


def test_postprocessing_works_on_each_3d_frame_of_a_cine_volume(tmp_path):
    """x, y, z, t input: each time frame is one 3D volume for post-processing, as evaluation scores
    it. A blob alone in the top slice is that slice's largest component (per-plane processing
    keeps it) but not its frame's (per-volume processing removes it); the two frames have their
    structures in different places, so mixing frames would keep the wrong blobs."""
    image = np.full((32, 32, 5, 2), 100.0, np.float32)
    at_a, at_b = (slice(4, 12), slice(4, 12)), (slice(18, 26), slice(18, 26))
    image[at_a[0], at_a[1], 0:4, 0] = 800.0  # frame 0: a column at A, a stray blob at B in the top slice
    image[at_b[0], at_b[1], 4, 0] = 800.0
    image[at_b[0], at_b[1], 0:4, 1] = 800.0  # frame 1: the other way round
    image[at_a[0], at_a[1], 4, 1] = 800.0
    path = tmp_path / "cine.nii.gz"
    nib.save(nib.Nifti1Image(image, np.diag([1.0, 1.0, 8.0, 1.0])), str(path))
    p = _predictor(None)
    p.postprocess = True
    labels, _, _ = p.predict_volume(path)
    expected = np.zeros(image.shape, np.uint8)
    expected[at_a[0], at_a[1], 0:4, 0] = 1
    expected[at_b[0], at_b[1], 0:4, 1] = 1
    assert labels.shape == image.shape
    assert np.array_equal(labels, expected)
