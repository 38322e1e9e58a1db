"""What a run directory records about where it ran: versions, machine, command, seed."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from vlsa import __version__


def source_revision(package: str | Path | None = None) -> dict | None:
    """The git commit of the vlsa source this process runs, and whether the package's tracked files
    differ from that commit (`dirty`): {"commit": 40 hex digits, "dirty": bool}. None when the
    package is not a tracked file of a git checkout (a wheel install, even inside a repository's
    .venv) or git is absent, so a run never records a commit that is not the code it ran. `package`: the folder
    holding the package's __init__.py (default: this vlsa's)."""
    package = Path(package) if package is not None else Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    if git("ls-files", "--error-unmatch", "__init__.py") is None or (commit := git("rev-parse", "HEAD")) is None:
        return None
    # the package's own files only: a benchmark's results files, rewritten by the run, are not its code
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return {"commit": commit, "dirty": bool(status)}


def environment(device: str | None = None) -> dict:
    versions = {"vlsa": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for name in ("monai", "numpy", "nibabel", "transformers"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - optional packages may be absent
            versions[name] = None
    return {
        "versions": versions,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
                    "device": device, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "command": " ".join(sys.argv),
        "git": source_revision(),  # the vlsa commit (None outside a git checkout); not "sources", the domains
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str, key: str = "config key 'train.device'") -> torch.device:
    """'cpu' | 'cuda' | 'auto' -> a torch device; `key` names where the choice came from in the error."""
    from vlsa.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}: 'cuda' requested but no CUDA device is available")
    return torch.device(name)
