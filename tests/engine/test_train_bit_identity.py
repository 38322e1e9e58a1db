"""The training loop's numbers, pinned: short fixed-seed runs whose checkpoints (weights, optimizer
state, EMA, step, best) and log (all columns but the wall-clock `seconds`) hash to digests produced
by the loop before it was split into named steps (issue 31).

The digests are hard-coded on purpose: the refactor had to be bit-identical, and the synthetic data
generator (src/vlsa/data/synth, frozen by its own digest test) writes the same images on every
machine, so the pre-refactor code's digest is the reference. They depend on torch's CPU kernels,
hence the torch version they were made with is part of the key (another torch skips, saying so),
so is the CPU's kernel set (REFERENCE_BY_CPU, keyed by kernel_kind()), and the runs use one thread. A change that is MEANT
to change training (a new augmentation draw, another split) changes them: regenerate with
`PYTHONPATH=src python -m tests.engine.test_train_bit_identity` and say why in the commit.
"""

from __future__ import annotations

import csv
import hashlib
import sys

import pytest
import torch

from tests.conftest import tiny_overrides
from vlsa.config import build_config

# made by the pre-refactor train() (commit 1e7a621), torch 2.14.1 CPU, one thread
REFERENCE = {
    "torch": "2.14.1",
    "unet": "99d6dbb07fb3a7064d0508b05b34bcee4edd3975b7bf7ef0c012127293493739",
    "unet-ema-consistency": "a6ba53fe59c6e57786e554a495ec2654179fe3c63c93974d007235a4ecd3b03e",
    "vlsa-cached-ema-consistency": "3419521a03398861e579f56b24c9b4c2c369a71e6ee69106117be1ffa0ccb27b",
}
# The same runs on a CPU whose best kernel set is AVX2 (torch.backends.cpu.get_cpu_capability(); no
# AVX-512): its vectorised kernels round differently, so the digests differ by machine kind. Made with
# commit c3736fe (which passed against REFERENCE on CI) and checked equal at the commit adding them.
REFERENCE_BY_CPU = {
    "AVX2": {
        "unet": "6a6e50e4e931d45e00b94b99fe46acfadb1b86a96ea2d9636b19c7533b81c6d3",
        "unet-ema-consistency": "4ff37bc01d8a26daeac7df42a2f77f59c1c8b1b308222cce1cbaa150e779dac2",
        "vlsa-cached-ema-consistency": "5dfaaa06c583b4b802398b4d2eff4d92dda3f733ca65d75453a6b810d5ecf8e0",
    },
    # An AMD EPYC whose AVX-512 has the BF16 extension (/proc/cpuinfo avx512_bf16): torch reports the
    # same capability, AVX512, as the reference machine, but its kernels round differently. Made with
    # commit 4a2a828 (which passed against REFERENCE on CI) and equal at the commit adding them.
    "AVX512+BF16": {
        "unet": "65b6b040447bbdf2694a5f4f7460cab4eecc2e90a9f2294248acba125522547f",
        "unet-ema-consistency": "9c618e23ad72d0b98f0366432b625379ec0e34636cda6642ed5322b735c810ea",
        "vlsa-cached-ema-consistency": "80c9fce27cb5752dcb21566728b8bc7faf9878d57f0ce56190d928c46c7a9b55",
    },
}


def kernel_kind() -> str:
    """torch's CPU capability (AVX2, AVX512, ...), with +BF16 where the CPU has AVX-512 BF16: the
    key of the reference digests (machines of one capability differ there)."""
    try:
        with open("/proc/cpuinfo") as fh:
            bf16 = "avx512_bf16" in fh.read()
    except OSError:
        bf16 = False
    capability = torch.backends.cpu.get_cpu_capability()
    return capability + ("+BF16" if bf16 and capability == "AVX512" else "")

VLSA_TINY = ["model.name=vlsa", "model.decoder.dim=16", "model.decoder.embed_dim=16", "model.em.k=8",
             "model.backbone.cnn_width=8"]
RUNS = {
    "unet": [],
    "unet-ema-consistency": ["train.ema=0.5", "data.augment.consistency=10"],
    # a frozen, cached backbone: the feature bank, two appearance views drawn from it per step
    "vlsa-cached-ema-consistency": [*VLSA_TINY, "train.ema=0.5", "data.augment.consistency=10",
                                    "data.augment.views=2"],
}


def _feed(h, value) -> None:
    """Canonical bytes of a checkpoint's nested dicts / lists / tensors / numbers into `h`."""
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            h.update(f"<{key}>".encode())
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"[{len(value)}".encode())
        for item in value:
            _feed(h, item)
    elif isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        h.update(repr(value).encode())


def run_digest(run) -> str:
    """sha256 of best.pt and last.pt (model, optimizer, step, best, extra: not the config, whose
    data.root is a temporary folder) and of log.csv without its wall-clock column."""
    h = hashlib.sha256()
    for name in ("best.pt", "last.pt"):
        state = torch.load(run / "checkpoints" / name, weights_only=True)
        _feed(h, {k: state[k] for k in ("model", "optimizer", "step", "best", "extra")})
    with open(run / "log.csv", newline="") as fh:
        _feed(h, [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)])
    return h.hexdigest()


def _frozen_cnn(monkeypatch):
    """A frozen, cached CNN stands in for LiteMedSAM (the same code path: feature bank, views)."""
    from vlsa.models import vlsa as vlsa_mod

    build = vlsa_mod.build_backbone

    def frozen(cfg_b, c, s):
        b = build(cfg_b, c, s)
        b.frozen = True
        b.requires_grad_(False)
        return b

    monkeypatch.setattr(vlsa_mod, "build_backbone", frozen)


def _train(name, root, out, monkeypatch, **kwargs):
    from vlsa.engine.train import train

    if name.startswith("vlsa-cached"):
        _frozen_cnn(monkeypatch)
    overrides = tiny_overrides(root, steps=6) + ["train.threads=1", *RUNS[name]]
    return train(build_config({}, overrides), out, quiet=True, **kwargs)


@pytest.mark.parametrize("name", list(RUNS))
def test_a_short_run_reproduces_the_reference_digest(fundus_root, tmp_path, monkeypatch, name):
    if torch.__version__.split("+")[0] != REFERENCE["torch"]:
        pytest.skip(f"reference digests were made with torch {REFERENCE['torch']}, not {torch.__version__}")
    threads = torch.get_num_threads()
    try:
        run = _train(name, fundus_root, tmp_path / name, monkeypatch)
    finally:
        torch.set_num_threads(threads)
    expected = REFERENCE_BY_CPU.get(kernel_kind(), REFERENCE)[name]
    assert run_digest(run) == expected


def test_stopped_and_resumed_reproduces_the_uninterrupted_digest(fundus_root, tmp_path, monkeypatch):
    # the digest covers the optimizer state, the EMA's count and the log, beyond the weights
    from vlsa.engine.train import train

    name = "vlsa-cached-ema-consistency"
    threads = torch.get_num_threads()
    try:
        full = _train(name, fundus_root, tmp_path / "full", monkeypatch)
        part = _train(name, fundus_root, tmp_path / "part", monkeypatch, stop_at=3)
        assert run_digest(part) != run_digest(full)
        train(None, part, resume=True, quiet=True)
    finally:
        torch.set_num_threads(threads)
    assert run_digest(part) == run_digest(full)


def _print_reference() -> None:  # pragma: no cover - the regeneration helper named in the docstring
    import tempfile
    from pathlib import Path

    from vlsa.data.synth.fundus import generate_fundus

    class _Patch:  # monkeypatch outside pytest
        def setattr(self, obj, name, value):
            setattr(obj, name, value)

    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ["VLSA_CACHE"] = str(Path(tmp) / "cache")
        root = generate_fundus(Path(tmp) / "fundus", per_domain=10, size=64, seed=0)
        print(f"# kernel kind {kernel_kind()}")
        print(f'    "torch": "{torch.__version__.split("+")[0]}",')
        for name in RUNS:
            run = _train(name, root, Path(tmp) / name, _Patch())
            print(f'    "{name}": "{run_digest(run)}",')


if __name__ == "__main__":  # pragma: no cover
    torch.set_num_threads(1)
    _print_reference()
    sys.exit(0)
