import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.models import transformer as tf

CFG = tf.Config(vocab_size=37, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=64)


@functools.cache
def _params(cfg=CFG, seed=0):
    return tf.init(cfg, jax.random.key(seed))


def _tokens(B, T, seed=1, vocab=CFG.vocab_size):
    return jax.random.randint(jax.random.key(seed), (B, T), 0, vocab)


apply = jax.jit(tf.apply, static_argnames=("cfg", "return_hidden"))


class ApplyTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_shapes_dtypes_finite(self):
        tokens = _tokens(2, 9)
        fn = self.variant(functools.partial(tf.apply, cfg=CFG, return_hidden=True))
        logits, hidden = fn(_params(), tokens)
        chex.assert_shape(logits, (2, 9, CFG.vocab_size))
        chex.assert_shape(hidden, (CFG.n_layers + 1, 2, 9, CFG.d_model))
        chex.assert_type(logits, jnp.float32)
        chex.assert_tree_all_finite((logits, hidden))


def test_param_shapes_are_stacked_over_layers():
    p = _params()
    chex.assert_shape(p["layers"]["attn"]["q"]["kernel"], (2, 32, 4, 8))
    chex.assert_shape(p["layers"]["attn"]["k"]["kernel"], (2, 32, 2, 8))
    chex.assert_shape(p["layers"]["mlp"]["down"]["kernel"], (2, 64, 32))
    assert "unembed" not in p
    untied = tf.init(tf.Config(**{**CFG.__dict__, "tie_embeddings": False}), jax.random.key(0))
    chex.assert_shape(untied["unembed"]["kernel"], (32, 37))
    for path, leaf in jax.tree_util.tree_flatten_with_path(untied)[0]:
        name = "/".join(k.key for k in path)
        assert len(tf.param_axes(name)) == leaf.ndim, name


def test_causality_future_tokens_do_not_change_past_logits():
    tokens = _tokens(2, 10)
    base = apply(_params(), tokens, CFG)
    for j in range(10):
        changed = tokens.at[:, j].set((tokens[:, j] + 5) % CFG.vocab_size)
        out = apply(_params(), changed, CFG)
        np.testing.assert_array_equal(out[:, :j], base[:, :j])
        assert float(jnp.max(jnp.abs(out[:, j:] - base[:, j:]))) > 1e-3


def test_bidirectional_config_sees_the_future():
    cfg = tf.Config(**{**CFG.__dict__, "causal": False})
    tokens = _tokens(1, 6)
    a = apply(_params(), tokens, cfg)
    b = apply(_params(), tokens.at[:, 5].set((tokens[:, 5] + 1) % 37), cfg)
    assert float(jnp.max(jnp.abs(a[:, 0] - b[:, 0]))) > 1e-4


def test_packed_rows_equal_separate_rows():
    t1, t2 = _tokens(1, 5, seed=3), _tokens(1, 7, seed=4)
    packed = jnp.concatenate([t1, t2], axis=1)
    seg = jnp.array([[1] * 5 + [2] * 7])
    pos = jnp.array([list(range(5)) + list(range(7))])
    out = tf.apply(_params(), packed, CFG, positions_BT=pos, segment_ids_BT=seg)
    np.testing.assert_allclose(out[:, :5], apply(_params(), t1, CFG), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[:, 5:], apply(_params(), t2, CFG), rtol=1e-5, atol=1e-5)


def test_kv_cache_decoding_equals_full_forward_with_left_padding():
    # Two prompts of different lengths, left-padded, then 4 decode steps.
    params = _params()
    full = [np.asarray(_tokens(1, 10, seed=5))[0], np.asarray(_tokens(1, 10, seed=6))[0]]
    prompt_lens = [6, 3]
    T = max(prompt_lens)
    tokens = np.zeros((2, T), np.int32)
    mask = np.zeros((2, T), np.int32)
    for b, n in enumerate(prompt_lens):
        tokens[b, T - n:] = full[b][:n]
        mask[b, T - n:] = 1
    cache = tf.init_cache(CFG, 2, T + 4)
    logits, cache = jax.jit(tf.prefill, static_argnames="cfg")(params, jnp.asarray(tokens), CFG, cache,
                                                              mask_BT=jnp.asarray(mask))
    step_logits = [logits[:, -1]]
    decode = jax.jit(tf.decode_step, static_argnames="cfg")
    for i in range(4):
        nxt = jnp.array([full[b][prompt_lens[b] + i] for b in range(2)])
        lg, cache = decode(params, nxt, CFG, cache)
        step_logits.append(lg)
    for b, n in enumerate(prompt_lens):
        ref = apply(params, jnp.asarray(full[b][None, : n + 4]), CFG)[0, n - 1:]
        got = jnp.stack([s[b] for s in step_logits])
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert int(cache["index"]) == T + 4
    np.testing.assert_array_equal(cache["positions"], [10, 7])


def test_sliding_window_model_cache_matches_full_forward():
    cfg = tf.Config(**{**CFG.__dict__, "window": 3})
    params = tf.init(cfg, jax.random.key(0))
    tokens = _tokens(1, 9, seed=7)
    ref = apply(params, tokens, cfg)
    cache = tf.init_cache(cfg, 1, 9)
    logits, cache = jax.jit(tf.prefill, static_argnames="cfg")(params, tokens[:, :5], cfg, cache)
    outs = [logits[:, -1]]
    decode = jax.jit(tf.decode_step, static_argnames="cfg")
    for t in range(5, 9):
        lg, cache = decode(params, tokens[:, t], cfg, cache)
        outs.append(lg)
    np.testing.assert_allclose(jnp.stack(outs[:-1], 1), ref[:, 4:8], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("remat", ["full", "dots"])
def test_remat_gives_same_values_and_gradients(remat):
    cfg = tf.Config(**{**CFG.__dict__, "remat": remat})
    tokens = _tokens(2, 6)
    loss = lambda p, c: jnp.mean(jax.nn.logsumexp(tf.apply(p, tokens, c), -1))
    g_ref = jax.jit(jax.grad(loss), static_argnums=1)(_params(), CFG)
    g = jax.jit(jax.grad(loss), static_argnums=1)(_params(), cfg)
    chex.assert_trees_all_close(g, g_ref, rtol=1e-5, atol=1e-6)


def test_bf16_compute_keeps_f32_params_and_f32_logits():
    cfg = tf.Config(**{**CFG.__dict__, "compute_dtype": "bfloat16", "qk_norm": True,
                       "mlp_type": "geglu", "norm_type": "layer", "rope_fraction": 0.5})
    params = tf.init(cfg, jax.random.key(0))
    chex.assert_trees_all_equal_dtypes(params, jax.tree.map(lambda x: x.astype(jnp.float32), params))
    logits = apply(params, _tokens(2, 5), cfg)
    chex.assert_type(logits, jnp.float32)
    chex.assert_tree_all_finite(logits)
    ref = apply(params, _tokens(2, 5), tf.Config(**{**cfg.__dict__, "compute_dtype": "float32"}))
    np.testing.assert_allclose(logits, ref, atol=0.15)


def test_prompt_longer_than_the_cache_is_refused():
    cache = tf.init_cache(CFG, 1, 4)
    with pytest.raises(ValueError, match="do not fit a KV cache of 4 slots"):
        tf.prefill(_params(), _tokens(1, 5), CFG, cache)


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of"):
        tf.Config(n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="rope_fraction"):
        tf.Config(rope_fraction=2.0)
    with pytest.raises(ValueError, match="tokens must be"):
        tf.apply(_params(), jnp.zeros((3,), jnp.int32), CFG)


SOFTPLUS = tf.Config(**{**CFG.__dict__, "attention_kind": "softplus", "attention_reweight_power": 2.0})


def test_softplus_attention_model_is_causal_and_decodes_like_the_full_forward():
    params = tf.init(SOFTPLUS, jax.random.key(3))
    tokens = _tokens(2, 9, seed=8)
    logits = apply(params, tokens, SOFTPLUS)
    changed = tokens.at[:, 6:].set((tokens[:, 6:] + 1) % CFG.vocab_size)
    np.testing.assert_allclose(apply(params, changed, SOFTPLUS)[:, :6], logits[:, :6], rtol=1e-5, atol=1e-5)
    # Left padding and a KV cache: each query's length (its visible keys) excludes the padding.
    prompt = np.asarray(tokens[1, :4])
    padded = jnp.asarray(np.concatenate([np.zeros(3, np.int32), prompt])[None])
    mask = jnp.asarray([[0, 0, 0, 1, 1, 1, 1]])
    cache = tf.init_cache(SOFTPLUS, 1, 12)
    lg, cache = jax.jit(tf.prefill, static_argnames="cfg")(params, padded, SOFTPLUS, cache, mask_BT=mask)
    steps = [lg[:, -1]]
    for t in range(4, 8):
        lg, cache = jax.jit(tf.decode_step, static_argnames="cfg")(params, tokens[1:, t], SOFTPLUS, cache)
        steps.append(lg)
    np.testing.assert_allclose(jnp.stack(steps, 1)[0], logits[1, 3:8], rtol=1e-5, atol=1e-5)


def test_softplus_reweighting_changes_the_function_not_the_params():
    cfg1 = tf.Config(**{**SOFTPLUS.__dict__, "attention_reweight_power": 1.0})
    params = tf.init(cfg1, jax.random.key(4))
    chex.assert_trees_all_equal_shapes(params, tf.init(SOFTPLUS, jax.random.key(4)))
    tokens = _tokens(1, 8, seed=9)
    assert not np.allclose(apply(params, tokens, cfg1), apply(params, tokens, SOFTPLUS), atol=1e-4)


def test_attention_kind_validation():
    with pytest.raises(ValueError, match="attention_kind"):
        tf.Config(attention_kind="sigmoid")
    with pytest.raises(ValueError, match="applies to attention_kind='softplus' only"):
        tf.Config(attention_reweight_power=2.0)
    with pytest.raises(ValueError, match="must be >= 1"):
        tf.Config(attention_kind="softplus", attention_reweight_power=0.5)


def test_fan_mlp_is_phi_then_down_and_every_param_has_axes_and_a_gradient():
    """model.mlp_type="fan": the MLP hidden is FAN's [cos(W_p h) || sin(W_p h) || GELU(W_q h + b)]
    with d_p = F/4, d_q = F/2; every param has logical axes and gets a gradient."""
    cfg = tf.Config(**{**CFG.__dict__, "mlp_type": "fan"})
    params = tf.init(cfg, jax.random.key(0))
    mlp = jax.tree.map(lambda a: a[0], params["layers"]["mlp"])
    chex.assert_shape((mlp["periodic"]["kernel"], mlp["plain"]["kernel"], mlp["down"]["kernel"]),
                      [(32, 16), (32, 32), (64, 32)])
    h = jax.random.normal(jax.random.key(2), (2, 3, 32))
    from jaxlab.nn.mlp import mlp_hidden
    p = h @ mlp["periodic"]["kernel"]
    q = jax.nn.gelu(h @ mlp["plain"]["kernel"] + mlp["plain"]["bias"])
    np.testing.assert_allclose(mlp_hidden(mlp, h, "fan"), jnp.concatenate([jnp.cos(p), jnp.sin(p), q], -1),
                               rtol=1e-5, atol=1e-6)
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = "/".join(k.key for k in path)
        assert len(tf.param_axes(name)) >= 1, name
    tokens = _tokens(2, 7)
    grads = jax.grad(lambda p: jnp.mean(jax.nn.logsumexp(tf.apply(p, tokens, cfg), -1)))(params)
    chex.assert_tree_all_finite(grads)
    assert float(jnp.abs(grads["layers"]["mlp"]["periodic"]["kernel"]).sum()) > 0
    _, captured = tf.apply(params, tokens, cfg, capture=("mlp_hidden",))
    chex.assert_shape(captured["mlp_hidden"], (cfg.n_layers, 2, 7, cfg.mlp_dim))


def test_fan_mlp_models_are_refused_by_the_llama_exports(tmp_path):
    from jaxlab.interop import hf

    cfg = tf.Config(**{**CFG.__dict__, "mlp_type": "fan"})
    with pytest.raises(hf.HFCheckpointError, match="mlp_type='fan'"):
        hf.save(tmp_path / "m", cfg, tf.init(cfg, jax.random.key(0)))
