"""The ModernBERT-style encoder: symmetric local windows, packed sequences, padding, heads."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.models import encoder

CFG = encoder.EncoderConfig(vocab_size=61, d_model=32, n_layers=3, n_heads=2, head_dim=16, mlp_dim=48,
                            local_window=6)
encode = jax.jit(encoder.encode, static_argnums=2)


@pytest.fixture(scope="module")
def params():
    return encoder.init(CFG, jax.random.key(0))


def test_layer_types_and_config_errors():
    assert CFG.types == ("global", "local", "local")
    assert encoder.EncoderConfig(n_layers=7).types == ("global", "local", "local") * 2 + ("global",)
    assert CFG.attention("local").window == 4 and not CFG.attention("local").causal  # |t - s| <= 3
    assert CFG.attention("global").window is None and CFG.attention("global").rope_base == 160_000.0
    with pytest.raises(ValueError, match="layer_types=.*must list 3"):
        dataclasses.replace(CFG, layer_types=("global", "local"))
    with pytest.raises(ValueError, match="head_activation='tanh'"):
        dataclasses.replace(CFG, head_activation="tanh")


def test_segment_positions_restart_per_segment():
    seg = jnp.array([[1, 1, 1, 2, 2, 0, 0], [1, 2, 2, 2, 3, 3, 3]])
    assert encoder.segment_positions(seg).tolist() == [[0, 1, 2, 0, 1, 0, 1], [0, 0, 1, 2, 0, 1, 2]]


@pytest.mark.parametrize("layer_type, reach", [("local", 3), ("global", None)])
def test_a_token_reaches_exactly_the_symmetric_window(params, layer_type, reach):
    cfg = dataclasses.replace(CFG, n_layers=1, layer_types=(layer_type,))
    one = jax.tree.map(lambda x: x, params) | {"layers": jax.tree.map(lambda x: x[1:2], params["layers"])}
    tokens = jnp.arange(3, 19)[None]
    s = 8
    changed = tokens.at[0, s].set(50)
    diff = np.abs(np.asarray(encode(one, tokens, cfg) - encode(one, changed, cfg))).max(-1)[0]
    reached = {t for t in range(16) if diff[t] > 1e-5}
    expected = set(range(16)) if reach is None else {t for t in range(16) if abs(t - s) <= reach}
    assert reached == expected
    assert all(diff[t] == 0.0 for t in set(range(16)) - expected)  # masked keys contribute exactly 0


def test_packed_rows_equal_separate_sequences_and_padding_is_inert(params):
    rng = np.random.default_rng(1)
    a, b = rng.integers(3, 61, 8), rng.integers(3, 61, 8)
    packed = encode(params, jnp.asarray(np.concatenate([a, b]))[None], CFG,
                    segment_ids_BT=jnp.asarray([1] * 8 + [2] * 8)[None])
    alone = encode(params, jnp.asarray(np.stack([a, b])), CFG)
    np.testing.assert_allclose(packed[0, :8], alone[0], atol=1e-5)
    np.testing.assert_allclose(packed[0, 8:], alone[1], atol=1e-5)
    padded = encode(params, jnp.asarray(np.concatenate([a, np.zeros(8, int)]))[None], CFG,
                    segment_ids_BT=jnp.asarray([1] * 8 + [0] * 8)[None])
    np.testing.assert_allclose(padded[0, :8], alone[0], atol=1e-5)
    # with one segment id for both, a and b see each other
    joined = encode(params, jnp.asarray(np.concatenate([a, b]))[None], CFG,
                    segment_ids_BT=jnp.ones((1, 16), jnp.int32))
    assert np.abs(np.asarray(joined[0, :8] - alone[0])).max() > 1e-3


def test_heads_pooling_and_layer0_has_no_attention_norm(params):
    tokens = jnp.asarray(np.random.default_rng(2).integers(3, 61, (2, 16)))
    seg = jnp.asarray([[1] * 16, [1] * 6 + [0] * 10])
    full = params | {"classifier": encoder.init_classifier(CFG, jax.random.key(1), 5)}
    h = encode(full, tokens, CFG, segment_ids_BT=seg)

    @jax.jit
    def heads(p, h):
        return (encoder.token_logits(p, h, CFG), encoder.sequence_logits(p, h, CFG, seg),
                encoder.mlm_logits(p, h, CFG), encoder.pool(h, dataclasses.replace(CFG, pooling="mean"), seg))

    tok, sq, mlm, mean = heads(full, h)
    assert tok.shape == (2, 16, 5) and sq.shape == (2, 5) and mlm.shape == (2, 16, 61)
    np.testing.assert_allclose(mean[1], h[1, :6].mean(0), atol=1e-6)
    np.testing.assert_array_equal(encoder.pool(h, CFG, seg), h[:, 0])
    with pytest.raises(KeyError, match="no 'classifier' head"):
        encoder.token_logits(params, h, CFG)
    # layer 0 reads the embedding norm's output directly: its attn_norm is unused, layer 1's is not
    def with_attn_norm_scale(layer, value):
        scale = params["layers"]["attn_norm"]["scale"].at[layer].set(value)
        layers = params["layers"] | {"attn_norm": {"scale": scale}}
        return encode(params | {"layers": layers}, tokens, CFG, segment_ids_BT=seg)
    np.testing.assert_array_equal(with_attn_norm_scale(0, 3.0), encode(params, tokens, CFG, segment_ids_BT=seg))
    assert np.abs(np.asarray(with_attn_norm_scale(1, 3.0) - h)).max() > 1e-3


def test_param_axes_cover_every_param_with_matching_rank():
    cfg = encoder.EncoderConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, head_dim=16, mlp_dim=64)
    params = encoder.init(cfg, jax.random.key(0))
    params["classifier"] = encoder.init_classifier(cfg, jax.random.key(1), 5)
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        assert len(encoder.param_axes(name)) == leaf.ndim, name
    with pytest.raises(KeyError, match="no logical axes"):
        encoder.param_axes("mlm/unknown")
