"""The demo's side-by-side table: each method's column holds that method's numbers, and the unseen
mean averages the target sites only."""

from vlsa.engine.demo import side_by_side


def _metrics(values: dict[str, tuple[float, float]], source: str) -> dict:
    return {"source": [source], "domains": {
        d: {"role": "source" if d == source else "target", "n": 10,
            "dice": {"disc": a, "cup": b, "mean": (a + b) / 2}} for d, (a, b) in values.items()}}


def test_side_by_side_puts_each_methods_numbers_in_its_columns():
    erm = _metrics({"S": (0.9, 0.8), "T1": (0.5, 0.3), "T2": (0.7, 0.1)}, "S")
    vlsa = _metrics({"S": (0.95, 0.85), "T1": (0.8, 0.6), "T2": (0.9, 0.5)}, "S")
    lines = side_by_side({"ERM U-Net": erm, "VLSA": vlsa}).splitlines()
    header = lines[0].split()
    assert header[:3] == ["domain", "role", "n"] and "VLSA:" in header
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["S"][1] == "source" and rows["T1"][1] == "unseen"
    assert rows["T1"][3:] == ["0.500", "0.300", "0.400", "0.800", "0.600", "0.700"]
    unseen = lines[-1].split()
    assert unseen[:2] == ["unseen", "mean"] and unseen[2] == "20"
    assert unseen[3:] == ["0.600", "0.200", "0.400", "0.850", "0.550", "0.700"]
