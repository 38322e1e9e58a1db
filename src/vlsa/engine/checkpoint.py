"""Checkpoints: plain dicts of tensors and primitives, written atomically, read with
`torch.load(weights_only=True)` so a checkpoint can never run code on load."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from vlsa import __version__
from vlsa.data.spec import DatasetSpec
from vlsa.errors import CheckpointError
from vlsa.utils.atomic import atomic_path

FORMAT = 1


def spec_to_dict(spec: DatasetSpec) -> dict:
    return {
        "name": spec.name,
        "label_names": list(spec.label_names),
        "regions": {k: list(v) for k, v in spec.regions.items()},
        "channels": spec.channels,
        "volumetric": spec.volumetric,
        "descriptions": dict(spec.descriptions),
    }


def spec_from_dict(d: dict) -> DatasetSpec:
    return DatasetSpec(
        name=d["name"],
        label_names=tuple(d["label_names"]),
        regions={k: tuple(v) for k, v in d["regions"].items()},
        channels=int(d["channels"]),
        volumetric=bool(d["volumetric"]),
        descriptions=dict(d.get("descriptions", {})),
    )


def save_checkpoint(path: str | Path, *, model, optimizer, step: int, config, spec, best: dict, extra=None) -> None:
    state = {
        "format": FORMAT,
        "vlsa_version": __version__,
        "config": config.to_dict(),
        "config_hash": config.digest(),
        "spec": spec_to_dict(spec),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "best": dict(best),
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise CheckpointError(f"{path}: refused, the checkpoint carries pickled objects that could run code ({first[:120]})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise CheckpointError(f"{path}: not a vlsa checkpoint (format {FORMAT})")
    return state


def load_model_state(model, state: dict, path) -> None:
    """Load weights, turning a state-dict mismatch into one line that says what differs."""
    own = model.state_dict()
    theirs = state["model"]
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    shape = [k for k in own if k in theirs and own[k].shape != theirs[k].shape]
    if missing or unexpected or shape:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shape:
            detail.append(f"{len(shape)} of another shape (e.g. {shape[0]})")
        raise CheckpointError(f"{path}: checkpoint was made for another model configuration: {'; '.join(detail)}")
    model.load_state_dict(theirs)
