"""Hugging Face folders without transformers: config mapping (hand-written config.json files),
save -> load round trips (bitwise, sharded or not, bfloat16) and the clear errors for pickled
weights, missing or unexpected tensors, wrong shapes and unsupported configs."""

import dataclasses
import json

import jax
import ml_dtypes
import numpy as np
import pytest

safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="safetensors is not installed: "
                                        "Hugging Face checkpoints are only checked where it is "
                                        "present (pip install safetensors)")

from jaxlab.interop import hf  # noqa: E402
from jaxlab.models import transformer  # noqa: E402
from jaxlab.nn.rope import RopeScaling  # noqa: E402
from tree_checks import random_params, assert_bitwise_equal  # noqa: E402

SMALL = transformer.Config(vocab_size=53, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                           mlp_dim=48, tie_embeddings=False)
# name: (config, the architecture save picks for it)
CONFIGS = {
    "llama": (SMALL, "LlamaForCausalLM"),
    "llama_geglu_mlp_bias_llama3": (dataclasses.replace(
        SMALL, mlp_type="geglu", mlp_bias=True, tie_embeddings=True, rope_base=5e5,
        rope_scaling=RopeScaling("llama3", 8.0, 1.0, 4.0, 64)), "LlamaForCausalLM"),
    "mistral_window": (dataclasses.replace(SMALL, window=7, n_kv_heads=1), "MistralForCausalLM"),
    "qwen2_bias_linear": (dataclasses.replace(
        SMALL, attention_bias=True, tie_embeddings=True, rope_scaling=RopeScaling("linear", 2.0)),
        "Qwen2ForCausalLM"),
    "qwen3_qk_norm": (dataclasses.replace(SMALL, qk_norm=True, head_dim=12, norm_eps=1e-5),
                      "Qwen3ForCausalLM"),
}






def _llama_config(**overrides):
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 53,
            "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, **overrides}


def _write_config(folder, config):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_save_load_round_trip_is_bitwise(name, tmp_path):
    cfg, architecture = CONFIGS[name]
    params = random_params(cfg)
    hf.save(tmp_path, cfg, params)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["architectures"] == [architecture]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    cfg2, params2 = hf.load(tmp_path)
    assert cfg2 == cfg
    assert_bitwise_equal(params2, params)


def test_tensor_layout_matches_torch_linear(tmp_path):
    """HF stores y = x W^T with W [out, in]: q_proj.weight[h * Dh + d, i] = q kernel[i, h, d]."""
    cfg = CONFIGS["qwen2_bias_linear"][0]
    params = random_params(cfg)
    hf.save(tmp_path, cfg, params)
    tensors = safetensors_numpy.load_file(str(tmp_path / "model.safetensors"))
    q = np.asarray(params["layers"]["attn"]["q"]["kernel"][1])  # [D, H, Dh]
    w = tensors["model.layers.1.self_attn.q_proj.weight"]
    assert w.shape == (4 * 8, 32)
    assert w[2 * 8 + 5, 7] == q[7, 2, 5]
    o = np.asarray(params["layers"]["attn"]["o"]["kernel"][0])  # [H, Dh, D]
    assert tensors["model.layers.0.self_attn.o_proj.weight"][9, 3 * 8 + 1] == o[3, 1, 9]
    bias = np.asarray(params["layers"]["attn"]["k"]["bias"][0])  # [K, Dh]
    assert tensors["model.layers.0.self_attn.k_proj.bias"][8 + 3] == bias[1, 3]
    down = np.asarray(params["layers"]["mlp"]["down"]["kernel"][1])  # [F, D]
    assert tensors["model.layers.1.mlp.down_proj.weight"][4, 40] == down[40, 4]
    assert "lm_head.weight" not in tensors  # tied


def test_sharded_save_writes_an_index_and_loads_bitwise(tmp_path):
    cfg = CONFIGS["llama"][0]
    params = random_params(cfg)
    limit = 8_000
    hf.save(tmp_path, cfg, params, max_shard_bytes=limit)
    index = json.loads((tmp_path / hf.INDEX_FILE).read_text())
    shards = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert len(shards) > 2 and not (tmp_path / hf.WEIGHTS_FILE).exists()
    assert shards == [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    assert sorted(set(index["weight_map"].values())) == shards
    total = 0
    for shard in shards:
        tensors = safetensors_numpy.load_file(str(tmp_path / shard))
        assert {n for n, f in index["weight_map"].items() if f == shard} == set(tensors)
        size = sum(x.nbytes for x in tensors.values())
        assert size <= limit or len(tensors) == 1
        total += size
    assert index["metadata"]["total_size"] == total == 4 * sum(x.size for x in jax.tree.leaves(params))
    cfg2, params2 = hf.load(tmp_path)
    assert cfg2 == cfg
    assert_bitwise_equal(params2, params)


def test_bfloat16_save_and_load(tmp_path):
    cfg = CONFIGS["qwen3_qk_norm"][0]
    params = random_params(cfg)
    hf.save(tmp_path, cfg, params, dtype="bfloat16")
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    cfg_bf16, params_bf16 = hf.load(tmp_path)
    assert cfg_bf16 == dataclasses.replace(cfg, param_dtype="bfloat16", compute_dtype="bfloat16")
    assert_bitwise_equal(params_bf16, jax.tree.map(lambda x: np.asarray(x).astype(ml_dtypes.bfloat16), params))
    cfg_f32, params_f32 = hf.load(tmp_path, dtype="float32")
    assert cfg_f32 == cfg
    assert_bitwise_equal(params_f32, jax.tree.map(lambda x: np.asarray(x).astype(np.float32), params_bf16))


def test_other_stored_dtypes_need_an_explicit_cast(tmp_path):
    params = random_params(SMALL)
    hf.save(tmp_path, SMALL, params)
    _rewrite_weights(tmp_path, lambda t: t.update({k: v.astype(np.float64) for k, v in t.items()}))
    with pytest.raises(hf.HFCheckpointError, match="stored as F64; pass dtype="):
        hf.load(tmp_path)
    cfg, params64 = hf.load(tmp_path, dtype="float32")
    assert cfg == SMALL
    assert_bitwise_equal(params64, params)


def test_extra_config_keeps_only_passthrough_fields(tmp_path):
    extra = {"bos_token_id": 1, "eos_token_id": [2, 7], "max_position_embeddings": 4096,
             "rope_scaling": {"rope_type": "yarn", "factor": 4.0}, "hidden_size": 999}
    hf.save(tmp_path, SMALL, random_params(SMALL), extra_config=extra)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["eos_token_id"] == [2, 7] and written["max_position_embeddings"] == 4096
    assert written["hidden_size"] == 32 and "rope_scaling" not in written
    assert hf.load(tmp_path)[0] == SMALL


# ----------------------------------------------------------------------------- config.json

def test_config_from_legacy_and_current_rope_fields():
    legacy = _llama_config(rope_theta=123.0, rope_scaling={"type": "linear", "factor": 2.0})
    cfg = hf.config_from_hf(legacy)
    assert cfg.rope_base == 123.0 and cfg.rope_scaling == RopeScaling("linear", 2.0)
    current = _llama_config(max_position_embeddings=999, rope_parameters={
        "rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0})
    cfg = hf.config_from_hf(current)
    assert cfg.rope_base == 5e5
    assert cfg.rope_scaling == RopeScaling("llama3", 8.0, 1.0, 4.0, original_max_len=999)
    assert hf.config_from_hf(_llama_config()).rope_base == 10000.0


def test_config_defaults_of_each_family():
    cfg = hf.config_from_hf(_llama_config(num_key_value_heads=None, tie_word_embeddings=True))
    assert (cfg.n_kv_heads, cfg.head_dim, cfg.tie_embeddings, cfg.qk_norm) == (4, 8, True, False)
    qwen3 = _llama_config(architectures=["Qwen3ForCausalLM"], model_type="qwen3")
    cfg = hf.config_from_hf(qwen3)
    assert (cfg.head_dim, cfg.qk_norm, cfg.attention_bias, cfg.window) == (128, True, False, None)
    cfg = hf.config_from_hf({**qwen3, "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"})
    assert (cfg.head_dim, cfg.qk_norm, cfg.attention_bias) == (8, False, True)
    mistral = _llama_config(architectures=["MistralForCausalLM"], model_type="mistral")
    assert hf.config_from_hf(mistral).window == 4096  # MistralConfig's default
    assert hf.config_from_hf({**mistral, "sliding_window": None}).window is None
    no_archs = {k: v for k, v in _llama_config(model_type="mistral").items() if k != "architectures"}
    assert hf.config_from_hf(no_archs).window == 4096


def test_qwen_sliding_window_only_when_every_layer_slides():
    qwen2 = _llama_config(architectures=["Qwen2ForCausalLM"], model_type="qwen2", sliding_window=16)
    assert hf.config_from_hf(qwen2).window is None  # use_sliding_window defaults to false
    assert hf.config_from_hf({**qwen2, "use_sliding_window": True, "max_window_layers": 0}).window == 16
    assert hf.config_from_hf({**qwen2, "use_sliding_window": True, "max_window_layers": 2}).window is None
    with pytest.raises(hf.HFCheckpointError, match="mixes sliding-window and full-attention"):
        hf.config_from_hf({**qwen2, "use_sliding_window": True, "max_window_layers": 1})
    with pytest.raises(hf.HFCheckpointError, match="layer_types"):
        hf.config_from_hf({**qwen2, "use_sliding_window": True,
                           "layer_types": ["sliding_attention", "full_attention"]})


@pytest.mark.parametrize("overrides, match", [
    (dict(attention_bias=True), "attention_bias=true.*o_proj"),
    (dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", attention_bias=True), "attention_bias"),
    (dict(rope_parameters={"rope_type": "yarn", "factor": 4.0}), "rope_type='yarn'.*default, linear, llama3"),
    (dict(rope_scaling={"type": "dynamic", "factor": 2.0}), "rope_type='dynamic'"),
    (dict(rope_scaling={"rope_type": "llama3", "factor": 8.0}), "lacks 'low_freq_factor'"),
    (dict(partial_rotary_factor=0.5), "partial_rotary_factor=0.5"),
    (dict(hidden_act="gelu"), "hidden_act='gelu'"),
    (dict(rope_parameters={"full_attention": {"rope_type": "default"},
                           "sliding_attention": {"rope_type": "default"}}), "per layer type"),
    (dict(num_key_value_heads=3), "multiple of"),
    (dict(hidden_size=None), "lacks 'hidden_size'"),
])
def test_unsupported_config_fields_are_named(overrides, match):
    with pytest.raises(hf.HFCheckpointError, match=match):
        hf.config_from_hf(_llama_config(**overrides))


def test_unsupported_architecture_lists_the_supported_ones(tmp_path):
    _write_config(tmp_path, {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})
    with pytest.raises(hf.HFCheckpointError, match="GPT2LMHeadModel.*LlamaForCausalLM, "
                       "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM"):
        hf.load(tmp_path)
    with pytest.raises(hf.HFCheckpointError, match="LlamaForSequenceClassification"):
        hf.config_from_hf(_llama_config(architectures=["LlamaForSequenceClassification"]))


# ----------------------------------------------------------------------------- folders, tensors

def test_missing_config_json(tmp_path):
    with pytest.raises(hf.HFCheckpointError, match="has no config.json"):
        hf.load(tmp_path)
    with pytest.raises(hf.HFCheckpointError, match="not a folder"):
        hf.load(tmp_path / "absent")


@pytest.mark.parametrize("file", ["pytorch_model.bin", "model.pt", "consolidated.pth"])
def test_pickled_weights_are_refused_unread(file, tmp_path):
    _write_config(tmp_path, _llama_config())
    (tmp_path / file).write_bytes(b"\x80\x04 not a real pickle; never opened")
    with pytest.raises(hf.HFCheckpointError, match=f"{file}.*never unpickles.*safe_serialization=True"):
        hf.load(tmp_path)


def test_folder_without_weights(tmp_path):
    _write_config(tmp_path, _llama_config())
    with pytest.raises(hf.HFCheckpointError, match="neither model.safetensors nor"):
        hf.load(tmp_path)


def _rewrite_weights(folder, edit):
    tensors = safetensors_numpy.load_file(str(folder / "model.safetensors"))
    edit(tensors)
    safetensors_numpy.save_file(tensors, str(folder / "model.safetensors"))


def test_missing_tensor_is_named(tmp_path):
    hf.save(tmp_path, SMALL, random_params(SMALL))
    _rewrite_weights(tmp_path, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(hf.HFCheckpointError,
                       match=r"lacks 1 tensor\(s\).*model\.layers\.1\.mlp\.up_proj\.weight"):
        hf.load(tmp_path)


def test_unexpected_tensor_is_named_and_old_rope_buffers_are_ignored(tmp_path):
    cfg = CONFIGS["llama"][0]
    params = random_params(cfg)
    hf.save(tmp_path, cfg, params)
    _rewrite_weights(tmp_path, lambda t: t.update({
        "model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(4, np.float32)}))
    assert_bitwise_equal(hf.load(tmp_path)[1], params)
    _rewrite_weights(tmp_path, lambda t: t.update({
        "model.layers.0.self_attn.o_proj.bias": np.zeros(32, np.float32)}))
    with pytest.raises(hf.HFCheckpointError, match="does not explain: model.layers.0.self_attn.o_proj.bias"):
        hf.load(tmp_path)


def test_tied_checkpoint_may_carry_its_lm_head_copy(tmp_path):
    cfg = CONFIGS["qwen2_bias_linear"][0]
    params = random_params(cfg)
    hf.save(tmp_path, cfg, params)
    _rewrite_weights(tmp_path, lambda t: t.update({"lm_head.weight": t["model.embed_tokens.weight"]}))
    assert_bitwise_equal(hf.load(tmp_path)[1], params)


def test_shape_disagreeing_with_config_is_named(tmp_path):
    hf.save(tmp_path, SMALL, random_params(SMALL))
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "intermediate_size": 40}))
    with pytest.raises(hf.HFCheckpointError,
                       match=r"mlp\.down_proj\.weight has shape \(32, 48\).*implies \(32, 40\)"):
        hf.load(tmp_path)


def test_index_naming_a_missing_shard(tmp_path):
    hf.save(tmp_path, SMALL, random_params(SMALL), max_shard_bytes=10_000)
    shard = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(hf.HFCheckpointError, match=f"lists shard '{shard.name}'.*missing"):
        hf.load(tmp_path)


def test_index_entries_must_stay_in_the_folder(tmp_path):
    _write_config(tmp_path, _llama_config())
    (tmp_path / hf.INDEX_FILE).write_text(json.dumps(
        {"weight_map": {"model.norm.weight": "../elsewhere.safetensors"}}))
    with pytest.raises(hf.HFCheckpointError, match="same folder"):
        hf.load(tmp_path)


# ----------------------------------------------------------------------------- save refusals

@pytest.mark.parametrize("changes, architecture, match", [
    (dict(norm_type="layer"), None, "norm_type='layer'"),
    (dict(rope_fraction=0.5), None, "rope_fraction=0.5"),
    (dict(causal=False), None, "causal=False"),
    (dict(qk_norm=True, attention_bias=True), None, "attention_bias=True.*Qwen3ForCausalLM"),
    (dict(qk_norm=True), "LlamaForCausalLM", "qk_norm=True"),
    (dict(window=8), "LlamaForCausalLM", "window=8"),
    (dict(mlp_bias=True), "MistralForCausalLM", "mlp_bias=True"),
    (dict(), "Qwen2ForCausalLM", "attention_bias=False"),
    (dict(), "GPT2LMHeadModel", "unsupported architecture 'GPT2LMHeadModel'"),
    (dict(d_model=30), "LlamaForCausalLM", "d_model=30 not a multiple of n_heads=4"),
])
def test_save_refuses_configs_an_architecture_cannot_hold(changes, architecture, match, tmp_path):
    cfg = dataclasses.replace(SMALL, **changes)
    with pytest.raises(hf.HFCheckpointError, match=match):
        hf.config_to_hf(cfg, architecture=architecture)


def test_save_refuses_foreign_params_and_occupied_folders(tmp_path):
    params = random_params(SMALL)
    lora = {**params, "layers": {**params["layers"], "attn": {
        **params["layers"]["attn"], "q": {**params["layers"]["attn"]["q"], "lora_a": np.zeros(3)}}}}
    with pytest.raises(hf.HFCheckpointError, match="layers/attn/q/lora_a.*merge adapters"):
        hf.save(tmp_path / "a", SMALL, lora)
    with pytest.raises(hf.HFCheckpointError, match="params lack unembed/kernel"):
        hf.save(tmp_path / "b", SMALL, {k: v for k, v in params.items() if k != "unembed"})
    hf.save(tmp_path / "c", SMALL, params)
    with pytest.raises(hf.HFCheckpointError, match="already holds a checkpoint"):
        hf.save(tmp_path / "c", SMALL, params)
    with pytest.raises(hf.HFCheckpointError, match="max_shard_bytes"):
        hf.save(tmp_path / "d", SMALL, params, max_shard_bytes=0)
