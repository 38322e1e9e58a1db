"""Source validation under generic appearance corruptions: a source-only selection score.

On the synthetic benchmarks, clean source-validation Dice saturates near 0.975 for every VLSA
candidate, so it cannot tell configurations apart. This score asks the question a DG choice is
about, still without touching an unseen domain: how well does the run segment its *own* source
validation images after appearance corruptions it was not trained on? The corruptions are MONAI's
stock intensity transforms at one fixed severity each, seeded, so every candidate sees the same
corrupted images. The severities were set (before any candidate was scored) so that a 20-step run
loses Dice under some of them:

- gamma 0.4 and 2.5 (`AdjustContrast`), Gaussian blur sigma 2 px, Gaussian noise sd 0.15: the
  families of the training colour policy (gamma 0.61-1.65, blur up to 0.75 px, noise up to 0.05 at
  colour 0.5), past the edge of its ranges;
- a smooth multiplicative bias field (`RandBiasField`, degree 3), a random monotone intensity
  remapping (`RandHistogramShift`), k-space truncation ringing (`RandGibbsNoise`), a different
  gamma per channel (log-uniform 0.4-2.5; a colour cast on RGB) and intensity inversion
  (`ScaleIntensityRange` 1 -> 0): families the training policy does not contain. Monotone
  whole-image changes alone barely move a z-scored, colour-augmented model; the last two are the
  non-monotone and per-channel changes it was not trained for.

Each corruption is applied to the image rescaled to [0, 1] (per image and channel), then the image
is z-scored again, as `data.normalise: zscore` does for every input. Every candidate is scored on the
same corrupted model-size images: a foundation encoder that reads E px images (medsam, hybrid) gets
them resized to E px, as it reads a volume's model-size slice. The score is the mean Dice
(foreground classes, per image or volume, as every table here) over the corruptions.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch

SEED = 20251129  # fixed: every candidate is scored on the same corrupted images


def corruptions():
    """name -> MONAI array transform on one C x H x W image in [0, 1] (returns the same shape)."""
    from monai.transforms import (
        AdjustContrast,
        GaussianSmooth,
        RandBiasField,
        RandGaussianNoise,
        RandGibbsNoise,
        RandHistogramShift,
        ScaleIntensityRange,
    )

    return {
        "gamma 0.4": AdjustContrast(gamma=0.4),
        "gamma 2.5": AdjustContrast(gamma=2.5),
        "blur 2 px": GaussianSmooth(sigma=2.0),
        "noise 0.15": RandGaussianNoise(prob=1.0, std=0.15),
        "bias field": RandBiasField(degree=3, coeff_range=(0.15, 0.25), prob=1.0),
        "histogram shift": RandHistogramShift(num_control_points=(5, 10), prob=1.0),
        "Gibbs ringing": RandGibbsNoise(prob=1.0, alpha=(0.75, 0.75)),
        "channel gamma": ChannelGamma(0.4, 2.5),
        "inversion": ScaleIntensityRange(a_min=0.0, a_max=1.0, b_min=1.0, b_max=0.0),
    }


class ChannelGamma:
    """A gamma per channel, log-uniform in [low, high] (a colour cast for RGB; for one channel, a
    random gamma). MONAI's AdjustContrast takes one gamma for the whole image."""

    def __init__(self, low: float, high: float):
        self.low, self.high = np.log(low), np.log(high)
        self.rng = np.random.default_rng(0)

    def set_random_state(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        gamma = np.exp(self.rng.uniform(self.low, self.high, size=x.shape[0]))
        return x.clamp_min(0) ** torch.as_tensor(gamma, dtype=x.dtype).view(-1, 1, 1)


def corrupt(images: torch.Tensor, transform) -> torch.Tensor:
    """N x C x H x W z-scored images -> the same, each corrupted by `transform` (seeded by SEED and
    the image's index, so the result does not depend on what else is in the batch)."""
    out = []
    for i, image in enumerate(images.float()):
        lo = image.amin(dim=(1, 2), keepdim=True)
        hi = image.amax(dim=(1, 2), keepdim=True)
        x = (image - lo) / (hi - lo).clamp_min(1e-6)
        if hasattr(transform, "set_random_state"):
            transform.set_random_state(SEED + i)
        y = torch.as_tensor(np.asarray(transform(x)), dtype=torch.float32)
        mean = y.mean(dim=(1, 2), keepdim=True)
        std = y.std(dim=(1, 2), keepdim=True).clamp_min(1e-6)
        out.append((y - mean) / std)
    return torch.stack(out).to(images.dtype)


def shifted_val(run_dir: str | Path, tta: str = "off") -> dict:
    """-> {"clean": Dice, "corrupted": mean Dice over the corruptions, "per_corruption": {...}} of
    the run's selected (best) checkpoint on its own source-validation split, predicted with test-time
    augmentation `tta` (off, flip: `vlsa.engine.inference.model_logits`). Cached in
    <run_dir>/source_shift.json (source_shift_tta-<tta>.json for another than off), keyed by the
    checkpoint's config digest and SEED."""
    from vlsa.config import load_config
    from vlsa.engine.data import encoder_size, prepare, source_validation
    from vlsa.engine.evaluate import load_run
    from vlsa.engine.inference import predict_prepared, score

    run_dir = Path(run_dir)
    cache = run_dir / ("source_shift.json" if tta == "off" else f"source_shift_tta-{tta}.json")
    key = f"{load_config(run_dir / 'config.yaml').digest()}-{SEED}"
    if cache.is_file():  # a hit needs only the config, not the checkpoint
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return saved["result"]
    config, spec, model = load_run(run_dir)
    val_samples = source_validation(config)
    enc = encoder_size(config)
    if enc is not None:
        # a foundation encoder reads E px images: corrupt the same model-size images every other
        # candidate is scored on (corruptions such as blur and Gibbs ringing act per pixel), then
        # resize them as the encoder reads a model-size slice (prepare drops each sample's image:
        # copies go in)
        plain = config.model_copy(deep=True)
        plain.model.backbone.name = "cnn"
        base = prepare([copy.copy(s) for s in val_samples], plain, spec).images
    val = prepare(val_samples, config, spec)
    if not len(val):
        raise ValueError(f"{run_dir}: the run has no source-validation split")
    clean_images = val.images
    if enc is None:
        base = clean_images

    def at_encoder_size(images: torch.Tensor) -> torch.Tensor:
        if enc is None:
            return images
        up = torch.nn.functional.interpolate(images.float(), size=(enc, enc), mode="bilinear", align_corners=False)
        return up.to(clean_images.dtype)

    def dice(images: torch.Tensor) -> float:
        val.images = images
        native, _ = predict_prepared(model, val, config.eval.batch_size, "cpu", tta=tta)
        return float(score(val, native, spec, distances=False).aggregate()["dice"]["mean"])

    per = {name: dice(at_encoder_size(corrupt(base, t))) for name, t in corruptions().items()}
    result = {"clean": dice(clean_images), "corrupted": float(np.mean(list(per.values()))), "per_corruption": per}
    from vlsa.utils.atomic import write_json

    write_json(cache, {"key": key, "result": result})
    return result
