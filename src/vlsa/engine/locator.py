"""The whole-photo optic disc locator as a training mode: a small U-Net that segments the optic disc
on the photo resized to `train.locator.size` px (longer side, aspect kept by padding, see
`vlsa.engine.letterbox`), trained by the Trainer's own steps with this module's data preparation.

Why a coarse segmentation rather than a regressed centre: the disc's bounding box gives the centre
and the diameter the canonical ROI rule (`vlsa.roi`) needs, a connected-component choice turns
several candidates (a bright lesion, a reflex) into a confidence, and it is the field's standard
first stage (REFUGE entries, DoFE's data preparation: localise, crop, segment).

The locator must find discs at any scale the pipeline meets: whole photos (a Drishti-GS1 disc spans
~0.19 of the photo's longer side), published crops (DoFE / RIM-ONE: 0.3-0.65 of the side) and
wider-field cameras. So each training photo is seen whole and as `CROPS` zoom crops, squares in
which the disc spans a log-uniform 0.1-0.7 of the side (a side larger than the photo zooms out,
padded with 0), the disc at a random place inside; the Trainer's spatial and appearance
augmentation (flip, rotation, +-10 % scale, colour) is drawn on top at every step.

Who trains it: `train.locator: true` (drishti_sdg sets it) makes `vlsa train` train the locator
after the segmentation model into RUN/locator/, a run folder of its own (config.yaml with
`train.mode: locator`, checkpoints, log.csv), so one run folder holds both and `vlsa predict` /
`vlsa evaluate` find it; `vlsa train --out RUN/locator --resume` continues an interrupted one. Its
validation split is the segmentation run's (the same held-out cases, whole and zoomed).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vlsa import roi
from vlsa.config import Config, build_config
from vlsa.data.sample import Sample
from vlsa.data.spec import FUNDUS, DatasetSpec
from vlsa.engine.data import Prepared, domains_of, open_configured, split_train_val
from vlsa.engine.geometry import Geometry, normalise
from vlsa.engine.letterbox import letterbox, letterbox_mask
from vlsa.engine.run_folder import best_path, finished_steps, last_path, next_step
from vlsa.engine.train import TrainData, Trainer, train
from vlsa.errors import VlsaError

FOLDER = "locator"  # RUN/locator/
LOCATOR_SPEC = DatasetSpec("fundus-disc", ("background", "disc"), {"disc": (1,)}, channels=3,
                           descriptions={"disc": FUNDUS.descriptions["disc"]})
UNET_CHANNELS = [16, 32, 64, 128, 128]  # 5 levels: a 8 x 8 bottleneck at 128 px sees the whole photo
CROPS = 11  # zoom crops per training photo, beside the photo itself
SPAN = (0.1, 0.7)  # disc span / crop side of the zoom crops (log-uniform)


def locator_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / FOLDER


def has_locator(run_dir: str | Path) -> bool:
    """Whether a segmentation run folder holds a trained locator (RUN/locator/checkpoints/best.pt)."""
    return (locator_dir(run_dir) / "checkpoints" / "best.pt").is_file()


def locator_config(config: Config) -> Config:
    """The locator's own config from a segmentation config: the same data section and seed at
    `train.locator.size` px, model `unet` (UNET_CHANNELS), `train.locator.steps` steps, the
    segmentation run's augmentation without the consistency term and no target datasets, `train.mode:
    locator`."""
    tree = config.to_dict()
    tree["model"] = {"name": "unet", "unet": {"channels": UNET_CHANNELS, "num_res_units": 1}}
    tree["data"]["image_size"] = config.train.locator.size
    tree["data"]["augment"]["consistency"] = 0.0
    # the locator predicts background/disc on whole photos: other datasets' targets (disc/cup crops,
    # another label space) belong to the segmentation run, not to it
    tree["data"]["target_datasets"] = {}
    tree["train"].update(mode="locator", steps=config.train.locator.steps, ema=0.0,
                         locator={**tree["train"]["locator"], "enabled": False})
    tree["eval"]["postprocess"] = "off"
    return build_config(tree, origin="locator config")


@dataclass
class LocatorSource:
    """What run.json records of the locator's data: the dataset's root and the locator's labels."""

    root: Path
    spec: DatasetSpec = LOCATOR_SPEC


def photo_views(photo: Sample, size: int, crops: int, rng: np.random.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A labelled photo -> [(C x size x size image as read, size x size disc label {0, 1})]: the
    whole photo, then `crops` zoom crops (module docstring). A photo without disc gives itself only."""
    disc = photo.label > 0
    views = [(photo.image, disc)]
    if disc.any():
        top, left, bottom, right = roi.bounding_box(disc)
        diameter = max(bottom - top, right - left)
        centre = np.array([(top + bottom) / 2, (left + right) / 2])
        for _ in range(crops):
            side = diameter / np.exp(rng.uniform(*np.log(SPAN)))
            shift = rng.uniform(-1, 1, 2) * 0.9 * (side - diameter) / 2  # the disc stays inside
            box = roi.square_box(tuple(centre + shift), side, 1.0)
            views.append((roi.crop(photo.image, box), roi.crop(disc, box)))
    return [(letterbox(image, size)[0], letterbox_mask(mask, size)) for image, mask in views]


def locator_data(config: Config) -> TrainData:
    """The locator's training data (`Trainer(data=...)`): every source photo of the train split
    (`reader.photos` where the reader has whole photos, else its samples) whole and zoomed, split
    into train / validation by case as the segmentation run splits it."""
    reader = open_configured(config)
    sources, targets = domains_of(config, reader)
    photos = getattr(reader, "photos", reader.samples)
    size, views = config.data.image_size, []
    for domain in sources:
        for photo in photos(domain, "train"):
            rng = np.random.default_rng([config.seed, zlib.crc32(photo.name.encode())])
            for k, (image, label) in enumerate(photo_views(photo, size, CROPS, rng)):
                views.append(Sample(image=normalise(image, config.data.normalise), label=label.numpy(),
                                    domain=domain, case_id=photo.case_id, name=f"{photo.name}#{k}"))
    train_views, val_views = split_train_val(views, config.data.val_fraction, config.seed)
    if not train_views:
        raise VlsaError(f"{reader.root}: no training photos in source domain(s) {sources}")
    return TrainData(LocatorSource(Path(reader.root)), LOCATOR_SPEC, sources, targets, _stacked(train_views, size),
                     _stacked(val_views, size))


def _stacked(views: list[Sample], size: int) -> Prepared:
    if not views:
        return Prepared(torch.zeros(0), torch.zeros(0), [], [])
    images = torch.stack([v.image for v in views])
    for v in views:
        v.image = None  # the stacked copy is all training needs
    labels = torch.from_numpy(np.stack([v.label for v in views]))
    return Prepared(images, labels, views, [Geometry("resize", (size, size), size)] * len(views))


class LocatorTrainer(Trainer):
    """The Trainer's steps with the locator's data (its model is the config's `unet`, its loss Dice + CE)."""

    def __init__(self, config: Config, out: str | Path, *, quiet: bool = False):
        super().__init__(config, out, quiet=quiet, data=locator_data)

    def summarise(self) -> str:
        run = Path(self.out).parent
        after = Path(self.out) == locator_dir(run) and best_path(run).is_file()  # RUN/locator of a segmenter
        return (f"locator: best validation disc Dice {self.best['score']:.3f} at step {self.best['step']} "
                f"({self.out}; vlsa predict and evaluate on the run above use it)"
                + (f"\n{next_step(run)}" if after else ""))


def trainer_class(config: Config) -> type[Trainer]:
    return LocatorTrainer if config.train.mode == "locator" else Trainer


def locator_follows(config: Config) -> bool:
    """Whether `vlsa train` trains the disc locator after this run (a segmentation run with
    `train.locator.enabled`)."""
    return config.train.mode == "segmentation" and config.train.locator.enabled


def train_after_segmentation(config: Config, out: str | Path, quiet: bool = False) -> Path | None:
    """`train.locator.enabled` on a segmentation run: train (or finish) RUN/locator. None otherwise."""
    if not locator_follows(config):
        return None
    target, own = locator_dir(out), locator_config(config)
    if last_path(target).is_file():
        if finished_steps(target) >= own.train.steps:
            return target
        return train(None, target, resume=True, quiet=quiet)
    return train(own, target, quiet=quiet)
