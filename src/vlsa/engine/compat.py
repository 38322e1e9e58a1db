"""What data must share with a trained run to be scored by it: the classes (names, order, mask
values) and the image channels; and the mask value each label index has in the dataset's files."""

from __future__ import annotations

import json
from pathlib import Path

from vlsa.errors import VlsaError


def run_info(run_dir: str | Path) -> dict:
    """The run's run.json ({} for a run directory without one)."""
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def check_compatible(run_dir: Path, spec, reader) -> None:
    """Refuse data whose classes (names, order, mask values) or channels differ from the run's:
    the model's output index i means the run's class i, so another order scores Dice 0 silently.
    Mask values are compared only for data read by the run's own reader (a folder dataset whose
    classes.yaml gives 'disc' another grey level is another labelling); another reader (DoFE crops
    for a Drishti-GS1 run) decodes its own release's encoding into the same named classes, so
    there the names, their order and the channels decide. Raises VlsaError naming the data."""
    info = run_info(run_dir)
    same_reader = info.get("reader") in (None, type(reader).__name__)
    run_values = info.get("mask_values") if same_reader else None
    theirs, mine = reader.spec, spec
    data_values = mask_values(reader)
    same = (tuple(theirs.label_names) == tuple(mine.label_names) and dict(theirs.regions) == dict(mine.regions)
            and theirs.channels == mine.channels and (run_values is None or list(data_values) == list(run_values)))
    if not same:
        def describe(s, values):
            names = list(s.label_names[1:])
            shown = f", values {list(values[1:])}" if values is not None and run_values is not None else ""
            return f"classes {names}{shown}, {s.channels} channel(s)"

        where = reader.root / "classes.yaml" if (reader.root / "classes.yaml").is_file() else reader.root
        raise VlsaError(f"{where}: {describe(theirs, data_values)} differ from the run's "
                        f"{describe(mine, run_values)} ({run_dir / 'run.json'}); evaluate on data with the same classes")


def mask_values(reader) -> tuple[int, ...]:
    """Label index -> the pixel value the dataset's own mask files use for it."""
    values = getattr(reader, "values", None)  # folder: mask value -> index
    if isinstance(values, dict):
        inverse = {index: value for value, index in values.items()}
        return tuple(int(inverse[i]) for i in range(reader.spec.num_classes))
    if reader.spec.output_values is not None:
        return tuple(reader.spec.output_values)
    return MASK_VALUES.get(type(reader).__name__, tuple(range(reader.spec.num_classes)))


# reader -> grey level of each label index (background, rim, cup) in the public releases' mask files
# (docs/datasets.md); readers not listed (M&Ms) store the label indices themselves
MASK_VALUES = {"DoFEReader": (255, 128, 0), "RigaReader": (0, 255, 128)}
