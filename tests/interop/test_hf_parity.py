"""Parity with Hugging Face transformers: random small Llama, Mistral, Qwen2 and Qwen3 models
built from a config (no downloads) and saved with ``save_pretrained`` load into jaxlab with the
same float32 logits (max abs difference <= 1e-4) and the same greedy generations; jaxlab saves
them back into folders that transformers loads with bitwise-equal weights and the same logits,
and that jaxlab reloads bitwise."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: Hugging Face parity is only "
                            "checked where torch and transformers are present "
                            "(pip install -e '.[torch]')")
transformers = pytest.importorskip("transformers", reason="transformers is not installed: Hugging "
                                   "Face parity is only checked where it is present "
                                   "(pip install -e '.[torch]')")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxlab.interop import hf  # noqa: E402
from jaxlab.models import transformer  # noqa: E402
from jaxlab.samplers.generate import SampleConfig, generate, pad_prompts  # noqa: E402
from tree_checks import assert_bitwise_equal  # noqa: E402

TOL = 1e-4
# bos/eos unset: greedy generation then runs all max_new_tokens on both sides
BASE = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            rms_norm_eps=1e-6, bos_token_id=None, eos_token_id=None, pad_token_id=None)
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}

# name: (config class, config overrides, the jaxlab config fields they must map to)
VARIANTS = {
    "llama_gqa": ("LlamaConfig", {}, dict(n_kv_heads=2, tie_embeddings=False)),
    "llama_tied_llama3": ("LlamaConfig",
                          dict(tie_word_embeddings=True, rope_theta=500000.0, rope_scaling=LLAMA3),
                          dict(tie_embeddings=True, rope_base=500000.0)),
    "llama_linear_mlp_bias_geglu": ("LlamaConfig",
                                    dict(rope_scaling={"rope_type": "linear", "factor": 4.0},
                                         mlp_bias=True, hidden_act="gelu_pytorch_tanh"),
                                    dict(mlp_bias=True, mlp_type="geglu")),
    "mistral_window": ("MistralConfig", dict(sliding_window=5, num_key_value_heads=1),
                       dict(window=5, n_kv_heads=1)),
    "qwen2_biases_tied": ("Qwen2Config", dict(tie_word_embeddings=True, rope_theta=1e6),
                          dict(attention_bias=True, tie_embeddings=True, rope_base=1e6)),
    "qwen3_qk_norm_head_dim": ("Qwen3Config", dict(head_dim=24),
                               dict(qk_norm=True, head_dim=24, attention_bias=False)),
    "qwen3_sliding": ("Qwen3Config", dict(head_dim=16, use_sliding_window=True, sliding_window=4,
                                          max_window_layers=0),
                      dict(qk_norm=True, window=4)),
}


def _randomize(model, seed: int) -> None:
    """Every weight random (biases and norm scales too, so that each tensor's mapping matters)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif p.ndim == 2:
                p.copy_(noise / math.sqrt(p.shape[-1]))
            else:
                p.copy_(0.3 * noise)


def _hf_model(config_class: str, overrides: dict, seed: int):
    config = getattr(transformers, config_class)(**{**BASE, **overrides})
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model = model.float().eval()
    _randomize(model, seed)
    return model


def _hf_logits(model, tokens_BT: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(tokens_BT, dtype=torch.long)).logits.float().numpy()


def _hf_greedy(model, tokens_BT: np.ndarray, mask_BT: np.ndarray, n: int) -> np.ndarray:
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor(tokens_BT, dtype=torch.long),
                             attention_mask=torch.tensor(mask_BT, dtype=torch.long),
                             max_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[:, tokens_BT.shape[1]:].numpy()


_apply = jax.jit(transformer.apply, static_argnames=("cfg",))




@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_transformers_parity(name, tmp_path):
    config_class, overrides, expected_fields = VARIANTS[name]
    seed = sorted(VARIANTS).index(name)
    model = _hf_model(config_class, overrides, seed)
    model.save_pretrained(tmp_path / "hf")

    cfg, params = hf.load(tmp_path / "hf")
    assert cfg.vocab_size == 128 and cfg.d_model == 64 and cfg.n_layers == 2 and cfg.mlp_dim == 96
    for field, value in expected_fields.items():
        assert getattr(cfg, field) == value, field
    if "rope_scaling" in overrides:
        assert cfg.rope_scaling.kind == overrides["rope_scaling"]["rope_type"]
        assert cfg.rope_scaling.factor == overrides["rope_scaling"]["factor"]

    # logits in float32
    rng = np.random.default_rng(seed)
    tokens_BT = rng.integers(0, 128, (2, 16))
    ref_BTV = _hf_logits(model, tokens_BT)
    ours_BTV = np.asarray(_apply(params, jnp.asarray(tokens_BT), cfg))
    assert np.max(np.abs(ours_BTV - ref_BTV)) <= TOL

    # greedy generations from left-padded prompts of different lengths
    prompts = [rng.integers(1, 128, n).tolist() for n in (3, 7, 5)]
    tokens, mask = pad_prompts(prompts, pad_id=0)
    n_new = 6
    ref_tokens = _hf_greedy(model, tokens, mask, n_new)
    out = generate(params, cfg, jnp.asarray(tokens), jnp.asarray(mask), jax.random.key(0),
                   SampleConfig(max_new_tokens=n_new, temperature=0.0))
    np.testing.assert_array_equal(np.asarray(out.tokens), ref_tokens)

    # save back (sharded for one variant): transformers reloads the same weights and logits
    shard = 20_000 if name == "llama_gqa" else hf.DEFAULT_MAX_SHARD_BYTES
    hf.save(tmp_path / "back", cfg, params, max_shard_bytes=shard)
    assert (tmp_path / "back" / hf.INDEX_FILE).is_file() == (name == "llama_gqa")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "back", attn_implementation="eager").float().eval()
    assert type(reloaded) is type(model)
    ours_sd, ref_sd = reloaded.state_dict(), model.state_dict()
    assert sorted(ours_sd) == sorted(ref_sd)
    for key, value in ref_sd.items():
        assert torch.equal(ours_sd[key], value), key
    np.testing.assert_array_equal(_hf_logits(reloaded, tokens_BT), ref_BTV)

    # and jaxlab reloads its own output bitwise
    cfg2, params2 = hf.load(tmp_path / "back")
    assert cfg2 == cfg
    assert_bitwise_equal(params2, params)


def test_bfloat16_checkpoints_both_ways(tmp_path):
    model = _hf_model("Qwen3Config", dict(head_dim=16), seed=11).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "hf")
    cfg, params = hf.load(tmp_path / "hf")
    assert cfg.param_dtype == "bfloat16" and cfg.compute_dtype == "bfloat16"
    q = params["layers"]["attn"]["q"]["kernel"]
    assert q.dtype == jnp.bfloat16
    w = model.model.layers[1].self_attn.q_proj.weight.detach().float().numpy()  # [H*Dh, D]
    np.testing.assert_array_equal(np.asarray(q[1], np.float32).reshape(64, -1), w.T)

    hf.save(tmp_path / "back", cfg, params)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back", dtype="auto")
    for key, value in model.state_dict().items():
        got = reloaded.state_dict()[key]
        assert got.dtype == torch.bfloat16 and torch.equal(got, value), key
