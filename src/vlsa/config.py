"""Typed, validated experiment configuration: YAML file + dotted `--set key=value` overrides.

Every default lives here. Unknown keys and wrong types are errors that name the dotted key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vlsa.errors import ConfigError

# Keys added after runs, checkpoints and benchmark records were keyed by config digests, each with
# the value that reproduces how training behaved before the key existed. At that value a key is
# left out of every digest, so a switch that is off by default invalidates nothing made before it.
# eval.tta: test-time augmentation (vlsa.engine.inference.model_logits); model.dsu: feature-statistics
# uncertainty in training (vlsa.models.feature_statistics)
TTA_MODES = ("off", "flip")
DIGEST_NEUTRAL: dict[tuple[str, ...], Any] = {("data", "augment", "consistency"): 0.0, ("train", "ema"): 0.0,
                                              ("data", "augment", "gin_ipa"): False, ("data", "augment", "gin_ipa_p"): 1.0,
                                              ("data", "augment", "view_zoom"): False,
                                              ("data", "agreement"): 2, ("data", "roi_scale"): 2.5,
                                              ("data", "target_datasets"): {},
                                              ("train", "mode"): "segmentation", ("eval", "lv_slice_ring"): 0.0,
                                              ("eval", "tta"): "off", ("model", "dsu"): 0.0,
                                              ("train", "locator"): {"enabled": False, "size": 128, "steps": 800}}


def digest_tree(tree: dict[str, Any]) -> dict[str, Any]:
    """A copy of a resolved config tree (`Config.to_dict()`) without the DIGEST_NEUTRAL keys that
    hold their neutral value: what every config digest hashes."""
    out = json.loads(json.dumps(tree))
    for path, neutral in DIGEST_NEUTRAL.items():
        parent = out
        for part in path[:-1]:
            parent = parent.get(part, {}) if isinstance(parent, dict) else {}
        if isinstance(parent, dict) and path[-1] in parent and parent[path[-1]] == neutral:
            del parent[path[-1]]
    return out


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SynthConfig(Strict):
    """Size of the synthetic set generated when `data.root` is not given (cached by these values)."""

    per_domain: int = Field(60, ge=4)
    size: int = Field(128, ge=32)
    seed: int = 0


def appearance_on(augment: dict[str, Any]) -> bool:
    """Whether an augment section's values (a dict: a validator's partial data or `dict(section)`)
    change appearance: colour, intensity, RandConv or GIN-IPA. The one definition behind
    `transforms.has_appearance` and the consistency check, so a new appearance switch is added once."""
    return (augment.get("colour", 0) > 0 or augment.get("intensity", 0) > 0 or bool(augment.get("randconv"))
            or bool(augment.get("gin_ipa")))


class AugmentConfig(Strict):
    flip: bool = True
    rotate: float = Field(15.0, ge=0, description="max rotation, degrees")
    scale: float = Field(0.1, ge=0, lt=1)
    intensity: float = Field(0.1, ge=0, description="brightness/contrast/gamma jitter")
    colour: float = Field(0.5, ge=0, description="strong per-channel colour/gamma/blur/noise jitter (0 = off)")
    views: int = Field(4, ge=1, description="cached frozen backbone: appearance-augmented views per training "
                                            "image in the feature bank (view 0 is the image as read)")
    randconv: bool = Field(False, description="RandConv (Xu et al., ICLR 2021): random-convolution images")
    gin_ipa: bool = Field(False, description="GIN-IPA (Ouyang et al., IEEE TMI 2023): random shallow non-linear "
                                             "networks, two draws blended by a smooth random map")
    # a parameter of GIN-IPA, inert while gin_ipa is off (so `--set data.augment.gin_ipa=false` alone
    # turns a config's GIN-IPA off)
    gin_ipa_p: float = Field(1.0, gt=0, le=1, description="GIN-IPA: probability per image (1 = every image, "
                                                          "the paper's setting)")
    view_zoom: bool = Field(False, description="cached frozen backbone: each bank view >= 1 is also zoomed "
                                               "in image space (a factor in 1 +- scale, fixed per image and view) "
                                               "before the encoder, its labels with it, and the feature-map warp "
                                               "keeps flip and rotation only; off: the zoom warps the feature maps")
    consistency: float = Field(0.0, ge=0, description="weight of the Jensen-Shannon consistency between the "
                                                       "predictions of two appearance draws of each warped image "
                                                       "(Xu et al., ICLR 2021); 0 = one draw, no consistency term")

    @field_validator("consistency")
    @classmethod
    def _consistency_needs_appearance(cls, value, info):
        # two draws of an identity augmentation are the same image: the term would silently do nothing
        if value > 0 and not appearance_on(info.data):
            raise ValueError("needs an appearance augmentation to compare two draws of "
                             "(data.augment.colour, intensity, randconv or gin_ipa)")
        return value


DatasetName = Literal["fundus", "riga", "mms", "nnunet", "folder", "drishti", "acdc", "sunnybrook"]


def _names(value):
    if isinstance(value, str):  # "hospA" or "hospA,hospB"
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class TargetDatasetConfig(Strict):
    """Another dataset whose domains are targets of the run (`data.target_datasets.NAME`): read
    with its own reader at its own root, in the same label space as `data.dataset`. Reader
    options left out (None) are those of the run's data section (`vlsa.engine.data.READER_OPTIONS`)."""

    dataset: DatasetName
    root: str | None = Field(None, description="the dataset's folder (generated when None, synthetic sets only)")
    domains: list[str] | None = Field(None, description="its domains to evaluate (default: all)")
    spacing: float | None = Field(None, gt=0, description="in-plane mm for volumes (default: data.spacing)")
    test_fraction: float | None = Field(None, gt=0, lt=1, description="default: data.test_fraction")
    domain_pattern: str | None = Field(None, description="nnunet (default: data.domain_pattern)")
    agreement: int | None = Field(None, ge=1, le=4, description="drishti (default: data.agreement)")
    roi_scale: float | None = Field(None, gt=1, description="drishti (default: data.roi_scale)")
    split: Literal["test", "all"] = Field("test", description="what evaluation scores: each domain's test split "
                                                            "(the literature's protocol) or all its labelled "
                                                            "images (never trained on; for sets of a few cases)")

    @field_validator("domains", mode="before")
    @classmethod
    def _one_or_list(cls, value):
        return _names(value)


class DataConfig(Strict):
    dataset: DatasetName = "fundus"
    root: str | None = None
    source: list[str] = Field(default_factory=lambda: ["Domain1"])
    targets: list[str] | None = None
    image_size: int = Field(96, ge=16)
    spacing: float | None = Field(None, gt=0, description="in-plane mm for volumes (mms, folder NIfTI)")
    normalise: Literal["none", "zscore"] = "zscore"
    val_fraction: float = Field(0.2, ge=0, lt=1)
    test_fraction: float = Field(0.3, gt=0, lt=1)
    domain_pattern: str | None = Field(None, description="nnunet: regex finding a case's domain in its name")
    agreement: int = Field(2, ge=1, le=4, description="drishti: experts (of 4) who must mark a pixel for it to "
                                                      "be disc/cup (2: soft map >= 128)")
    roi_scale: float = Field(2.5, gt=1, description="drishti: side of the disc-centred ROI cut from the whole "
                                                    "photo, x the disc diameter (2.5: disc at 0.40 of the side)")
    synth: SynthConfig = Field(default_factory=SynthConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    # other datasets' domains as targets (metrics.json keys NAME/DOMAIN); a key of its own, beside
    # `targets` (domains of `dataset`), so `--set data.targets=...` and the protocols, which rewrite
    # `targets` per run, leave them in place; a mapping, so `--set data.target_datasets.NAME.root=`
    target_datasets: dict[str, TargetDatasetConfig] = Field(default_factory=dict)

    @field_validator("source", "targets", mode="before")
    @classmethod
    def _one_or_list(cls, value):
        return _names(value)

    @field_validator("target_datasets")
    @classmethod
    def _target_names(cls, value):
        import re

        for name in value:  # NAME/DOMAIN keys metrics.json and overlay folders: no separators
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
                raise ValueError(f"target dataset name {name!r}: use letters, digits, '_', '.', '-' (no '/')")
        return value


class UNetConfig(Strict):
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64, 128])
    num_res_units: int = Field(1, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)


class BackboneConfig(Strict):
    name: Literal["medsam", "cnn", "hf", "hybrid"] = "cnn"
    path: str | None = Field(None, description="hf: local folder or hub id of a CLIP/DINOv2/SigLIP checkpoint")
    tuning: Literal["frozen", "full", "frozen+tokens", "lora"] = "frozen"
    cache: bool = Field(True, description="cache frozen-backbone features per image (augment in feature space)")
    input_size: int = Field(224, ge=16, description="hf: the tower's input size")
    num_tokens: int = Field(16, ge=1, description="frozen+tokens: learnable tokens per layer")
    lora_rank: int = Field(8, ge=1)
    cnn_width: int = Field(16, ge=4)
    fast: Literal["auto", "off", "fused", "bf16", "bf16-all", "openvino"] = Field(
        "auto", description="medsam frozen encoder path: auto (openvino on a CPU where installed, else bf16 where "
                            "the CPU/GPU has native bf16, else fused), openvino (compiled by OpenVINO, CPU), "
                            "off (eager fp32 reference), fused (BN folded, fused attention, fp32), bf16 (the 256² "
                            "conv stage in bf16), bf16-all (all stages in bf16: faster, cosine ~0.9986)")

    @field_validator("tuning")
    @classmethod
    def _hybrid_is_frozen(cls, value, info):
        # the hybrid's LiteMedSAM part is the cached frozen one; its trainable part is the CNN branch
        if info.data.get("name") == "hybrid" and value != "frozen":
            raise ValueError("the hybrid backbone keeps LiteMedSAM frozen (its CNN branch trains); "
                             "use tuning: frozen, or name: medsam to tune LiteMedSAM")
        return value


class EMConfig(Strict):
    enabled: bool = True
    k: int = Field(64, ge=1)
    iters: int = Field(3, ge=1)
    lam: float = Field(10.0, gt=0, description="E-step temperature on cosine similarities")
    momentum: float = Field(0.9, ge=0, lt=1)
    text_anchor: bool = Field(True, description="start the first centres at the class text embeddings")


class TextConfig(Strict):
    encoder: Literal["minilm", "clip", "none"] = "minilm"
    path: str | None = Field(None, description="clip: checkpoint (default: model.backbone.path)")


class DecoderConfig(Strict):
    dim: int = Field(32, ge=8)
    embed_dim: int = Field(32, ge=8)
    heads: int = Field(4, ge=1)
    text_guidance: bool = True


class ModelConfig(Strict):
    name: Literal["unet", "vlsa"] = "vlsa"
    unet: UNetConfig = Field(default_factory=UNetConfig)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    em: EMConfig = Field(default_factory=EMConfig)
    text: TextConfig = Field(default_factory=TextConfig)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    dsu: float = Field(0.0, ge=0, le=1, description="training only: probability per image that every level of VLSA's "
                                                    "decoder input pyramid gets its channel mean and std resampled "
                                                    "around the batch spread (DSU, Li et al., ICLR 2022; "
                                                    "vlsa.models.feature_statistics); 0 = off. Like backbone, em, text "
                                                    "and decoder, the unet baseline does not read it")


class LocatorConfig(Strict):
    """The whole-photo optic disc locator a fundus run also trains (vlsa.engine.locator), into
    RUN/locator/, after the segmentation model: `train.locator: true` is short for `enabled: true`."""

    enabled: bool = False
    size: int = Field(128, ge=32, description="longer side (px) of the photo as the locator reads it, "
                                              "the other side padded to a square")
    steps: int = Field(800, ge=1, description="the locator's training steps")


class TrainConfig(Strict):
    steps: int = Field(400, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup: int = Field(20, ge=0)
    schedule: Literal["cosine", "poly"] = "cosine"
    clip_grad: float = Field(1.0, ge=0)
    device: Literal["cpu", "cuda", "auto"] = "auto"
    amp: bool = True
    val_every: int = Field(50, ge=1)
    log_every: int = Field(10, ge=1)
    threads: int | None = Field(None, ge=1)
    ema: float = Field(0.0, ge=0, lt=1, description="decay of an exponential moving average of the weights, "
                                                     "which validation, checkpoints and evaluation then use "
                                                     "(flat-minima averaging, cf. SWAD, Cha et al., NeurIPS 2021); "
                                                     "0 = off, the last weights")
    mode: Literal["segmentation", "locator"] = Field(
        "segmentation", description="what the run trains: the segmentation model, or (set by train.locator "
                                    "in RUN/locator/config.yaml) the whole-photo disc locator")
    locator: LocatorConfig = Field(default_factory=LocatorConfig)

    @field_validator("locator", mode="before")
    @classmethod
    def _locator_switch(cls, value):
        return {"enabled": value} if isinstance(value, bool) else value


class EvalConfig(Strict):
    overlays: int = Field(6, ge=0, description="images per domain in the overlay grid")
    postprocess: Literal["auto", "on", "off"] = Field(
        "auto", description="anatomical post-processing (largest component, holes, nesting); auto: on unless "
                            "it lowers Dice on the source validation split")

    @field_validator("postprocess", mode="before")
    @classmethod
    def _yaml_on_off(cls, value):
        # YAML reads bare on/off as booleans
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
    batch_size: int = Field(16, ge=1)
    tta: Literal[TTA_MODES] = Field(
        "off", description="test-time augmentation: flip averages the class probabilities of each image and its "
                           "left-right mirror (the flip training augments with; nnU-Net mirrors at test time by "
                           "default); twice the inference cost. Post-processing keeps the run's decision")
    lv_slice_ring: float = Field(
        0.0, ge=0.0, le=1.0,
        description="cardiac volumetry: predicted LV on the end slices (base, apex) whose LV border touches the "
                    "myocardium on less than this fraction is left out of the predicted volumes, as experts "
                    "leave such slices out (vlsa.clinical.lv_slices_included); 0: off. Segmentation maps and "
                    "Dice are unchanged")


class Config(Strict):
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _consistency_views_with_a_cached_backbone(self):
        # a cached frozen backbone's two appearance draws for the consistency term are two views of
        # its feature bank: with one view they would be the same features. Checked here, before any
        # data loads (training checks again on the built model, for backbones this rule cannot see)
        b = self.model.backbone
        cached = self.model.name == "vlsa" and b.cache and (b.name in ("medsam", "hybrid")
                                                            or (b.name == "hf" and b.tuning == "frozen"))
        if self.data.augment.consistency > 0 and cached and self.data.augment.views < 2:
            raise ValueError(f"data.augment.consistency > 0 needs data.augment.views >= 2 with a cached backbone "
                             f"({b.name}): its two appearance draws are two views of the feature bank")
        if self.data.augment.view_zoom and self.data.augment.consistency > 0:
            # the two draws would be two views with two zooms: their predictions are not pixel-aligned
            raise ValueError("data.augment.view_zoom cannot be combined with data.augment.consistency > 0")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def digest(self) -> str:
        """Short hash of the resolved config (recorded in checkpoints); keys at their DIGEST_NEUTRAL
        value are left out, so it is the digest the same config had before those keys existed."""
        return hashlib.sha256(json.dumps(digest_tree(self.to_dict()), sort_keys=True).encode()).hexdigest()[:16]


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differing_keys(a: Config, b: Config) -> list[str]:
    """The dotted keys whose resolved values differ between two configs, sorted."""
    old, new = _flat(a.to_dict()), _flat(b.to_dict())
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def _known_keys(loc: tuple) -> list[str]:
    """The keys allowed next to the one at `loc` (the fields of its section)."""
    model: Any = Config
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _format_error(exc: ValidationError, origin: str) -> str:
    import difflib

    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(err["loc"][-1]), _known_keys(err["loc"]), n=1, cutoff=0.6)
        prefix = ".".join(str(p) for p in err["loc"][:-1])
        hint = f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close else ""
        return f"{origin}: unknown config key '{key}'{hint}"
    msg = err["msg"].removeprefix("Value error, ")  # pydantic's prefix on our validators' messages
    if not err["loc"]:  # a rule across sections: its message names the keys
        return f"{origin}: {msg}"
    return f"{origin}: config key '{key}': {msg} (got {err.get('input')!r})"


def _set_dotted(tree: dict, key: str, value: Any, origin: str) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: config key '{key}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(pairs: list[str] | None) -> list[tuple[str, Any]]:
    """`key=value` strings -> (key, YAML-parsed value)."""
    out = []
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set {pair}: expected KEY=VALUE with '=' and no spaces, e.g. --set {pair}=VALUE")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def build_config(tree: dict | None = None, overrides: list[str] | None = None, origin: str = "config") -> Config:
    tree = json.loads(json.dumps(tree or {}))  # deep copy
    pairs = parse_overrides(overrides)
    for key, value in pairs:
        _set_dotted(tree, key, value, "--set")
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        # a bad key or value that came from --set (or $VLSA_SET) is reported as such, not against the file
        bad = ".".join(str(p) for p in exc.errors()[0]["loc"])
        from_set = next((k for k, _ in pairs if bad == k or bad.startswith(k + ".") or k.startswith(bad + ".")), None)
        raise ConfigError(_format_error(exc, _override_origin(from_set) if from_set else origin)) from None


def _override_origin(key: str) -> str:
    """How an error names an override: `$VLSA_SET KEY` when the environment variable holds it (the
    CLI reads it before --set), else `--set KEY`, so the user looks where the key was given."""
    import os

    in_env = any(pair.split("=", 1)[0].strip() == key for pair in os.environ.get("VLSA_SET", "").split())
    return f"$VLSA_SET {key}" if in_env else f"--set {key}"


def packaged_configs() -> dict[str, Path]:
    """Configs shipped inside the package (src/vlsa/configs): name -> file."""
    from importlib import resources

    folder = resources.files("vlsa") / "configs"
    return {Path(str(f)).stem: Path(str(f)) for f in folder.iterdir() if str(f).endswith(".yaml")}


def resolve_config_path(path: str | Path) -> Path:
    """A config file path, or the name of a packaged config (`fundus_sdg` or `fundus_sdg.yaml`),
    usable from any directory. A file that exists wins over a packaged config of the same name.
    Raises ConfigError naming the packaged configs when neither exists."""
    path = Path(path)
    if path.is_file():
        return path
    shipped = packaged_configs()
    if path.parent == Path(".") and path.name.removesuffix(".yaml") in shipped:
        return shipped[path.name.removesuffix(".yaml")]
    raise ConfigError(f"{path}: config file not found (packaged configs, usable by name: {', '.join(sorted(shipped))})")


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (a file, a packaged config's name, or the defaults when `path` is None)
    and apply `--set` overrides."""
    tree: dict = {}
    origin = "config"
    if path is not None:
        path = resolve_config_path(path)
        origin = str(path)
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc.__class__.__name__})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: a config must be a mapping of keys")
    return build_config(tree, overrides, origin)


def save_config(config: Config, path: str | Path) -> None:
    from vlsa.utils.atomic import write_text

    write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
