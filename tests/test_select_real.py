"""The real-data selection (benchmarks/select_real.py) applies select_vlsa's rule 2 with VLSA as the default."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import select_real  # noqa: E402
from select_vlsa import CLEAN_TOLERANCE, SHIFT_GAIN  # noqa: E402


def _seeds(clean: float, shifted: float, unseen: float = 0.80, seeds=("s0", "s1")) -> dict:
    return {s: {"source_val": clean, "shifted": shifted, "per_corruption": {"gamma 0.4": shifted},
                "source_test": clean, "unseen": unseen} for s in seeds}


def test_a_candidate_replaces_vlsa_only_with_corrupted_gain_and_no_clean_loss():
    results = {"fundus": {
        "VLSA": _seeds(0.90, 0.70),
        # clears the corrupted gain and stays within the clean tolerance: chosen
        "VLSA (medsam)": _seeds(0.90 - CLEAN_TOLERANCE / 2, 0.70 + SHIFT_GAIN + 1e-6),
        # more robust still, but loses too much clean source validation: not chosen
        "VLSA (hybrid)": _seeds(0.90 - 2 * CLEAN_TOLERANCE, 0.90),
        # far better on the unseen sites, not on source data: the unseen column never decides
        "VLSA w/o EM": _seeds(0.90, 0.70, unseen=0.99),
    }}
    assert select_real.choose(results, "fundus") == "VLSA (medsam)"
    del results["fundus"]["VLSA (medsam)"]
    assert select_real.choose(results, "fundus") == "VLSA"
    # compared over the same seeds only: a passing candidate with a seed missing is not eligible
    results["fundus"]["VLSA (medsam)"] = _seeds(0.90, 0.80, seeds=("s0",))
    assert select_real.choose(results, "fundus") == "VLSA"
    assert "not eligible" in select_real._delta(results, "fundus", "VLSA (medsam)")
    # a setting with no results keeps the default
    assert select_real.choose(results, "cardiac") == "VLSA"


def test_the_report_states_the_verdict_per_setting():
    results = {"cardiac": {"VLSA": _seeds(0.90, 0.70), "VLSA w/o EM": _seeds(0.90, 0.70 + SHIFT_GAIN / 2)}}
    prov = {"command": "c", "date": "d", "machine": {"cores": 2, "threads": 1, "platform": "p", "device": "cpu", "gpu": None},
            "versions": {"python": "3", "torch": "2"}}
    md = select_real.report(results, ["cardiac | VLSA text=none | seed 0: unfinished"], prov, [0, 1])
    assert "Rule 2 (cardiac): **VLSA**." in md and "VLSA (medsam)" in md and "unfinished" in md


def test_a_fresh_checkout_keeps_the_recorded_units_and_replaces_those_read_again():
    saved = {"seeds": [0, 1, 2], "results": {"fundus": {"VLSA": _seeds(0.90, 0.70, seeds=("s0", "s1", "s2")),
                                                        "VLSA (medsam)": _seeds(0.91, 0.60)}},
             "skipped": ["fundus | VLSA (medsam) | seed 2: unfinished (no protocol.json)",
                         "cardiac | VLSA | seed 0: unfinished (no protocol.json)"]}
    now = {"fundus": {"VLSA (medsam)": _seeds(0.92, 0.65, seeds=("s1", "s2")), "VLSA (DSU)": _seeds(0.93, 0.75)}}
    merged, skipped, seeds = select_real.merge_recorded(saved, now, ["fundus | VLSA (hybrid) | seed 0: no run"], [0, 1])
    fundus = merged["fundus"]
    assert set(fundus["VLSA"]) == {"s0", "s1", "s2"} and fundus["VLSA"]["s2"]["shifted"] == 0.70  # kept
    assert fundus["VLSA (medsam)"]["s0"]["shifted"] == 0.60  # recorded, not read again: kept
    assert fundus["VLSA (medsam)"]["s1"]["shifted"] == 0.65  # read again: replaced
    assert set(fundus["VLSA (DSU)"]) == {"s0", "s1"}
    # the recorded skip of a unit now read is dropped; the others stay, with this run's
    assert skipped == ["cardiac | VLSA | seed 0: unfinished (no protocol.json)", "fundus | VLSA (hybrid) | seed 0: no run"]
    assert seeds == [0, 1, 2]
    assert saved["results"]["fundus"]["VLSA (medsam)"]["s1"]["shifted"] == 0.60  # the record itself is untouched


def test_what_the_report_says_was_packaged_is_what_the_packaging_gate_decided():
    """PACKAGING's prose and the gate's recorded verdict (drishti_packaging.json) must agree (the
    report's numbers are the gate's, read when it is written), and drishti_sdg must train exactly the
    gated candidate said to be packaged."""
    import json

    import packaging_check

    from vlsa.config import load_config

    recorded = json.loads((select_real.RESULTS / "vlsa_selection_real.json").read_text())
    for setting, text in select_real.PACKAGING.items():
        chosen = recorded["chosen"][setting]
        assert chosen != select_real.DEFAULT
        reading = select_real.gate_reading(chosen)
        assert "vCDR absolute error per photo x seed" in reading
        if text.startswith("Packaged"):
            assert chosen == packaging_check.PACKAGED and "may ship" in reading
        else:
            assert text.startswith("Not packaged") and "not packaged: worse" in reading
    packaged = load_config("drishti_sdg", ["data.root=/x"])
    assert packaged.digest() == load_config("drishti_sdg", ["data.root=/x",
                                                            *packaging_check.VARIANTS[packaging_check.PACKAGED]]).digest()
    assert packaged.digest() != load_config("drishti_sdg", ["data.root=/x",
                                                            *packaging_check.VARIANTS[packaging_check.REFERENCE]]).digest()
    assert select_real.gate_reading("VLSA (no such row)").startswith("Not gated yet:")
