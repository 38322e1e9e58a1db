"""The training loop: AdamW, warm-up + cosine/poly schedule, gradient clipping, AMP on GPU,
source-only validation for checkpoint selection, atomic checkpoints and exact resume.

Exact resume: every random draw of a step (batch indices, augmentation) comes from a generator
seeded with (seed, step), and the learning rate is a pure function of the step, so the state to
restore is just weights + optimizer + step; a resumed run reproduces the uninterrupted one.

The loop is a `Trainer` whose methods are its steps, the shape nnU-Net's trainer and Lightning's
hooks give it: `prepare` (process, data, model) -> `start` (fresh run folder) or `restore`
(--resume) -> `fit` (per step: `train_step`, `validate_and_keep_best`, `log_step`, `save_last`)
-> `after_training` -> `summarise`. Another training mode (the whole-photo disc locator) passes its
own data preparation, model builder and loss and reuses the rest.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vlsa.config import Config, save_config
from vlsa.data.integrity import verify
from vlsa.data.spec import DatasetSpec
from vlsa.engine import distributed, run_folder
from vlsa.engine.batches import feature_batch, image_batch
from vlsa.engine.checkpoint import load_model_state, save_checkpoint
from vlsa.engine.data import (
    Prepared,
    domains_of,
    load_source,
    open_configured,
    prepare,
    verify_target_datasets,
)
from vlsa.engine.inference import predict_prepared, score
from vlsa.engine.run_folder import finished_steps, resume_state
from vlsa.engine.runinfo import environment, resolve_device, seed_everything
from vlsa.engine.runstate import training_cases
from vlsa.engine.signals import StopSignals
from vlsa.engine.threads import use_threads
from vlsa.errors import ConfigError, Interrupted, VlsaError
from vlsa.losses import SegmentationLoss, js_consistency
from vlsa.models import build_model
from vlsa.utils.atomic import write_json

__all__ = ["TrainData", "Trainer", "finished_steps", "learning_rate", "prepare_data", "resume_state",
           "step_generator", "train", "verify_targets"]


def learning_rate(step: int, cfg) -> float:
    """Linear warm-up, then cosine (or poly 0.9) decay to zero at `steps`."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    if cfg.schedule == "poly":
        return cfg.lr * (1 - progress) ** 0.9
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


@dataclass
class TrainData:
    """What a training mode trains and validates on: the model-size source samples (`Prepared`:
    images N x C x S x S, labels N x S x S), the label spec the model predicts, and where they came
    from (reader, source and target domains, `recorded`: the target datasets), which run.json records."""

    reader: object
    spec: DatasetSpec
    sources: list[str]
    targets: list[str]
    train_set: Prepared
    val_set: Prepared
    recorded: dict = field(default_factory=dict)


def verify_targets(config: Config, reader, sources: list[str], targets: list[str]) -> dict:
    """Integrity check before training: every domain's evaluation split must load too, the other
    datasets' targets (`data.target_datasets`) included, so a corrupt target file is reported now,
    not after hours of training (raises DataError naming the file). -> what run.json records of
    the data (`vlsa.engine.data.verify_target_datasets`)."""
    verify(reader, [*sources, *targets], splits=("test",))
    return verify_target_datasets(config, reader)


def prepare_data(config: Config) -> TrainData:
    """The segmentation training data of a config: its dataset's source domains split by case into
    train / validation (`data.val_fraction`), fitted to `data.image_size`."""
    reader = open_configured(config)
    sources, targets = domains_of(config, reader)
    recorded = verify_targets(config, reader, sources, targets)
    train_samples, val_samples = load_source(config, reader, sources)
    if not train_samples:
        raise VlsaError(f"{reader.root}: no training samples in source domain(s) {sources}")
    return TrainData(reader, reader.spec, sources, targets, prepare(train_samples, config, reader.spec),
                     prepare(val_samples, config, reader.spec), recorded)


class Trainer:
    """One training run in `out`. `data(config) -> TrainData` (default `prepare_data`), `model(config,
    spec) -> nn.Module` (default `vlsa.models.build_model`) and `loss(logits, labels) -> scalar`
    (default Dice + CE) make the steps reusable by another training mode."""

    def __init__(self, config: Config, out: str | Path, *, quiet: bool = False,
                 data: Callable[[Config], TrainData] | None = None,
                 model: Callable[[Config, DatasetSpec], torch.nn.Module] | None = None,
                 loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        self.config, self.out, self.quiet = config, Path(out), quiet
        self._make_data, self._build_model, self._loss = data or prepare_data, model, loss
        self.start_step, self.best, self.log_rows = 0, {"score": -1.0, "step": -1}, []

    @property
    def main(self) -> bool:
        return self.info.main

    def run(self, resumed: dict | None = None, stop_at: int | None = None) -> int:
        """The whole workflow; `resumed` is the last checkpoint's state (`resume_state`), `stop_at`
        stops early as an interruption would. Returns the step reached."""
        self.prepare(run_folder.recorded_threads(self.out) if resumed is not None else None)
        if resumed is not None:
            self.restore(resumed)
        else:
            self.start()
        self.prepare_features()
        step = self.fit(stop_at)
        finished = step >= self.config.train.steps
        if finished:
            self.after_training(step)
        distributed.barrier(self.info)
        if finished and self.main and not self.quiet:
            print(self.summarise())
        return step

    # --- set-up -----------------------------------------------------------------------------
    def prepare(self, recorded_threads: int | None = None) -> None:
        """This process (threads, seeds, distributed rank, device), the data, the model.
        `recorded_threads`: the thread count of the run being resumed (`vlsa.engine.threads`)."""
        cfg = self.config.train
        use_threads(cfg.threads, recorded=recorded_threads, quiet=self.quiet or os.environ.get("RANK", "0") != "0")
        seed_everything(self.config.seed)
        self.info, rank_device = distributed.init(cfg.device)
        self.device = rank_device or resolve_device(cfg.device)
        self.data = self._make_data(self.config)
        self.build()

    def build(self) -> None:
        """Model, optimizer, the DDP wrapper (`net`), the loss and the optional weight average."""
        config, cfg = self.config, self.config.train
        self.model = (self._build_model or build_model)(config, self.data.spec).to(self.device)
        self.cached = bool(getattr(self.model, "cache_features", False))
        # the consistency term (data.augment.consistency) trains on two appearance draws of each image;
        # a cached frozen backbone draws them from its bank, which then needs two views or more
        self.draws = 2 if config.data.augment.consistency > 0 else 1
        if self.draws == 2 and self.cached and config.data.augment.views < 2:
            raise ConfigError("config key 'data.augment.consistency': needs data.augment.views >= 2 with a cached "
                              f"backbone ({config.model.backbone.name}), whose appearance draws are the bank's views")
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=cfg.lr,
                                           weight_decay=cfg.weight_decay)
        self.net = self.model
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.loss_fn = self._loss or SegmentationLoss()
        self.ema = self._weight_average(cfg)

    def _weight_average(self, cfg):
        # train.ema: an exponential moving average of the weights (torch's AveragedModel) is what is
        # validated, checkpointed as "model" and evaluated; the trained weights ride along for resume
        if cfg.ema <= 0:
            return None
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        window = 1 / (1 - cfg.ema)  # steps over which the average forgets by a factor e
        if window > cfg.steps / 2 and self.main and not self.quiet:
            print(f"vlsa: warning: train.ema={cfg.ema} averages over about {window:.0f} steps, more than half of "
                  f"the {cfg.steps} steps: the evaluated weights will still carry the early ones", file=sys.stderr)
        return AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights that are validated, checkpointed as "model" and evaluated."""
        return self.model if self.ema is None else self.ema.module

    def start(self) -> None:
        """A fresh run: the run folder with config.yaml and run.json (rank 0 writes)."""
        if not self.main:
            return
        from vlsa.engine.compat import mask_values
        from vlsa.engine.training_inputs import profile

        run_folder.create(self.out)
        save_config(self.config, self.out / "config.yaml")
        d = self.data
        write_json(self.out / "run.json", {
            "sources": d.sources, "targets": d.targets, "dataset_root": str(Path(d.reader.root).resolve()),
            **d.recorded,
            "mask_values": list(mask_values(d.reader)), "train_samples": len(d.train_set),
            "val_samples": len(d.val_set), "val_cases": sorted({s.case_id for s in d.val_set.samples}),
            "train_cases": training_cases(d.train_set.samples),
            "training_inputs": profile(d.train_set, d.spec), "seed": self.config.seed, "processes": self.info.world,
            **environment(str(self.device))})

    def restore(self, state: dict) -> None:
        """--resume: weights (averaged and trained), optimizer, step, best and log from `state`."""
        path = run_folder.last_path(self.out)
        if self.ema is not None:
            load_model_state(self.ema.module, state, path)
            self.ema.n_averaged.fill_(int(state["extra"]["ema_updates"]))
            state = {**state, "model": state["extra"]["training_model"]}
        load_model_state(self.model, state, path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_step, self.best = state["step"], state["best"]
        self.log_rows = run_folder.read_log(self.out / "log.csv", self.start_step)

    def prepare_features(self) -> None:
        """A cached frozen backbone: its feature bank up front, with a progress bar."""
        if self.cached:
            from vlsa.engine.bank import fill_bank

            fill_bank(self.model, self.data.train_set.images, self.data.val_set.images, self.config.data.augment,
                      self.device, quiet=self.quiet or not self.main)

    # --- the loop ---------------------------------------------------------------------------
    def fit(self, stop_at: int | None = None) -> int:
        """Train from `start_step` to `train.steps` (or `stop_at`); returns the step reached. A
        SIGINT/SIGTERM finishes the step, saves last.pt and raises Interrupted."""
        cfg = self.config.train
        end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
        self.model.train()
        # a resumed run's clock continues from its last logged row, so `seconds` is the run's training time
        self.t0 = time.time() - (float(self.log_rows[-1]["seconds"] or 0) if self.log_rows else 0.0)
        # the disc locator trains after the segmenter in the same command: its bar says which is which
        what = "train locator" if cfg.mode == "locator" else "train"
        bar = tqdm(total=cfg.steps, initial=self.start_step, desc=f"{what} {'+'.join(self.data.sources)}",
                   unit="step", disable=self.quiet or not self.main, dynamic_ncols=True)
        running, step = [], self.start_step
        with StopSignals() as stop:
            while step < end:
                loss, lr = self.train_step(step)
                step += 1
                running.append(loss)
                bar.update(1)
                val = self.validate_and_keep_best(step)
                if step % cfg.log_every == 0 or not np.isnan(val) or step == end:
                    bar.set_postfix(self.log_step(step, running, lr, val))
                    running = []
                if step % cfg.val_every == 0 or step == end or stop.requested:
                    self.save_last(step)
                if stop.requested:
                    bar.close()
                    raise Interrupted(f"{self.out}: stopped by {stop.requested} at step {step} of {cfg.steps}, "
                                      f"{run_folder.last_path(self.out)} saved; continue with: vlsa train --out "
                                      f"{self.out} --resume", signal.Signals[stop.requested])
        bar.close()
        return step

    def train_step(self, step: int) -> tuple[float, float]:
        """One optimisation step at `step` (0-based): the step's batch and learning rate, forward,
        loss, backward, clipped update, weight average. Returns (loss averaged over ranks, lr)."""
        cfg, aug = self.config.train, self.config.data.augment
        g = step_generator(self.config.seed, step)
        idx = torch.randint(len(self.data.train_set), (cfg.batch_size,), generator=g)
        lr = learning_rate(step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # the step's generator reaches the model only for model.dsu, so runs without it call as before
        dsu = {"generator": g} if self.config.model.dsu > 0 else {}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.amp and self.device.type == "cuda"):
            if self.cached:
                feats, y = feature_batch(self.model, self.data.train_set, idx, aug, g, self.draws, self.info,
                                         self.device)
                logits = self.net(None, features=feats, out_size=self.data.train_set.labels.shape[-2:], **dsu)
            else:
                x, y = image_batch(self.data.train_set, idx, aug, g, self.draws, self.info)
                logits = self.net(x.to(self.device), **dsu)
        loss = self.objective(logits, y.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return distributed.mean_across(float(loss.item()), self.info), lr

    def objective(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """logits (draws*B) x K x S x S, labels B x S x S -> the loss. With two draws both are
        supervised and the JS term (RandConv's consistency) ties their predictions together."""
        if self.draws == 2:
            first, second = logits.float().chunk(2)
            return ((self.loss_fn(first, y) + self.loss_fn(second, y)) / 2
                    + self.config.data.augment.consistency * js_consistency(first, second))
        return self.loss_fn(logits.float(), y)

    def validate(self) -> float:
        """Mean Dice of the evaluated weights on the source validation split (rank 0 scores it, the
        others take its number); NaN without a validation split."""
        val = float("nan")
        if self.main and len(self.data.val_set):
            val_set = self.data.val_set
            native, _ = predict_prepared(self.evaluated, val_set, self.config.eval.batch_size, self.device,
                                         tta=self.config.eval.tta)
            val = score(val_set, native, self.data.spec, distances=False).aggregate()["dice"]["mean"]
        return distributed.broadcast_float(val, self.info)

    def validate_and_keep_best(self, step: int) -> float:
        """At a validation step: validate, and save best.pt when the score improved. NaN otherwise."""
        cfg = self.config.train
        if not (step % cfg.val_every == 0 or step == cfg.steps):
            return float("nan")
        val = self.validate()
        self.model.train()
        if not np.isnan(val) and val > self.best["score"]:
            self.best = {"score": val, "step": step}
            self.save_checkpoint(step, run_folder.best_path(self.out))
        return val

    def log_step(self, step: int, running: list[float], lr: float, val: float) -> dict:
        """A log.csv row (mean loss since the last row); returns what the progress bar shows."""
        self.log_rows.append({"step": step, "loss": f"{np.mean(running):.5f}", "lr": f"{lr:.3e}",
                              "val_dice": "" if np.isnan(val) else f"{val:.4f}",
                              "seconds": f"{time.time() - self.t0:.2f}"})
        shown = {"loss": self.log_rows[-1]["loss"]}
        if self.best["step"] > 0:  # no 'val=-1.000' before the first validation
            shown["best_val"] = f"{self.best['score']:.3f}"
        return shown

    # --- checkpoints and the end --------------------------------------------------------------
    def save_checkpoint(self, step: int, path: Path) -> None:
        """The evaluated weights as "model" (+ the trained ones and the average's count with EMA),
        optimizer, step, best; only rank 0 writes, the weights are identical on every rank."""
        if not self.main:
            return
        extra = None
        if self.ema is not None:
            extra = {"training_model": self.model.state_dict(), "ema_updates": int(self.ema.n_averaged)}
        save_checkpoint(path, model=self.evaluated, optimizer=self.optimizer, step=step, config=self.config,
                        spec=self.data.spec, best=self.best, extra=extra)

    def save_last(self, step: int) -> None:
        """last.pt and log.csv, then every rank waits for them."""
        self.save_checkpoint(step, run_folder.last_path(self.out))
        if self.main:
            run_folder.write_log(self.out / "log.csv", self.log_rows)
        distributed.barrier(self.info)

    def after_training(self, step: int) -> None:
        """Once the last step is done (never after an interruption): without a validation split the
        last weights are the selected ones; the learning curves. What a finished run records goes here."""
        if self.best["step"] < 0:
            self.best = {"score": float("nan"), "step": step}
            self.save_checkpoint(step, run_folder.best_path(self.out))
            self.save_checkpoint(step, run_folder.last_path(self.out))
        if self.main:
            from vlsa.report.plots import plot_curves

            plot_curves(self.out / "log.csv", self.out / "curves.png")
            if self._build_model is None:  # the segmentation model: its post-processing decision, for best.pt
                from vlsa.engine.postprocessing import record

                record(self.out, self.config, self.data.spec, self.data.val_set, self.device)

    def summarise(self) -> str:
        from vlsa.engine.locator import locator_follows  # locator builds on this module

        return run_folder.summary(self.out, self.best, run_folder.best_path(self.out),
                                  locator_follows=locator_follows(self.config))


def train(config: Config | None, out: str | Path, resume: bool = False, stop_at: int | None = None,
          quiet: bool = False) -> Path:
    """Train into `out`; returns the run directory. `stop_at` stops early (as an interruption would).
    `train.mode: locator` trains the whole-photo disc locator; a finished segmentation run with
    `train.locator.enabled` trains one into `out`/locator (vlsa.engine.locator)."""
    from vlsa.engine.locator import train_after_segmentation, trainer_class

    config, resumed = resume_state(config, out, resume)
    if trainer_class(config)(config, out, quiet=quiet).run(resumed, stop_at) >= config.train.steps:
        train_after_segmentation(config, out, quiet=quiet)
    return Path(out)
