"""The generation loop's fast paths: the KV cache updated in place, prompt-length buckets that
share one compiled program, and bfloat16 inference with float32 log-probs."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.models import transformer
from jaxlab.samplers import SampleConfig, bucket_prompts, generate, pad_prompts, prompt_bucket
from jaxlab.samplers.generate import _generate_jit

GREEDY = SampleConfig(max_new_tokens=6, temperature=0.0)


def test_prompt_bucket_is_the_next_power_of_two_at_least_16():
    assert [prompt_bucket(t) for t in (1, 15, 16, 17, 32, 33, 64, 65, 200)] == \
        [16, 16, 16, 32, 32, 64, 64, 128, 256]
    tokens, mask = bucket_prompts(np.array([[0, 7, 8]], np.int32), np.array([[0, 1, 1]], np.int32), 5)
    assert tokens.shape == mask.shape == (1, 16)
    np.testing.assert_array_equal(tokens[0], [5] * 13 + [0, 7, 8])
    np.testing.assert_array_equal(mask[0], [0] * 14 + [1, 1])


def test_cache_is_not_copied_in_the_decode_loop(params, model_cfg):
    """The compiled loop writes the new token's K/V into the carried [L, B, S, K, Dh] cache:
    no HLO copy of a whole cache reads a loop value (only the initial zeros are copied)."""
    tokens_BT, mask_BT = bucket_prompts(*pad_prompts([[1, 2, 3]], 0), 0)
    compiled = _generate_jit.lower(params, model_cfg, tokens_BT, mask_BT, jax.random.PRNGKey(0),
                                   GREEDY).compile().as_text()
    L, S, K, Dh = model_cfg.n_layers, 16 + GREEDY.max_new_tokens, model_cfg.n_kv_heads, model_cfg.head_dim
    shape = f"f32[{L},1,{S},{K},{Dh}]"
    cache_copies = [line for line in compiled.splitlines()
                    if re.search(rf"= {re.escape(shape)}\S* copy\(", line)]
    loop_copies = [line for line in cache_copies if "broadcast" not in line]
    assert loop_copies == [], "\n".join(loop_copies)
    # the carried cache is updated with dynamic-update-slice, in the loop
    assert re.search(rf"= {re.escape(shape)}\S* dynamic-update-slice\(", compiled)


def test_prompt_lengths_in_one_bucket_compile_once(params, model_cfg):
    cfg = dataclasses.replace(GREEDY, max_new_tokens=5)  # a config no other test compiles
    key = jax.random.PRNGKey(0)
    before = _generate_jit._cache_size()
    outs = [generate(params, model_cfg, *pad_prompts([p], 0), key, cfg)
            for p in ([3, 1, 4, 1, 5], [2, 7, 1, 8, 2, 8, 1, 8, 2], [9] * 16)]
    assert _generate_jit._cache_size() == before + 1  # T = 5, 9 and 16: one bucket (16)
    generate(params, model_cfg, *pad_prompts([[1] * 17], 0), key, cfg)
    assert _generate_jit._cache_size() == before + 2  # T = 17: the next bucket (32)
    # the bucket's padding changes nothing: the same as the unpadded prompt, compiled as it is
    tokens_BT, mask_BT = pad_prompts([[3, 1, 4, 1, 5]], 0)
    exact = _generate_jit(params, model_cfg, tokens_BT, mask_BT, key, cfg)
    np.testing.assert_array_equal(outs[0].tokens, exact.tokens)
    np.testing.assert_allclose(outs[0].model_logprobs, exact.model_logprobs, rtol=1e-5, atol=1e-5)


def _sharp(params, scale=4.0):
    """The same model with a scaled embedding (tied: logits grow by ``scale``), so greedy
    choices have margins that bfloat16 rounding does not flip."""
    return {**params, "embed": {"embedding": params["embed"]["embedding"] * scale}}


def test_bfloat16_generation_agrees_with_float32(params, model_cfg):
    f32_params = _sharp(params)
    bf16_cfg = dataclasses.replace(model_cfg, param_dtype="bfloat16", compute_dtype="bfloat16")
    bf16_params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), f32_params)
    prompts = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3, 5, 8, 9, 7]]
    key = jax.random.PRNGKey(0)
    ref = generate(f32_params, model_cfg, *pad_prompts(prompts, 0), key, GREEDY)
    out = generate(bf16_params, bf16_cfg, *pad_prompts(prompts, 0), key, GREEDY)
    assert transformer.init_cache(bf16_cfg, 1, 4)["k"].dtype == jnp.bfloat16
    assert out.model_logprobs.dtype == jnp.float32
    assert np.isfinite(np.asarray(out.model_logprobs)).all()
    np.testing.assert_array_equal(out.tokens[:, :4], ref.tokens[:, :4])
    # bf16 rounding of params and activations: log-probs near, not equal
    np.testing.assert_allclose(out.model_logprobs[:, :4], ref.model_logprobs[:, :4], atol=0.15)
    assert not np.array_equal(np.asarray(out.model_logprobs), np.asarray(ref.model_logprobs))
