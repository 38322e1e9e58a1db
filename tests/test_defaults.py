"""VLSA is the product's default, and every method of the DG table trains under one augmentation
policy (only the plain-ERM reference turns its appearance part off)."""

import importlib.util
from pathlib import Path

from vlsa.config import build_config, load_config

ROOT = Path(__file__).resolve().parents[1]


def _dg_table():
    spec = importlib.util.spec_from_file_location("dg_table", ROOT / "benchmarks" / "dg_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vlsa_with_the_appearance_policy_is_the_default():
    cfg = build_config()
    assert cfg.model.name == "vlsa" and cfg.data.augment.colour > 0 and cfg.eval.postprocess == "auto"
    import json

    selection = json.loads((ROOT / "benchmarks" / "results" / "vlsa_selection.json").read_text())
    for dataset in ("fundus", "mms"):
        path = ROOT / "configs" / f"{dataset}_sdg.yaml"
        sdg = load_config(path)
        assert sdg.model.name == "vlsa" and sdg.model.backbone.name == cfg.model.backbone.name
        # the packaged config is the candidate source-only selection chose: its overrides change nothing
        chosen = selection["chosen_2"][dataset]
        assert load_config(path, selection["candidates"][chosen]) == sdg, (dataset, chosen)
        # the shared policy, plus the single-source DG augmentation where one was chosen
        sdg_keys = ("randconv", "gin_ipa", "gin_ipa_p")
        assert sdg.data.augment.model_copy(update={k: getattr(cfg.data.augment, k) for k in sdg_keys}) == cfg.data.augment


def test_dg_table_methods_share_one_policy_and_derive_the_postprocessing_row():
    dg = _dg_table()
    policy_keys = {"data.augment.colour", "data.augment.intensity", "data.augment.views", "data.augment.flip",
                   "data.augment.rotate", "data.augment.scale"}
    for method, overrides in dg.METHODS.items():
        touched = {o.split("=")[0] for o in overrides} & policy_keys
        assert touched == ({"data.augment.colour"} if method == "ERM U-Net" else set()), method
    assert dg.METHODS["VLSA"] == []  # the default configuration, as a user gets it
    assert "data.augment.randconv=true" in dg.METHODS["ERM U-Net + RandConv"]
    # the ERM rows keep RandConv off even where VLSA's config turns it on
    assert all("data.augment.randconv=false" in dg.METHODS[m] for m in ("ERM U-Net", "ERM U-Net + colour aug"))
    # ... and GIN-IPA off; each SDG row has its own augmentation on and the other off
    assert all("data.augment.gin_ipa=false" in dg.METHODS[m]
               for m in ("ERM U-Net", "ERM U-Net + colour aug", "ERM U-Net + RandConv"))
    for row, p in (("ERM U-Net + GIN-IPA", 1), ("ERM U-Net + GIN-IPA p 0.5", 0.5)):
        assert {"data.augment.gin_ipa=true", "data.augment.randconv=false", f"data.augment.gin_ipa_p={p}"} \
            <= set(dg.METHODS[row]) and row in dg.BASELINES
    # every baseline row resolves to the same augmentation on both datasets (only VLSA's may differ)
    for method in dg.BASELINES[:-1]:
        fundus, mms = (dg.unit_config(d, method, 0).data.augment for d in ("fundus", "mms"))
        assert fundus == mms, method
    method, key = dg.DERIVED["VLSA w/o post-processing"]
    assert method == "VLSA" and key == "domains_postprocess_off"


def test_derived_row_reads_the_metrics_without_postprocessing(tmp_path):
    import json

    dg = _dg_table()
    run = {"source": ["A"], "domains": {"B": {"role": "target", "dice": {"mean": 0.8}}},
           "domains_postprocess_off": {"B": {"role": "target", "dice": {"mean": 0.7}}}}
    unit = tmp_path / "fundus" / dg.slug("VLSA") / "s0"
    unit.mkdir(parents=True)
    (unit / "protocol.json").write_text(json.dumps({"runs": {"A": run}}))
    units = dg.collect(tmp_path)
    assert units[("fundus", "VLSA")][0]["runs"]["A"]["domains"]["B"]["dice"]["mean"] == 0.8
    assert units[("fundus", "VLSA w/o post-processing")][0]["runs"]["A"]["domains"]["B"]["dice"]["mean"] == 0.7
