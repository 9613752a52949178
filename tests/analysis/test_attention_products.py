"""Attention with another multiplier: L-Mul and float8 products in q.k and probs.v, against an
elementwise emulation, through the model (apply and the KV cache), and the default path kept."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.analysis import lmul
from jaxlab.kernels.attention import attention_reference
from jaxlab.models import transformer
from jaxlab.nn.attention import explicit_attention

CFG = transformer.Config(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=48)


def qkv(T=6, S=6):
    kq, kk, kv = jax.random.split(jax.random.key(3), 3)
    return (jax.random.normal(kq, (2, T, 4, 8)), jax.random.normal(kk, (2, S, 2, 8)),
            jax.random.normal(kv, (2, S, 2, 8)))


@pytest.mark.slow
def test_lmul_einsum_is_the_sum_of_elementwise_lmul_products():
    a = jax.random.normal(jax.random.key(0), (3, 5, 8)).at[0, 0, :3].set(0.0)
    b = 1e3 * jax.random.normal(jax.random.key(1), (3, 7, 8))
    for m in (2, 3, 4):
        brute = lmul.lmul(a[:, :, None, :], b[:, None, :, :], m).sum(-1)
        np.testing.assert_allclose(lmul.lmul_einsum("bid,bjd->bij", a, b, m), brute, rtol=1e-6, atol=1e-3)
    assert float(lmul.power_of_two_part(-5.5)) == -4.0 and float(lmul.power_of_two_part(0.0)) == 0.0
    x8 = lmul.round_fp8(a, "e4m3")
    np.testing.assert_allclose(lmul.products_einsum("bid,bjd->bij", a, b, "fp8_e4m3"),
                               jnp.einsum("bid,bjd->bij", x8, lmul.round_fp8(b, "e4m3")), rtol=1e-6)
    for bad in ("lmul0", "lmul", "fp8_e3m4", "bf16"):
        with pytest.raises(ValueError, match="unknown products"):
            lmul.check_products(bad)


@pytest.mark.slow
def test_explicit_attention_with_lmul_products_matches_an_elementwise_emulation():
    q, k, v = qkv()
    exact, probs = explicit_attention(q, k, v)
    np.testing.assert_allclose(exact, attention_reference(q, k, v), atol=1e-6)
    out, probs = explicit_attention(q, k, v, products="lmul3")
    # by hand: scores and mixture as elementwise L-Mul products over [B, H, T, S, Dh]
    k_h, v_h = jnp.repeat(k, 2, axis=2), jnp.repeat(v, 2, axis=2)
    s = lmul.lmul(q[:, :, None] * 8 ** -0.5, k_h[:, None], 3).sum(-1)  # [B, T, S, H]
    s = jnp.where(jnp.tril(jnp.ones((6, 6), bool))[None, :, :, None], s, -jnp.inf)
    p = jax.nn.softmax(s, axis=2)
    np.testing.assert_allclose(probs, jnp.transpose(p, (0, 3, 1, 2)), atol=1e-6)
    o = lmul.lmul(p[..., None], v_h[:, None], 3).sum(2)  # [B, T, H, Dh]
    np.testing.assert_allclose(out, o, atol=1e-5)
    assert float(jnp.abs(out - exact).max()) > 1e-3  # L-Mul is not exact


@pytest.mark.slow
def test_model_products_option_routes_attention_and_keeps_the_default_path():
    params = transformer.init(CFG, jax.random.key(0))
    tok = jax.random.randint(jax.random.key(1), (2, 6), 0, 64)
    base = transformer.apply(params, tok, CFG)
    assert transformer.Config(**CFG.__dict__).attention_products == "exact"
    with pytest.raises(ValueError, match="attention_products"):
        transformer.Config(**{**CFG.__dict__, "attention_products": "lmul11"})
    lcfg = transformer.Config(**{**CFG.__dict__, "attention_products": "lmul3"})
    lm = transformer.apply(params, tok, lcfg)
    assert 1e-4 < float(jnp.abs(lm - base).max()) < 0.5
    # the cached path uses the same products: prefill + decode give apply's last logits
    cache = transformer.init_cache(lcfg, 2, 8)
    _, cache = transformer.prefill(params, tok[:, :5], lcfg, cache)
    step, _ = transformer.decode_step(params, tok[:, 5], lcfg, cache)
    np.testing.assert_allclose(step, lm[:, 5], atol=1e-4)
