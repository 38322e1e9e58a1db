"""The run directory as training writes and continues it: `config.yaml`, `run.json`, `log.csv`,
`checkpoints/best.pt` and `checkpoints/last.pt`, and the checks before a run starts or resumes.

Exact resume needs only weights + optimizer + step (see `vlsa.engine.train`), so resuming is: read
the run's own config and last checkpoint, check they belong together, and continue.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from vlsa.config import Config, differing_keys, load_config
from vlsa.engine.checkpoint import load_checkpoint
from vlsa.errors import VlsaError
from vlsa.utils.atomic import atomic_path, write_json

LOG_FIELDS = ("step", "loss", "lr", "val_dice", "seconds")


def best_path(out: str | Path) -> Path:
    return Path(out) / "checkpoints" / "best.pt"


def last_path(out: str | Path) -> Path:
    return Path(out) / "checkpoints" / "last.pt"


def resume_state(config: Config | None, out: str | Path, resume: bool) -> tuple[Config, dict | None]:
    """-> (the config to train with, the last checkpoint's state for `resume`, else None).

    A fresh run needs `config` and an `out` without a run in it; `resume` continues the run in `out`
    with its own config.yaml (`config`, when given, must resolve to the same one). Raises VlsaError
    naming the file: nothing to resume, a finished run, another config, a config.yaml edited after
    the checkpoint, or (fresh) a run already there. `config.data.root` and the target datasets' roots
    are made absolute in place, so the run works from any folder."""
    out = Path(out)
    last = last_path(out)
    if config is not None:  # absolute roots (the run's and its target datasets'), so the run works from any folder
        from vlsa.engine.data import resolve_roots

        resolve_roots(config)
    if not resume:
        if last.is_file():
            raise VlsaError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")
        assert config is not None
        return config, None
    if not last.is_file():
        raise VlsaError(f"{last}: nothing to resume (no last checkpoint)")
    saved = load_config(out / "config.yaml")
    state = load_checkpoint(last)  # read once: steps done, its config hash, then the weights
    done = int(state["step"])
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
    made_with = state.get("config_hash")
    if made_with != saved.digest():
        raise VlsaError(f"{last}: was made with another config than {out / 'config.yaml'} (config hash "
                        f"{made_with} != {saved.digest()}); restore the run's config.yaml to resume it")
    clear_partials(out)
    return saved, state


def clear_partials(out: Path) -> None:
    """Remove the temp files of atomic writes that a killed process (SIGKILL, power loss) left
    behind: the files they were to replace are intact, so they are only litter."""
    for stale in out.rglob(".*.partial*"):
        stale.unlink(missing_ok=True)


def create(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VlsaError(f"{out}: cannot create the run directory ({exc.strerror})") from None


def read_log(path: Path, upto: int) -> list[dict]:
    """The rows of log.csv up to step `upto` (a resumed run drops rows logged after its checkpoint)."""
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [row for row in csv.DictReader(fh) if int(row["step"]) <= upto]


def write_log(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def update_run_info(out: str | Path, **fields) -> dict:
    """Merge `fields` into the run's run.json (atomically); returns the new content."""
    path = Path(out) / "run.json"
    info = json.loads(path.read_text()) if path.is_file() else {}
    info.update(fields)
    write_json(path, info)
    return info


def recorded_threads(out: str | Path) -> int | None:
    """The torch thread count run.json recorded when the run started (None when absent)."""
    path = Path(out) / "run.json"
    try:
        threads = json.loads(path.read_text())["machine"]["threads"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return int(threads) if isinstance(threads, int) and threads > 0 else None


def finished_steps(out: str | Path) -> int:
    """The step of the run's last checkpoint (0 when there is none)."""
    last = last_path(out)
    return int(load_checkpoint(last)["step"]) if last.is_file() else 0


def next_step(out: Path) -> str:
    return f"next: vlsa evaluate --run {out} --report"


def summary(out: Path, best: dict, checkpoint: Path, locator_follows: bool = False) -> str:
    """The lines printed when training ends: best validation Dice, its step, the checkpoint, and
    the next command, or, when the disc locator trains next in the same command (`locator_follows`),
    that it does (a new user ran evaluate while it was still training)."""
    first = (f"no source validation split: the last weights (step {best['step']}) are kept" if np.isnan(best["score"])
             else f"best source validation Dice {best['score']:.3f} at step {best['step']}")
    last = ("the whole-photo disc locator trains next (train.locator), then the run is ready" if locator_follows
            else next_step(out))
    return f"{first}\ncheckpoint: {checkpoint}\n{last}"
