"""Any `transformers` ViT vision tower (CLIP, DINOv2, SigLIP) as a multi-scale backbone.

Loaded with `from_pretrained` from a local folder or a hub id. Hidden states of four evenly spaced
layers are turned into 2D maps (position embeddings interpolated for the input size) and a
ViTDet-style simple feature pyramid resamples them to strides p/4, p/2, p, 2p (p = patch size):
x4 and x2 transposed convolutions, identity, and max-pooling.

With `tuning: frozen` only the tower is frozen: the feature cache holds its hidden-state maps
(`frozen_stage`) and the pyramid runs on them with gradients (`pyramid_from`), so it trains.

Tuning modes: `full`, `frozen`, `frozen+tokens` (Rein-style: per layer, learnable tokens that the
layer's patch tokens attend to, added as a refinement of that layer's output), `lora` (HF peft on
the attention projections).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vlsa.errors import ConfigError

# attention query/value projections, as named by the transformers versions we support
LORA_CANDIDATES = ("q_proj", "v_proj", "query", "value")


def lora_targets(model: nn.Module) -> list[str]:
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    found = [c for c in LORA_CANDIDATES if c in names]
    if not found:
        raise ConfigError("model.backbone.tuning: lora found no attention projections in this vision model")
    return found


def load_vision_tower(path: str) -> tuple[nn.Module, object]:
    """-> (vision model, its config). CLIP/SigLIP checkpoints give their vision tower only."""
    from transformers import AutoConfig, AutoModel, CLIPVisionModel, SiglipVisionModel

    from vlsa.utils.hf_quiet import quiet_hf_loading

    quiet_hf_loading()
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.backbone.path: cannot load a transformers model from {path!r} ({exc.__class__.__name__})") from None
    kind = config.model_type
    if kind in ("clip", "clip_vision_model"):
        return CLIPVisionModel.from_pretrained(path), kind
    if kind in ("siglip", "siglip_vision_model"):
        return SiglipVisionModel.from_pretrained(path), kind
    return AutoModel.from_pretrained(path), kind


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    for path in ("vision_model.encoder.layers", "encoder.layer", "encoder.layers"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    raise ConfigError("model.backbone.path: unsupported vision model (no encoder layers found)")


class LayerTokens(nn.Module):
    """Rein-style refinement: patch tokens attend to m learnable tokens; the result, through a
    zero-initialised projection, is added to the layer output (so training starts from the
    frozen model's features)."""

    def __init__(self, dim: int, num_tokens: int):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(num_tokens, dim) * dim**-0.5)
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        attn = torch.softmax(h @ self.tokens.t() / h.shape[-1] ** 0.5, dim=-1)  # B x N x m
        return h + self.proj(attn @ self.tokens)


class HFBackbone(nn.Module):
    def __init__(self, path: str | None, in_channels: int, tuning: str = "frozen", input_size: int = 224,
                 num_tokens: int = 16, lora_rank: int = 8):
        super().__init__()
        if not path:
            raise ConfigError("model.backbone.path: required for the 'hf' backbone (a local folder or hub id)")
        model, kind = load_vision_tower(path)
        cfg = model.config
        self.kind = kind
        self.patch = int(cfg.patch_size)
        self.dim = int(cfg.hidden_size)
        self.register_tokens = int(getattr(cfg, "num_register_tokens", 0) or 0)
        self.has_cls = kind not in ("siglip", "siglip_vision_model")
        self.input_size = input_size - input_size % self.patch
        self.in_channels = in_channels
        n_layers = int(cfg.num_hidden_layers)
        self.layer_ids = sorted({max(1, round(n_layers * f)) for f in (0.25, 0.5, 0.75, 1.0)})
        while len(self.layer_ids) < 4:
            self.layer_ids.insert(0, self.layer_ids[0])
        self.tuning = tuning
        self.model = model
        if tuning in ("frozen", "frozen+tokens", "lora"):
            self.model.requires_grad_(False)
        if tuning == "frozen+tokens":
            self.tokens = nn.ModuleList(LayerTokens(self.dim, num_tokens) for _ in encoder_layers(model))
            for layer, tok in zip(encoder_layers(model), self.tokens):
                layer.register_forward_hook(_refine_hook(tok))
        elif tuning == "lora":
            from peft import LoraConfig, get_peft_model

            self.model = get_peft_model(model, LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank,
                                                          target_modules=lora_targets(model)))
        elif tuning not in ("full", "frozen"):
            raise ConfigError(f"model.backbone.tuning: {tuning!r} is not one of full, frozen, frozen+tokens, lora")
        d = self.dim
        self.pyramid = nn.ModuleList([
            nn.Sequential(nn.ConvTranspose2d(d, d // 2, 2, 2), nn.GroupNorm(1, d // 2), nn.GELU(),
                          nn.ConvTranspose2d(d // 2, d // 4, 2, 2)),
            nn.ConvTranspose2d(d, d // 2, 2, 2),
            nn.Identity(),
            nn.MaxPool2d(2),
        ])
        self.out_channels = [d // 4, d // 2, d, d]
        self.strides = [max(1, self.patch // 4), max(1, self.patch // 2), self.patch, 2 * self.patch]

    @property
    def frozen(self) -> bool:
        return self.tuning == "frozen"

    def tower_grids(self, x: torch.Tensor) -> list[torch.Tensor]:
        """B x C x H x W -> four B x D x s x s hidden-state maps of the tower (s = input_size / patch).
        With `tuning: frozen` this is the only frozen computation, so the only one that may be cached."""
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        kwargs = {"interpolate_pos_encoding": True} if self.kind in ("clip", "clip_vision_model", "siglip", "siglip_vision_model") else {}
        out = self.model(pixel_values=x, output_hidden_states=True, **kwargs)
        side = self.input_size // self.patch
        skip = (1 if self.has_cls else 0) + self.register_tokens
        return [out.hidden_states[i][:, skip:].transpose(1, 2).reshape(x.shape[0], self.dim, side, side)
                for i in self.layer_ids]

    def pyramid_from(self, grids: list[torch.Tensor], size) -> list[torch.Tensor]:
        """The trainable ViTDet pyramid on the tower's maps -> maps at strides p/4, p/2, p, 2p of
        the model input of spatial `size` (always run with gradients, never cached)."""
        maps = [level(grid) for grid, level in zip(grids, self.pyramid)]
        # express the pyramid at the strides of the model input (the tower ran at input_size)
        return [F.interpolate(m, size=(max(1, size[0] // s), max(1, size[1] // s)), mode="bilinear", align_corners=False)
                for m, s in zip(maps, self.strides)]

    @property
    def frozen_stage(self) -> nn.Module:
        """The cacheable part (`vlsa.models.backbones.cache`): the tower, as a module whose forward is
        `tower_grids`; its weights fingerprint keys the cache. `pyramid_from` finishes its output."""
        stage = self.__dict__.get("_stage")
        if stage is None:  # one object, so its fingerprint is computed once
            stage = _TowerStage(self)
            object.__setattr__(self, "_stage", stage)
        return stage

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.pyramid_from(self.tower_grids(x), x.shape[-2:])


class _TowerStage(nn.Module):
    """The frozen tower of an HFBackbone as a module (shares its weights; not registered as a child)."""

    def __init__(self, backbone: HFBackbone):
        super().__init__()
        self.model = backbone.model  # registered, so state_dict (and the fingerprint) cover the tower
        object.__setattr__(self, "_owner", backbone)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._owner.tower_grids(x)


def _refine_hook(tokens: LayerTokens):
    def hook(module, args, output):
        if isinstance(output, tuple):
            return (tokens(output[0]), *output[1:])
        return tokens(output)

    return hook
