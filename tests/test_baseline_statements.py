"""Issue 25, row 7: what `--set model.name=unet` trains under each packaged config, and the `--set`s
for plain ERM, as the config comments and the table in docs/method.md ("Baselines") state them, checked against the configs
and the DG table's row definitions (benchmarks/dg_table.py METHODS)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from vlsa.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (ROOT / "src" / "vlsa" / "configs").glob("*.yaml"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from dg_table import METHODS  # noqa: E402

UNET = re.compile(r'`--set model\.name=unet` trains the "([^"]+)" row')
PLAIN = re.compile(r'plain ERM \(the "ERM U-Net" row\): `([^`]+)`')


def _trains(config):
    """What a run trains, inert keys left out: GIN-IPA's probability while it is off, and the
    feature bank's views, which only a cached VLSA backbone reads."""
    aug = config.data.augment.model_dump()
    if not aug["gin_ipa"]:
        del aug["gin_ipa_p"]
    if config.model.name == "unet":
        del aug["views"]
    return config.model.name, aug


def _sets(text):
    """'--set a=1 --set b=2' -> ['a=1', 'b=2']."""
    words = text.split()
    assert words[::2] == ["--set"] * (len(words) // 2), text
    return words[1::2]


def _described(aug):
    """The table's words for an augment section's appearance policy."""
    words = [f"colour {aug.colour:g}", f"intensity {aug.intensity:g}"]
    if aug.randconv:
        words.append("RandConv")
    if aug.gin_ipa:
        words.append("GIN-IPA on every image" if aug.gin_ipa_p == 1 else f"GIN-IPA on {aug.gin_ipa_p:.0%} of the images")
    return ", ".join(words)


DOC = ROOT / "docs" / "method.md"  # the table of baselines per packaged config


def _doc_rows():
    text = DOC.read_text()
    header = "| packaged config | `--set model.name=unet` trains (row of the DG table: augmentation) | plain ERM"
    assert header in text, f"{DOC}: the table of baselines per packaged config"
    rows = {}
    for line in text[text.index(header):].splitlines()[2:]:
        if not line.startswith("| `"):
            break
        name, trains, plain = (cell.strip() for cell in line.strip("|").split(" | "))
        rows[name.strip("`")] = (trains, plain)
    return rows


@pytest.mark.parametrize("name", CONFIGS)
def test_the_config_comment_names_the_row_unet_trains_and_plain_erm(name):
    comments = " ".join(line.split("#", 1)[1].strip() for line in
                        (ROOT / "src" / "vlsa" / "configs" / f"{name}.yaml").read_text().splitlines() if "#" in line)
    row, plain = UNET.search(comments), PLAIN.search(comments)
    assert row and plain, f"{name}.yaml: no statement of what model.name=unet trains and how to get plain ERM"
    assert _trains(load_config(name, ["model.name=unet"])) == _trains(load_config(name, METHODS[row.group(1)]))
    assert _trains(load_config(name, _sets(plain.group(1)))) == _trains(load_config(name, METHODS["ERM U-Net"]))
    # the row is not plain ERM under any packaged config (colour jitter is on in all of them)
    assert row.group(1) != "ERM U-Net"


@pytest.mark.parametrize("name", CONFIGS)
def test_the_doc_table_says_the_same_as_the_config(name):
    rows = _doc_rows()
    assert name in rows, f"{DOC}: no row for the packaged config {name}"
    trains, plain = rows[name]
    comments = (ROOT / "src" / "vlsa" / "configs" / f"{name}.yaml").read_text()
    row = UNET.search(" ".join(line.split("#", 1)[1].strip() for line in comments.splitlines() if "#" in line))
    assert trains.startswith(f'"{row.group(1)}": ')
    # the stated augmentation is the config's
    assert trains.split(": ", 1)[1].startswith(_described(load_config(name, ["model.name=unet"]).data.augment))
    assert _trains(load_config(name, _sets(plain.strip("`")))) == _trains(load_config(name, METHODS["ERM U-Net"]))
