import dataclasses
import re

import pytest

from jaxlab import config as config_lib
from jaxlab.config import ConfigError, apply_overrides
from jaxlab.train.config import ExperimentConfig

CFG = ExperimentConfig()


def test_overrides_parse_by_field_type():
    cfg = apply_overrides(CFG, ["model.n_layers=3", "optim.lr=1e-4", "model.window=none",
                                "model.tie_embeddings=false", "optim.clip_norm=0.5",
                                "model.mlp_type=geglu", "sample.stop_tokens=1,2", "data.path=/tmp/x"])
    assert cfg.model.n_layers == 3 and isinstance(cfg.model.n_layers, int)
    assert cfg.optim.lr == 1e-4
    assert cfg.model.window is None and cfg.model.tie_embeddings is False
    assert cfg.model.mlp_type == "geglu" and cfg.sample.stop_tokens == (1, 2)
    assert apply_overrides(CFG, ["model.window=16"]).model.window == 16
    assert cfg.data.path == "/tmp/x"
    assert CFG.model.n_layers != 3  # the original is untouched (frozen)


@pytest.mark.parametrize("override,match", [
    ("model.n_layer=3", "unknown config key 'model.n_layer'; did you mean 'model.n_layers'"),
    ("optim.warmup=1", "unknown config key 'optim.warmup'; did you mean 'optim.warmup_steps'"),
    ("train.loop.step=1", "did you mean 'train.loop.steps'"),
    ("train.steps=5", "did you mean 'train.loop.steps'"),  # the loop's settings moved into train.loop
    ("modle.d_model=3", "did you mean 'model.d_model'"),
    ("model.n_layers=three", "model.n_layers: expected an int, got 'three'"),
    ("model.tie_embeddings=maybe", "expected a bool"),
    ("model.mlp_type=relu", "'relu' is not one of"),
    ("model=3", "'model' is a group of settings"),
    ("model.n_layers", "not of the form key=value"),
    ("model.n_heads=3", "model.n_heads=3: .*multiple of"),
    ("train.loop.steps=0", "loop.steps must be an int >= 1"),
    ("train.loop.grad_accum=3", "train.batch_size .* must be a multiple of train.loop.grad_accum"),
])
def test_override_errors_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(CFG, [override])


def test_settings_that_must_agree_can_change_together():
    cfg = apply_overrides(CFG, ["model.n_heads=2", "model.n_kv_heads=1"])
    assert (cfg.model.n_heads, cfg.model.n_kv_heads) == (2, 1)
    with pytest.raises(ConfigError, match="model.n_heads=2: .*multiple of .*n_kv_heads \\(4\\)"):
        apply_overrides(CFG, ["model.n_heads=2"])


def test_python_value_overrides_are_type_checked():
    assert apply_overrides(CFG, {"optim.lr": 1}).optim.lr == 1.0  # int accepted as float
    with pytest.raises(ConfigError, match="expected int"):
        apply_overrides(CFG, {"model.n_layers": 2.5})
    with pytest.raises(ConfigError, match="expected int"):
        apply_overrides(CFG, {"model.n_layers": True})


def test_json_round_trip_and_diff():
    cfg = apply_overrides(CFG, ["model.n_layers=3", "sample.stop_tokens=4"])
    import json
    again = config_lib.from_dict(ExperimentConfig, json.loads(config_lib.to_json(cfg)))
    assert again == cfg and hash(again) == hash(cfg)
    assert config_lib.diff(CFG, cfg) == ["model.n_layers", "sample.stop_tokens"]
    with pytest.raises(ConfigError, match="unknown config key 'modle'"):
        config_lib.from_dict(ExperimentConfig, {"modle": {}})


def test_every_leaf_is_settable_from_text():
    for key in config_lib.leaf_keys(CFG):
        value = CFG
        for part in key.split("."):
            value = getattr(value, part)
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        if isinstance(value, tuple) and not value:
            continue
        assert apply_overrides(CFG, [f"{key}={text}"]) == CFG, key


def test_configs_are_frozen_and_hashable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CFG.model.n_layers = 5
    hash(CFG)


def test_literal_choice_fields_are_checked_by_overrides():
    """Choice fields are Literal types: --set parses a listed choice and refuses others,
    naming the key and the choices (RL, DPO and SFT configs)."""
    from jaxlab.rl import RLConfig
    from jaxlab.train.dpo import DPOConfig
    from jaxlab.train.sft import SFTConfig

    rl = apply_overrides(RLConfig(), ["advantage=rloo", "aggregation=seq-sum-max-length", "kl_kind=k1",
                                      "ratio_level=sequence", "overlong=mask", "mode=reflect"])
    assert (rl.advantage, rl.aggregation, rl.kl_kind, rl.ratio_level, rl.overlong, rl.mode) == (
        "rloo", "seq-sum-max-length", "k1", "sequence", "mask", "reflect")
    for cfg, override, choices in [
            (RLConfig(), "advantage=ppo", "['grpo', 'dr_grpo', 'rloo']"),
            (RLConfig(), "kl_kind=k4", "['k1', 'k2', 'k3']"),
            (RLConfig(), "overlong=drop", "['none', 'mask', 'soft']"),
            (DPOConfig(), "reference=cached", "['precomputed', 'online']"),
            (SFTConfig(), "loss=kl", "['ce', 'dft', 'distill']")]:
        key = override.split("=")[0]
        with pytest.raises(ConfigError, match=rf"{key}: .* is not one of {re.escape(choices)}"):
            apply_overrides(cfg, [override])
    with pytest.raises(ConfigError, match="is not one of"):  # Python values are checked too
        apply_overrides(RLConfig(), {"aggregation": "sum"})
