"""Speculative decoding with a layer-pruned draft: greedy output identical to the target's own
greedy output; a draft equal to the target has every token accepted; caches roll back."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from jaxlab.analysis.layers import drop_layers
from jaxlab.models import transformer
from jaxlab.samplers.speculative import rollback, speculative_generate

CFG = transformer.Config(vocab_size=48, d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=64)


@pytest.fixture(scope="module")
def models():
    params = transformer.init(CFG, jax.random.key(0))
    draft_cfg = dataclasses.replace(CFG, n_layers=2)
    return params, drop_layers(params, 2, 1), draft_cfg


def greedy_reference(params, prompt, n):
    """The target's own greedy decoding, by the KV-cache sampler."""
    from jaxlab.samplers import SampleConfig, generate
    out = generate(params, CFG, jnp.asarray([prompt]), jnp.ones((1, len(prompt)), jnp.int32), jax.random.key(0),
                   SampleConfig(max_new_tokens=n, temperature=0.0))
    return [int(t) for t in out.tokens[0]]


def test_greedy_speculative_equals_the_target(models):
    params, draft, draft_cfg = models
    prompt = [3, 11, 7, 20, 5]
    expected = greedy_reference(params, prompt, 20)
    for gamma in (1, 4):
        out = speculative_generate(params, CFG, draft, draft_cfg, prompt, gamma=gamma, max_new_tokens=20)
        assert out["tokens"] == expected, gamma
        assert out["target_calls"] == len(out["accepted"])
        if gamma > 1:
            assert out["target_calls"] < 20  # more than one token per target pass


def test_a_perfect_draft_is_always_accepted_and_stops_at_a_stop_token(models):
    params, _, _ = models
    out = speculative_generate(params, CFG, params, CFG, [1, 2, 3], gamma=4, max_new_tokens=16,
                               temperature=1.0, key=jax.random.key(3))
    assert all(n == 4 for n in out["accepted"][:-1]) and out["target_calls"] == 4
    stop = out["tokens"][5]
    cut = speculative_generate(params, CFG, params, CFG, [1, 2, 3], gamma=4, max_new_tokens=16,
                               temperature=1.0, key=jax.random.key(3), stop_tokens=(stop,))
    assert cut["tokens"] == out["tokens"][:out["tokens"].index(stop) + 1]


def test_rollback_forgets_later_slots():
    cache = transformer.init_cache(CFG, 1, 8)
    cache = {**cache, "segment_ids": jnp.ones((1, 8), jnp.int32), "index": jnp.int32(6)}
    back = rollback(cache, 3)
    assert int(back["index"]) == 3 and back["segment_ids"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match="vocabulary"):
        speculative_generate({}, CFG, {}, dataclasses.replace(CFG, vocab_size=50), [1])
