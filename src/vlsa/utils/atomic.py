"""Atomic file writes: write to a temporary sibling, then rename, so no half-written output stays."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from vlsa.errors import VlsaError


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VlsaError(f"{path.parent}: cannot create output folder ({exc.strerror})") from None
    suffix = "".join(path.suffixes) or ".tmp"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise VlsaError(f"{path}: cannot write ({exc.strerror})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
