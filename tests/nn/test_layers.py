import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.nn import dense, init_dense, init_mlp, init_norm, layer_norm, mlp, norm, rms_norm
from jaxlab.nn.embed import embed, init_embedding, unembed


def test_rms_norm_matches_formula():
    x = jnp.array([[1.0, -2.0, 3.0, 0.5]])
    params = {"scale": jnp.array([1.0, 2.0, 0.5, 1.0])}
    expected = x / np.sqrt(np.mean(np.square(x)) + 1e-6) * params["scale"]
    np.testing.assert_allclose(rms_norm(params, x, 1e-6), expected, rtol=1e-6)


def test_layer_norm_matches_formula():
    x = jax.random.normal(jax.random.key(0), (3, 8)) * 3 + 1
    params = init_norm(8, "layer")
    params = {"scale": params["scale"] * 2.0, "bias": params["bias"] + 0.5}
    mean, var = np.mean(x, -1, keepdims=True), np.var(x, -1, keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * 2.0 + 0.5
    np.testing.assert_allclose(layer_norm(params, x, 1e-5), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown norm"):
        norm(params, x, "batch", 1e-5)


def test_norm_computes_in_float32_and_returns_input_dtype():
    x = (jax.random.normal(jax.random.key(1), (2, 64)) * 100).astype(jnp.bfloat16)
    y = rms_norm(init_norm(64), x)
    chex.assert_type(y, jnp.bfloat16)
    np.testing.assert_allclose(np.sqrt(np.mean(np.square(np.float32(y)), -1)), 1.0, rtol=1e-2)


def test_dense_einsum_bias_and_init_scale():
    params = init_dense(jax.random.key(2), (256,), (4, 8), bias=True)
    chex.assert_shape(params["kernel"], (256, 4, 8))
    np.testing.assert_allclose(np.std(params["kernel"]), 256 ** -0.5, rtol=0.1)
    params["bias"] = jnp.ones((4, 8))
    x = jax.random.normal(jax.random.key(3), (2, 3, 256))
    y = dense(params, x, "btd,dhk->bthk")
    np.testing.assert_allclose(y, np.einsum("btd,dhk->bthk", x, params["kernel"]) + 1.0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,act", [("swiglu", jax.nn.silu),
                                      ("geglu", lambda z: jax.nn.gelu(z, approximate=True))])
def test_gated_mlp_matches_formula(kind, act):
    params = init_mlp(jax.random.key(4), 16, 32)
    x = jax.random.normal(jax.random.key(5), (2, 3, 16))
    g = x @ params["gate"]["kernel"]
    u = x @ params["up"]["kernel"]
    expected = (act(g) * u) @ params["down"]["kernel"]
    np.testing.assert_allclose(mlp(params, x, kind), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mlp type"):
        mlp(params, x, "relu")


def test_tied_and_untied_unembedding():
    table = init_embedding(jax.random.key(6), 11, 8)
    tokens = jnp.array([[1, 5, 10]])
    x = embed(table, tokens, jnp.float32)
    np.testing.assert_array_equal(x[0, 1], table["embedding"][5])
    logits = unembed(table, x, tied=True)
    chex.assert_shape(logits, (1, 3, 11))
    np.testing.assert_allclose(logits, np.einsum("btd,vd->btv", x, table["embedding"]), rtol=1e-5)
    out = init_dense(jax.random.key(7), (8,), (11,))
    chex.assert_type(unembed(out, x.astype(jnp.bfloat16), tied=False), jnp.float32)
