"""The frozen LiteMedSAM TinyViT encoder compiled by OpenVINO (optional extra `vlsa[openvino]`).

OpenVINO (https://docs.openvino.ai) converts the eager encoder (`openvino.convert_model` from the torch
module) and compiles it for the CPU with its own kernels (BN folded, fused attention, no PyTorch
dispatch or allocator). The encoder is split in two compiled models:

- the patch embedding + 256² convolutional stage (stage 0) in float32: in bf16 it alone costs the
  pyramid 0.0005 in cosine, more than the 0.999 budget leaves for the rest;
- the three transformer stages + neck in bf16 (`INFERENCE_PRECISION_HINT`) on CPUs with native bf16
  (AVX512-BF16 / AMX), float32 otherwise.

Measured at 1 thread on 256 px synthetic fundus ROIs (benchmarks/results/encoder_cpu_1thread.md):
~0.68 s CPU per image against 2.2 s for the eager fp32 encoder and 1.1-1.3 s for the PyTorch `bf16`
path, features at mean cosine >= 0.9993 per map (all-bf16 is ~0.61 s but drops the deep maps to 0.9988).

The converted models are cached on disk (OpenVINO IR, keyed by a hash of the encoder weights and the
OpenVINO version) under $VLSA_ENCODER_CACHE_DIR (default $VLSA_CACHE/encoders or ~/.cache/vlsa/encoders),
so only the first process pays the ~20 s conversion; a later one reads them (and OpenVINO's compiled-blob
cache) in ~1 s.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

LAYOUT = "v1"  # bump when the split or the exported modules change: the disk cache key includes it
TOKENS0 = (16384, 128)  # stage-0 output of a 256 px image: 128² tokens x 128 channels


_FAILED: list[str] = []  # why OpenVINO could not convert/compile the encoder in this process, if it could not


def available() -> bool:
    """True when the `openvino` package can be imported here (and has not failed in this process)."""
    return not _FAILED and importlib.util.find_spec("openvino") is not None


def disable(exc: BaseException) -> None:
    """Stop using OpenVINO in this process after it failed on the encoder, with a one-line warning."""
    if not _FAILED:
        logging.getLogger("vlsa").warning(f"OpenVINO could not compile the LiteMedSAM encoder "
                                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                                          "the encoder runs in PyTorch")
    _FAILED.append(repr(exc))


def cache_root() -> Path:
    """$VLSA_ENCODER_CACHE_DIR, else $VLSA_CACHE/encoders, else ~/.cache/vlsa/encoders."""
    if os.environ.get("VLSA_ENCODER_CACHE_DIR"):
        return Path(os.environ["VLSA_ENCODER_CACHE_DIR"])
    return Path(os.environ.get("VLSA_CACHE") or Path.home() / ".cache" / "vlsa") / "encoders"


def weights_digest(module: nn.Module) -> str:
    """sha1 (16 hex) of the module's parameters and buffers, recomputed on every call."""
    digest = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class _Stage0(nn.Module):
    """B x 3 x 256 x 256 in [0, 1] -> B x 16384 x 128 tokens (patch embedding + conv stage)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.layers[0](self.encoder.patch_embed(x))


class _Transformer(nn.Module):
    """B x 16384 x 128 tokens -> (B x 160 x 64 x 64, B x 320 x 64 x 64, B x 256 x 64 x 64 neck)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, h: torch.Tensor):
        enc, outs = self.encoder, []
        for layer in enc.layers[1:]:
            h = layer(h)
            outs.append(h.transpose(1, 2).reshape(h.shape[0], h.shape[2], 64, 64))
        return outs[0], outs[1], enc.neck(outs[2])


class OpenVINOEncoder:
    """Callable: B x 3 x 256 x 256 float32 CPU tensor in [0, 1] -> [B x 128 x 128², B x 160 x 64²,
    B x 320 x 64², B x 256 x 64²] float32 (the TinyViT pyramid), one image per inference request.

    `encoder` is the eager TinyViT (eval mode); it is read, never modified. `all_bf16` also runs stage 0 in
    bf16 (benchmarks only: below the 0.999 cosine). Raises ImportError when `openvino` is missing (callers
    check `available()` first)."""

    def __init__(self, encoder: nn.Module, threads: int | None = None, bf16: bool | None = None,
                 all_bf16: bool = False):
        import openvino as ov

        from vlsa.models.backbones.fast_encoder import cpu_has_bf16

        self.bf16 = cpu_has_bf16() if bf16 is None else bf16
        threads = threads or torch.get_num_threads()
        folder = cache_root() / f"openvino-{ov.__version__.split('-')[0]}-{LAYOUT}-{weights_digest(encoder)}"
        models = self._load_or_convert(ov, encoder.eval(), folder)
        core = ov.Core()
        core.set_property({"CACHE_DIR": str(folder / "compiled")})

        def compile_(model, precision):
            return core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
                                                     "PERFORMANCE_HINT": "LATENCY",
                                                     "INFERENCE_PRECISION_HINT": precision})

        self.stage0 = compile_(models[0], "bf16" if all_bf16 and self.bf16 else "f32")
        self.transformer = compile_(models[1], "bf16" if self.bf16 else "f32")
        self._requests = (self.stage0.create_infer_request(), self.transformer.create_infer_request())

    @staticmethod
    def _load_or_convert(ov, encoder: nn.Module, folder: Path):
        files = [folder / "stage0.xml", folder / "transformer.xml"]
        if all(f.is_file() and f.with_suffix(".bin").is_file() for f in files):
            try:
                return [ov.Core().read_model(str(f)) for f in files]
            except RuntimeError:
                pass  # a damaged cache entry: convert again below
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript tracer warnings from TinyViT's shape asserts (batch 1 is
            # traced in; __call__ feeds one image per request)
            models = [ov.convert_model(_Stage0(encoder), example_input=torch.rand(1, 3, 256, 256)),
                      ov.convert_model(_Transformer(encoder), example_input=torch.rand(1, *TOKENS0))]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for model, f in zip(models, files):
                tmp = f.with_name(f".{f.stem}.{os.getpid()}.xml")
                ov.save_model(model, str(tmp), compress_to_fp16=False)
                os.replace(tmp.with_suffix(".bin"), f.with_suffix(".bin"))
                os.replace(tmp, f)
        except OSError:
            pass  # an unwritable cache only costs the conversion next time
        return models

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        first, second = self._requests
        out0, rest = [], []
        for image in x.detach().to("cpu", torch.float32).numpy():
            tokens = first.infer({0: np.ascontiguousarray(image[None])})[self.stage0.outputs[0]].copy()
            res = second.infer({0: tokens})
            out0.append(tokens)
            rest.append([res[o].copy() for o in self.transformer.outputs])
        tokens = torch.from_numpy(np.concatenate(out0))
        side = int(round(tokens.shape[1] ** 0.5))
        maps = [tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)]
        return maps + [torch.from_numpy(np.concatenate(level)) for level in zip(*rest)]
