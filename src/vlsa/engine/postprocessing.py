"""Whether a run's predictions are post-processed (vlsa.postprocess), decided on SOURCE VALIDATION.

`eval.postprocess: on|off` is taken as given. `auto` scores the run's source validation split
(the cases held out of training, never a target domain) with and without post-processing and
keeps it on unless it lowers mean Dice there: the rules are prior anatomical knowledge, so they are
the default, and source evidence that they hurt (e.g. a weak model whose largest blob is the wrong
one) turns them off. The decision and both numbers are kept in the run
directory (postprocess.json), so evaluation and prediction apply the same choice.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlsa.utils.atomic import write_json

FILE = "postprocess.json"


def decide(run_dir: str | Path, config, spec, model, device) -> dict:
    """-> {"mode", "applied", "val_dice_on", "val_dice_off"} (the val numbers only for auto)."""
    mode = config.eval.postprocess
    if mode != "auto":
        return {"mode": mode, "applied": mode == "on"}
    path = Path(run_dir) / FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("mode") == "auto" and "applied" in saved:
            return saved
    from vlsa.engine.data import domains_of, load_source, open_configured, prepare
    from vlsa.engine.inference import predict_prepared, score

    try:
        reader = open_configured(config)
    except Exception:  # the training data is not at hand (prediction elsewhere): no evidence, stay off
        return {"mode": mode, "applied": False, "reason": "source validation data not available"}
    sources, _ = domains_of(config, reader)
    _, val_samples = load_source(config, reader, sources)
    if not val_samples:
        decision = {"mode": mode, "applied": False, "reason": "no source validation split"}
    else:
        val = prepare(val_samples, config, spec)
        native, _ = predict_prepared(model, val, config.eval.batch_size, device)
        kept = reader.spec.annotated  # regions the source does not annotate decide nothing
        on = score(val, native, spec, distances=False, postprocess=True, annotated=kept).aggregate()["dice"]["mean"]
        off = score(val, native, spec, distances=False, postprocess=False, annotated=kept).aggregate()["dice"]["mean"]
        decision = {"mode": mode, "applied": bool(on >= off), "val_dice_on": float(on), "val_dice_off": float(off)}
    write_json(path, decision)
    return decision
