"""benchmarks/tuning_cost.py's table: each tuning mode's step time against the frozen cached one,
and the hours one 600-step dg_real unit would take at that rate."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import tuning_cost  # noqa: E402


def test_the_table_gives_each_mode_its_ratio_to_the_cached_encoder_and_the_unit_hours():
    rows = [{"size": 96, "batch": 8, "mode": m, "trainable_params": 1000, "step_s": s, "load_average": 2.0,
             "unit_hours": s * tuning_cost.UNIT_STEPS / 3600} for m, s in (("frozen, cached", 0.5), ("lora", 30.0))]
    prov = {"command": "x", "date": "d", "machine": {"cores": 2, "threads": 1, "platform": "p", "device": "cpu",
                                                         "gpu": None}, "versions": {"torch": "t", "python": "p"}}
    md = tuning_cost.markdown(rows, prov)
    assert "| 96 | 8 | lora | 1,000 | 30.00 | 5.00 | 60× | 2.0 |" in md
    assert "| 96 | 8 | frozen, cached | 1,000 | 0.50 | 0.08 | 1× | 2.0 |" in md
    # every tuning the config accepts is measured, the cached frozen encoder (the rows' mode) among them
    assert {"frozen, cached", "lora", "full", "frozen+tokens"} <= set(tuning_cost.MODES)
