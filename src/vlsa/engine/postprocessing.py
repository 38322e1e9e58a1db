"""Whether a run's predictions are post-processed (vlsa.postprocess), decided on SOURCE VALIDATION.

`eval.postprocess: on|off` is taken as given. `auto` scores the run's source validation split
(the cases held out of training, never a target domain) with and without post-processing and
keeps it on unless it lowers mean Dice there (`choose`): the rules are prior anatomical knowledge,
so they are the default, and source evidence that they hurt (e.g. a weak model whose largest blob
is the wrong one) turns them off.

The decision is made when training ends (`record`, from `vlsa.engine.train`) and written into the
run (postprocess.json) with the checkpoint it was made for (step, sha256) and the run's finished
state, so evaluation and prediction apply the same choice, also on a machine without the training
data. A decision whose checkpoint is not the run's current one (training continued) is made again
(`decide`, which needs the source data, as evaluation does); `recorded` (prediction) uses the
recorded decision, makes it when the data is there, and otherwise refuses rather than write maps
that differ from the scored ones.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlsa.engine.runstate import checkpoint_identity, run_state
from vlsa.errors import VlsaError
from vlsa.utils.atomic import write_json

FILE = "postprocess.json"
RULE = "auto: on unless it lowers mean Dice on the source validation split (ties keep it on)"


def choose(val, native, spec) -> dict:
    """The `auto` rule on one validation set: val is a Prepared (or anything with `.samples`),
    native its predicted label maps on the original grids. -> {"applied", "val_dice_on",
    "val_dice_off"}. Shared with the nnU-Net row, which decides on its own validation fold."""
    from vlsa.engine.inference import score

    on = score(val, native, spec, distances=False, postprocess=True).aggregate()["dice"]["mean"]
    off = score(val, native, spec, distances=False, postprocess=False).aggregate()["dice"]["mean"]
    return {"applied": bool(on >= off), "val_dice_on": float(on), "val_dice_off": float(off)}


def _decision(run_dir: Path, config, spec, model, device, val=None) -> dict:
    """Decide for the run's current checkpoint (`model` holds its weights); `val`: the prepared
    source validation split when the caller has it (training), else it is read from the data."""
    mode = config.eval.postprocess
    decision: dict = {"mode": mode, "applied": mode == "on"}
    if mode == "auto":
        if val is None:
            from vlsa.engine.data import prepare, source_validation

            val_samples = source_validation(config)  # DataError (one line) when the data is not there
            val = prepare(val_samples, config, spec) if val_samples else None
        if val is None or not len(val):
            decision |= {"applied": False, "reason": "no source validation split"}
        else:
            from vlsa.engine.inference import predict_prepared

            native, _ = predict_prepared(model, val, config.eval.batch_size, device, tta=config.eval.tta)
            decision |= choose(val, native, spec)
        decision["rule"] = RULE
    state = run_state(run_dir)
    decision |= {"checkpoint": state["checkpoint"], "finished": state["finished"]}
    write_json(run_dir / FILE, decision)
    return decision


def read_decision(run_dir: str | Path) -> dict | None:
    """The recorded decision when it was made for the run's current checkpoint, else None."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except ValueError:
        raise VlsaError(f"{path}: not valid JSON; delete it to decide post-processing again") from None
    if "applied" not in saved or saved.get("checkpoint") != checkpoint_identity(run_dir):
        return None
    return saved


def record(run_dir: str | Path, config, spec, val, device) -> dict:
    """At the end of training: decide on the prepared source validation split `val` with the
    selected checkpoint (best.pt, loaded here) and write postprocess.json."""
    from vlsa.engine.evaluate import load_run

    _, _, model = load_run(run_dir, device=str(device))
    return _decision(Path(run_dir), config, spec, model, device, val=val)


def decide(run_dir: str | Path, config, spec, model, device) -> dict:
    """For evaluation: the recorded decision when it matches the current checkpoint, else a new one
    on the source validation split (written to postprocess.json). -> {"mode", "applied",
    "val_dice_on", "val_dice_off" (auto), "checkpoint", "finished"}. Raises DataError when the
    decision must be made and the run's data cannot be read."""
    run_dir = Path(run_dir)
    saved = read_decision(run_dir)
    if saved is not None and saved.get("mode") == config.eval.postprocess:
        return saved
    return _decision(run_dir, config, spec, model, device)


def recorded(run_dir: str | Path, config, spec, model, device, choice: str | None = None) -> bool:
    """For prediction: whether to post-process. `choice` 'on'/'off' (predict --postprocess) wins;
    else the recorded decision, or a new one when the run's data is at hand. Raises VlsaError
    (naming postprocess.json) when there is neither: maps predicted without the decision could
    differ from the ones evaluation scored."""
    if choice in ("on", "off"):
        return choice == "on"
    run_dir = Path(run_dir)
    if config.eval.postprocess != "auto":
        return config.eval.postprocess == "on"
    saved = read_decision(run_dir)
    if saved is not None:
        return bool(saved["applied"])
    if config.data.root is None or Path(config.data.root).is_dir():  # synthetic (regenerated) or present
        return bool(decide(run_dir, config, spec, model, device)["applied"])
    raise VlsaError(f"{run_dir / FILE}: no post-processing decision recorded for the run's checkpoint, and its "
                    f"source validation data ({config.data.root}) is not here to make one; run `vlsa evaluate "
                    f"--run {run_dir}` where the data is, or choose with --postprocess on|off")
