"""Synthetic multi-site stand-ins for the paper's datasets, written in the real on-disk layouts."""

from __future__ import annotations

from pathlib import Path


def generate(kind: str, out: str | Path, count: int, size: int = 128, seed: int = 0) -> Path:
    """Write the synthetic `fundus` (count ROIs per site) or `cardiac` (count subjects per vendor)
    set to `out`, with a progress bar."""
    from tqdm import tqdm

    if kind == "fundus":
        from vlsa.data.synth.fundus import generate_fundus

        with tqdm(total=4 * count, desc="synth fundus", unit="img") as bar:
            return generate_fundus(out, count, size, seed, progress=bar)
    from vlsa.data.synth.cardiac import generate_cardiac

    with tqdm(total=4 * count, desc="synth cardiac", unit="subject") as bar:
        return generate_cardiac(out, count, seed, progress=bar)
