import pytest

from vlsa.config import build_config, load_config
from vlsa.errors import ConfigError


def test_defaults_and_dotted_overrides():
    cfg = build_config({}, ["train.steps=7", "data.source=Domain2", "data.targets=[Domain3, Domain4]", "train.amp=false"])
    assert cfg.train.steps == 7 and cfg.train.amp is False
    assert cfg.data.source == ["Domain2"] and cfg.data.targets == ["Domain3", "Domain4"]


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.stpes'"):
        build_config({}, ["train.stpes=3"])


def test_a_bad_key_from_vlsa_set_is_blamed_on_the_environment_variable(monkeypatch):
    """The CLI reads $VLSA_SET before --set: an error names where the user gave the key."""
    monkeypatch.setenv("VLSA_SET", "train.stepss=60 train.locator.steps=60")
    with pytest.raises(ConfigError, match=r"^\$VLSA_SET train\.stepss: unknown config key 'train\.stepss'"):
        build_config({}, ["train.stepss=60", "train.locator.steps=60"])
    with pytest.raises(ConfigError, match=r"^--set train\.batch_size: config key 'train\.batch_size'"):
        build_config({}, ["train.batch_size=many"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"config key 'train\.batch_size'.*'many'"):
        build_config({}, ["train.batch_size=many"])
    with pytest.raises(ConfigError, match=r"config key 'data\.dataset'"):
        build_config({"data": {"dataset": "camus"}})


def test_yaml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  imagesize: 64\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown config key 'data\.imagesize'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_validate():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert {p.name for p in configs} >= {"demo.yaml", "fundus_sdg.yaml", "mms_sdg.yaml"}
    for path in configs:
        assert load_config(path).train.steps > 0


def test_digest_changes_with_any_value():
    assert build_config({}).digest() == build_config({}).digest() != build_config({}, ["seed=1"]).digest()


def test_hybrid_backbone_refuses_a_tuning_it_would_ignore():
    with pytest.raises(ConfigError, match=r"model\.backbone\.tuning.*keeps LiteMedSAM frozen"):
        build_config({}, ["model.backbone.name=hybrid", "model.backbone.tuning=lora"])
    assert build_config({}, ["model.backbone.name=hybrid"]).model.backbone.tuning == "frozen"
    assert build_config({}, ["model.backbone.name=medsam", "model.backbone.tuning=lora"]).model.backbone.tuning == "lora"
