"""The training loop: AdamW, warm-up + cosine/poly schedule, gradient clipping, AMP on GPU,
source-only validation for checkpoint selection, atomic checkpoints and exact resume.

Exact resume: every random draw of a step (batch indices, augmentation) comes from a generator
seeded with (seed, step), and the learning rate is a pure function of the step, so the state to
restore is just weights + optimizer + step; a resumed run reproduces the uninterrupted one.
"""

from __future__ import annotations

import csv
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vlsa.config import Config, differing_keys, load_config, save_config
from vlsa.data.integrity import verify
from vlsa.data.transforms import appearance_views, augment, augment_features, has_appearance
from vlsa.engine import distributed
from vlsa.engine.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from vlsa.engine.data import domains_of, load_source, open_configured, prepare
from vlsa.engine.inference import predict_prepared, score
from vlsa.engine.runinfo import environment, resolve_device, seed_everything
from vlsa.engine.runstate import training_cases
from vlsa.errors import ConfigError, Interrupted, VlsaError
from vlsa.losses import SegmentationLoss, js_consistency
from vlsa.models import build_model
from vlsa.utils.atomic import write_json

LOG_FIELDS = ("step", "loss", "lr", "val_dice", "seconds")


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


class _Stop:
    """Turns SIGTERM and SIGINT (Ctrl-C) into 'finish this step, save a last checkpoint, then stop'
    instead of dying mid-write. A second Ctrl-C interrupts at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = None  # the name of the signal received
        self._previous: dict = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, _frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _read_log(path: Path, upto: int) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [row for row in csv.DictReader(fh) if int(row["step"]) <= upto]


def _write_log(path: Path, rows: list[dict]) -> None:
    from vlsa.utils.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def train(config: Config | None, out: str | Path, resume: bool = False, stop_at: int | None = None,
          quiet: bool = False) -> Path:
    """Train into `out`; returns the run directory. `stop_at` stops early (as an interruption would)."""
    out = Path(out)
    ckpt_dir = out / "checkpoints"
    last_path = ckpt_dir / "last.pt"
    if config is not None and config.data.root is not None:  # absolute, so the run works from any folder
        config.data.root = str(Path(config.data.root).expanduser().resolve())
    if resume:
        if not last_path.is_file():
            raise VlsaError(f"{last_path}: nothing to resume (no last checkpoint)")
        saved = load_config(out / "config.yaml")
        resumed = load_checkpoint(last_path)  # read once: steps done, its config hash, then the weights
        done = int(resumed["step"])
        if done >= saved.train.steps:
            raise VlsaError(f"{out}: the run is already finished ({done} of {saved.train.steps} steps); "
                            f"evaluate it with: vlsa evaluate --run {out}")
        if config is not None and config.digest() != saved.digest():
            keys = differing_keys(saved, config)
            raise VlsaError(f"{out / 'config.yaml'}: --resume with a config that differs from the run's (in "
                            f"{', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}); "
                            "drop --config/--set to continue the run as it was")
        # the run's config.yaml must be the one its checkpoint was trained with (an edited file
        # would otherwise continue another training from these weights)
        made_with = resumed.get("config_hash")
        if made_with != saved.digest():
            raise VlsaError(f"{last_path}: was made with another config than {out / 'config.yaml'} (config hash "
                            f"{made_with} != {saved.digest()}); restore the run's config.yaml to resume it")
        config = saved
        # temp files of an atomic write that a killed process (SIGKILL, power loss) left behind:
        # the files they were to replace are intact, so they are only litter
        for stale in out.rglob(".*.partial*"):
            stale.unlink(missing_ok=True)
    elif last_path.is_file():
        raise VlsaError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")
    assert config is not None
    cfg = config.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(config.seed)
    info, rank_device = distributed.init(cfg.device)
    device = rank_device or resolve_device(cfg.device)
    main = info.main

    reader = open_configured(config)
    sources, targets = domains_of(config, reader)
    spec = reader.spec
    # integrity check before use: every domain's evaluation split must load too, so a corrupt
    # target file is reported now, not after hours of training
    verify(reader, [*sources, *targets], splits=("test",))
    train_samples, val_samples = load_source(config, reader, sources)
    if not train_samples:
        raise VlsaError(f"{reader.root}: no training samples in source domain(s) {sources}")
    train_set = prepare(train_samples, config, spec)
    val_set = prepare(val_samples, config, spec)

    model = build_model(config, spec).to(device)
    # the consistency term (data.augment.consistency) trains on two appearance draws of each image;
    # a cached frozen backbone draws them from its bank, which then needs two views or more
    draws = 2 if config.data.augment.consistency > 0 else 1
    if draws == 2 and getattr(model, "cache_features", False) and config.data.augment.views < 2:
        raise ConfigError("config key 'data.augment.consistency': needs data.augment.views >= 2 with a cached "
                          f"backbone ({config.model.backbone.name}), whose appearance draws are the bank's views")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    net = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = SegmentationLoss()
    # train.ema: an exponential moving average of the weights (torch's AveragedModel) is what is
    # validated, checkpointed as "model" and evaluated; the trained weights ride along for resume
    ema = None
    if cfg.ema > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
        window = 1 / (1 - cfg.ema)  # steps over which the average forgets by a factor e
        if window > cfg.steps / 2 and main and not quiet:
            print(f"vlsa: warning: train.ema={cfg.ema} averages over about {window:.0f} steps, more than half of "
                  f"the {cfg.steps} steps: the evaluated weights will still carry the early ones", file=sys.stderr)
    start, best = 0, {"score": -1.0, "step": -1}
    if resume:
        state = resumed
        if ema is not None:
            load_model_state(ema.module, state, last_path)
            ema.n_averaged.fill_(int(state["extra"]["ema_updates"]))
            state = {**state, "model": state["extra"]["training_model"]}
        load_model_state(model, state, last_path)
        optimizer.load_state_dict(state["optimizer"])
        start, best = state["step"], state["best"]
    elif main:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VlsaError(f"{out}: cannot create the run directory ({exc.strerror})") from None
        save_config(config, out / "config.yaml")
        from vlsa.engine.compat import mask_values

        write_json(out / "run.json", {"sources": sources, "targets": targets,
                                      "dataset_root": str(Path(reader.root).resolve()),
                                      "mask_values": list(mask_values(reader)),
                                      "train_samples": len(train_set), "val_samples": len(val_set),
                                      "val_cases": sorted({s.case_id for s in val_samples}),
                                      "train_cases": training_cases(train_samples),
                                      "seed": config.seed, "processes": info.world, **environment(str(device))})
    if getattr(model, "cache_features", False):  # frozen backbone: its feature bank first, with a progress bar
        from vlsa.engine.bank import fill_bank

        fill_bank(model, train_set.images, val_set.images, config.data.augment, device, quiet=quiet or not main)
    log_rows = _read_log(out / "log.csv", start)
    use_amp = cfg.amp and device.type == "cuda"

    def save(step: int, path: Path) -> None:
        if main:  # only rank 0 writes; the weights are identical on every rank
            extra = None if ema is None else {"training_model": model.state_dict(), "ema_updates": int(ema.n_averaged)}
            save_checkpoint(path, model=model if ema is None else ema.module, optimizer=optimizer, step=step,
                            config=config, spec=spec, best=best, extra=extra)

    def validate() -> float:
        # rank 0 scores the whole source validation split; the others take its number
        val = float("nan")
        if main and len(val_set):
            native, _ = predict_prepared(model if ema is None else ema.module, val_set, config.eval.batch_size, device)
            val = score(val_set, native, spec, distances=False).aggregate()["dice"]["mean"]
        return distributed.broadcast_float(val, info)

    model.train()
    end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
    # a resumed run's clock continues from its last logged row, so `seconds` is the run's training time
    t0 = time.time() - (float(log_rows[-1]["seconds"] or 0) if log_rows else 0.0)
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {'+'.join(sources)}", unit="step",
               disable=quiet or not main, dynamic_ncols=True)
    running = []
    with _Stop() as stop:
        step = start
        while step < end:
            g = step_generator(config.seed, step)
            idx = torch.randint(len(train_set), (cfg.batch_size,), generator=g)
            lr = learning_rate(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                # every rank augments the whole global batch (same draws as a 1-process run), then
                # takes its slice: N processes reproduce the 1-process run with the same global batch
                aug = config.data.augment
                if getattr(model, "cache_features", False):
                    x = train_set.images[idx].float()
                    if aug.views > 1 and has_appearance(aug):  # a view from the bank, then the warp
                        views = torch.randint(aug.views, (len(idx),), generator=g)
                        if draws == 2:  # a second, different view of each image for the consistency term
                            views = torch.cat([views, (views + 1 + torch.randint(aug.views - 1, (len(idx),),
                                                                                 generator=g)) % aug.views])
                            x = x.repeat(2, 1, 1, 1)
                        x = appearance_views(x, views, aug)
                    x = x.to(device)
                    feats, y = augment_features(model.features(x), train_set.labels[idx], aug, g, copies=draws)
                    feats = [distributed.shard(f, info, groups=draws) for f in feats]
                    y = distributed.shard(y, info)
                    logits = net(None, features=feats, out_size=train_set.labels.shape[-2:])
                else:
                    x, y = augment(train_set.images[idx].float(), train_set.labels[idx], aug, g, draws=draws)
                    x = distributed.shard(x, info, groups=draws)
                    y = distributed.shard(y, info)
                    logits = net(x.to(device))
            y = y.to(device)
            if draws == 2:  # both draws are supervised; the JS term ties their predictions together
                first, second = logits.float().chunk(2)
                loss = (loss_fn(first, y) + loss_fn(second, y)) / 2 + aug.consistency * js_consistency(first, second)
            else:
                loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            running.append(distributed.mean_across(float(loss.item()), info))
            bar.update(1)
            val = float("nan")
            if step % cfg.val_every == 0 or step == cfg.steps:
                val = validate()
                model.train()
                if not np.isnan(val) and val > best["score"]:
                    best = {"score": val, "step": step}
                    save(step, ckpt_dir / "best.pt")
            if step % cfg.log_every == 0 or not np.isnan(val) or step == end:
                log_rows.append({"step": step, "loss": f"{np.mean(running):.5f}", "lr": f"{lr:.3e}",
                                 "val_dice": "" if np.isnan(val) else f"{val:.4f}",
                                 "seconds": f"{time.time() - t0:.2f}"})
                running = []
                shown = {"loss": log_rows[-1]["loss"]}
                if best["step"] > 0:  # no 'val=-1.000' before the first validation
                    shown["best_val"] = f"{best['score']:.3f}"
                bar.set_postfix(shown)
            if step % cfg.val_every == 0 or step == end or stop.requested:
                save(step, last_path)
                if main:
                    _write_log(out / "log.csv", log_rows)
                distributed.barrier(info)
            if stop.requested:
                bar.close()
                raise Interrupted(f"{out}: stopped by {stop.requested} at step {step} of {cfg.steps}, "
                                f"{last_path} saved; continue with: vlsa train --out {out} --resume",
                                  signal.Signals[stop.requested])
    bar.close()
    if step >= cfg.steps:
        if best["step"] < 0:  # no validation split: the last weights are the selected ones
            best = {"score": float("nan"), "step": step}
            save(step, ckpt_dir / "best.pt")
            save(step, last_path)
        if main:
            from vlsa.engine.postprocessing import record
            from vlsa.report.plots import plot_curves

            plot_curves(out / "log.csv", out / "curves.png")
            record(out, config, spec, val_set, device)  # postprocess.json, for the checkpoint just selected
    distributed.barrier(info)
    if main and not quiet and step >= cfg.steps:
        print(summary(out, best, ckpt_dir / "best.pt"))
    return out


def finished_steps(out: str | Path) -> int:
    """The step of the run's last checkpoint (0 when there is none)."""
    last = Path(out) / "checkpoints" / "last.pt"
    return int(load_checkpoint(last)["step"]) if last.is_file() else 0


def summary(out: Path, best: dict, checkpoint: Path) -> str:
    """The lines printed when training ends: best validation Dice, its step, the checkpoint, next."""
    score_text = "no validation split (last weights kept)" if np.isnan(best["score"]) else f"{best['score']:.3f}"
    return (f"best source validation Dice {score_text} at step {best['step']}\n"
            f"checkpoint: {checkpoint}\n"
            f"next: vlsa evaluate --run {out} --report")

