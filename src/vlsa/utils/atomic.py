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


@contextlib.contextmanager
def staged_folder(folder: str | Path):
    """Yield a hidden staging folder inside `folder`; when the block succeeds, move every file
    written there into `folder` (same relative path, replacing a file of that name), else delete
    them, and `folder` too if this call created it and it is empty. A command that writes many
    files (`vlsa predict`) so leaves all of them or none. Raises VlsaError if `folder` cannot be made."""
    import shutil
    import tempfile

    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder))
    except OSError as exc:
        raise VlsaError(f"{folder}: cannot create output folder ({exc.strerror})") from None
    try:
        yield stage
        for src in sorted(p for p in stage.rglob("*") if p.is_file()):
            dst = folder / src.relative_to(stage)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        raise
    shutil.rmtree(stage, ignore_errors=True)
