"""The foundation encoder reads the image at its own resolution (LiteMedSAM: 256 px), resized from
the image as read, while labels and logits stay at data.image_size."""

import numpy as np
import torch

from vlsa.config import build_config
from vlsa.engine.data import encoder_size, model_input
from vlsa.engine.geometry import geometry_for, normalise, to_model


def test_medsam_reads_256px_from_the_image_as_read_others_the_model_size():
    medsam = build_config({}, ["model.name=vlsa", "model.backbone.name=medsam", "data.image_size=96"])
    cnn = build_config({}, ["model.name=vlsa", "model.backbone.name=cnn", "data.image_size=96"])
    assert encoder_size(medsam) == 256 and encoder_size(cnn) is None
    rng = np.random.default_rng(0)
    image = rng.random((3, 200, 200)).astype(np.float32)
    image[:, 100:102, :] = 5.0  # a thin bright line: lost at 96 px, kept at 256 px read from 200 px
    geom = geometry_for(False, image.shape[-2:], 96)
    hi = model_input(image, geom, medsam)
    assert hi.shape == (3, 256, 256) and hi.dtype == torch.float16
    lo = model_input(image, geom, cnn)
    assert torch.equal(lo, normalise(to_model(image, None, geom)[0], "zscore"))
    up = torch.nn.functional.interpolate(lo[None], size=(256, 256), mode="bilinear", align_corners=False)[0]
    # reading from the native image keeps more of the line's contrast than upsampling the 96 px input
    assert hi.float()[:, 126:131].max() > up[:, 126:131].max() + 0.5


def test_medsam_pyramid_follows_out_size_not_the_input_size():
    from vlsa.models.backbones.medsam import MedSAMBackbone

    backbone = MedSAMBackbone(3, 96, pretrained=False).eval()
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 256, 256), out_size=(96, 96))
        default = backbone(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [48, 24, 24, 24]
    assert [f.shape[-1] for f in default] == [32, 16, 16, 16]
