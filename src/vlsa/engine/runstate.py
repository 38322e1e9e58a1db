"""What a result was computed from: the run's finished state and the checkpoint (step, content hash).

metrics.json (`run_state`) and postprocess.json (`checkpoint`, `finished`) record them, so a result
is reused only while it describes the run as it is now: a protocol (and benchmarks/dg_table.py)
reads back metrics only of a *finished* run whose checkpoint is the one they were computed from;
an evaluation of an interrupted run, or one made before training continued, is never mistaken
for the finished run's (`reusable`).

Runs also record the case ids they trained on (run.json `train_cases`, domain -> ids);
`check_no_training_cases` refuses a test split that holds one of them (e.g. cases added to the
folder under an older, count-based split rule).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vlsa.errors import VlsaError

CHECKPOINT = Path("checkpoints") / "best.pt"
LAST = Path("checkpoints") / "last.pt"


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes (first 16 hex digits): which weights, not merely which step."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def checkpoint_identity(run_dir: str | Path, state: dict | None = None) -> dict | None:
    """{"file", "step", "sha256"} of the run's selected checkpoint (best.pt); None when there is none.
    `state`: the checkpoint already loaded (saves reading it twice)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    if state is None:
        from vlsa.engine.checkpoint import load_checkpoint

        state = load_checkpoint(path)
    return {"file": CHECKPOINT.as_posix(), "step": int(state["step"]), "sha256": file_hash(path)}


def run_state(run_dir: str | Path) -> dict:
    """{"finished", "steps_done", "steps", "checkpoint"}: whether training reached config.train.steps
    (the last checkpoint's step) and which checkpoint evaluation uses now."""
    from vlsa.config import load_config
    from vlsa.engine.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    steps = load_config(run_dir / "config.yaml").train.steps
    done = int(load_checkpoint(run_dir / LAST)["step"]) if (run_dir / LAST).is_file() else 0
    return {"finished": done >= steps, "steps_done": done, "steps": steps, "checkpoint": checkpoint_identity(run_dir)}


def reusable(metrics: dict, state: dict) -> bool:
    """Whether `metrics` (a metrics.json) may stand for the run in `state` (`run_state`): the run is
    finished, the metrics were computed on that finished run with the checkpoint it has now, and so
    was their post-processing decision."""
    recorded = metrics.get("run_state")
    if not state["finished"] or not recorded or not recorded.get("finished"):
        return False
    checkpoint = state["checkpoint"]
    decision = metrics.get("postprocess") or {}
    return recorded.get("checkpoint") == checkpoint and decision.get("checkpoint") == checkpoint


def training_cases(samples) -> dict[str, list[str]]:
    """domain -> the sorted case ids of `samples` (the cases a run trains on, for run.json)."""
    out: dict[str, set[str]] = {}
    for s in samples:
        out.setdefault(s.domain, set()).add(s.case_id)
    return {d: sorted(ids) for d, ids in sorted(out.items())}


def check_no_training_cases(run_dir: str | Path, domain: str, samples) -> None:
    """Refuse to score a test split holding cases the run trained on (run.json `train_cases`):
    VlsaError naming run.json, the domain and the cases. Runs made before `train_cases` was
    recorded are not checked."""
    from vlsa.engine.compat import run_info

    trained = set(run_info(run_dir).get("train_cases", {}).get(domain, ()))
    leaked = sorted(trained & {s.case_id for s in samples})
    if leaked:
        shown = ", ".join(leaked[:5]) + (f" ... ({len(leaked)} cases)" if len(leaked) > 5 else "")
        raise VlsaError(f"{Path(run_dir) / 'run.json'}: the test split of {domain} holds case(s) this run trained on "
                        f"({shown}); the dataset or its split changed since training (e.g. cases added under an "
                        "older split rule): evaluate on the data as trained, or train again")


def split_rule(reader, config) -> dict:
    """Which rule made the splits (metrics.json `split_rule`): the reader's test split, the source
    validation split, and the per-id hash rule both use where they hash (`vlsa.data.splits`)."""
    from vlsa.data.splits import RULE

    return {"test": getattr(reader, "test_split", "as the reader's module documents"),
            "validation": f"source case ids, exactly round(data.val_fraction x n) by vlsa.data.splits.hash_pick "
                          f"(salt 'val-{config.seed}', data.val_fraction {config.data.val_fraction})",
            "test_fraction": config.data.test_fraction, "hash_rule": RULE}
