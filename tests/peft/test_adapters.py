"""Adapters: zero-init adapters leave the model unchanged, each method's dW is its formula,
gradients reach only the adapters, and a few steps of adapter training lower the loss."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.models import transformer
from jaxlab.peft import AdapterError, AdapterSpec, attach, count_trainable, fourier_positions, merge

CFG = transformer.Config(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                         mlp_dim=48)


apply = jax.jit(transformer.apply, static_argnums=2)


@pytest.fixture(scope="module")
def params():
    return transformer.init(CFG, jax.random.key(0))


def tokens():
    return jax.random.randint(jax.random.key(1), (2, 12), 0, CFG.vocab_size)


@pytest.mark.parametrize("method", ["lora", "dora", "singlora", "fourierft"])
def test_fresh_adapters_leave_the_model_unchanged(params, method):
    spec = AdapterSpec(method=method, targets="all", rank=4, n_frequencies=64)
    frozen, trainable = attach(params, spec, jax.random.key(2))
    merged = merge(frozen, trainable, spec, step=0)
    np.testing.assert_allclose(apply(merged, tokens(), CFG), apply(params, tokens(), CFG),
                               atol=1e-5, rtol=1e-5)
    assert set(trainable["layers"]) == {"attn", "mlp"} and set(trainable["layers"]["attn"]) == {"q", "k", "v", "o"}


def test_lora_delta_is_scaled_a_times_b(params):
    spec = AdapterSpec(method="lora", targets="qv", rank=4, alpha=8.0)
    frozen, trainable = attach(params, spec, jax.random.key(3))
    b = jax.random.normal(jax.random.key(4), trainable["layers"]["attn"]["q"]["lora_b"].shape)
    trainable["layers"]["attn"]["q"]["lora_b"] = b
    merged = merge(frozen, trainable, spec)
    a = trainable["layers"]["attn"]["q"]["lora_a"]
    w0 = params["layers"]["attn"]["q"]["kernel"].reshape(2, 32, 32)
    expected = w0 + (8.0 / 4) * np.einsum("lnr,lrm->lnm", a, b)
    np.testing.assert_allclose(merged["layers"]["attn"]["q"]["kernel"].reshape(2, 32, 32), expected, rtol=1e-5, atol=1e-6)
    # k was not targeted; rsLoRA scales by alpha / sqrt(r)
    assert merged["layers"]["attn"]["k"]["kernel"] is params["layers"]["attn"]["k"]["kernel"]
    assert AdapterSpec(rank=4, alpha=8.0, rslora=True).scale == 4.0
    # the o kernel [L, H, Dh, D] is read with its two input axes: A is [L, H*Dh, r]
    _, t_o = attach(params, AdapterSpec(targets="attn", rank=4), jax.random.key(3))
    assert t_o["layers"]["attn"]["o"]["lora_a"].shape == (2, 32, 4)
    assert t_o["layers"]["attn"]["k"]["lora_b"].shape == (2, 4, 16)


def test_dora_keeps_the_column_norms_equal_to_the_magnitude(params):
    spec = AdapterSpec(method="dora", targets="mlp", rank=2)
    frozen, trainable = attach(params, spec, jax.random.key(5))
    up = trainable["layers"]["mlp"]["up"]
    up["lora_b"] = jax.random.normal(jax.random.key(6), up["lora_b"].shape)
    up["magnitude"] = up["magnitude"] * 1.5
    merged = merge(frozen, trainable, spec)["layers"]["mlp"]["up"]["kernel"]  # [L, D, F]
    np.testing.assert_allclose(jnp.linalg.norm(merged, axis=-2), up["magnitude"], rtol=1e-5)
    w0 = params["layers"]["mlp"]["up"]["kernel"]
    v = w0 + spec.scale * jnp.einsum("lnr,lrm->lnm", up["lora_a"], up["lora_b"])
    np.testing.assert_allclose(merged, up["magnitude"][:, None] * v / jnp.linalg.norm(v, axis=-2, keepdims=True),
                               rtol=1e-5, atol=1e-6)


def test_singlora_is_symmetric_on_square_kernels_and_ramps(params):
    spec = AdapterSpec(method="singlora", targets=r"^layers/attn/(q|k)$", rank=3, alpha=3.0, ramp_steps=10)
    frozen, trainable = attach(params, spec, jax.random.key(7))
    a_q = trainable["layers"]["attn"]["q"]["single_a"]  # q is [D=32] -> [H*Dh=32]: square
    half = merge(frozen, trainable, spec, step=5)["layers"]["attn"]["q"]["kernel"].reshape(2, 32, 32)
    d = half - params["layers"]["attn"]["q"]["kernel"].reshape(2, 32, 32)
    np.testing.assert_allclose(d, 0.5 * np.einsum("lnr,lmr->lnm", a_q, a_q), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(d, np.swapaxes(d, -1, -2), atol=1e-6)
    # k is [32] -> [K*Dh=16]: A* has max(n, m) = 32 rows, dW = A*[:32] A*[:16]^T
    a_k = trainable["layers"]["attn"]["k"]["single_a"]
    assert a_k.shape == (2, 32, 3)
    full = merge(frozen, trainable, spec, step=50)["layers"]["attn"]["k"]["kernel"].reshape(2, 32, 16)
    np.testing.assert_allclose(full - params["layers"]["attn"]["k"]["kernel"].reshape(2, 32, 16),
                               np.einsum("lnr,lmr->lnm", a_k, a_k[:, :16]), rtol=1e-4, atol=1e-6)


def test_fourierft_is_the_inverse_dft_of_a_sparse_spectrum(params):
    spec = AdapterSpec(method="fourierft", targets="qv", n_frequencies=20, alpha=50.0)
    frozen, trainable = attach(params, spec, jax.random.key(8))
    c = jax.random.normal(jax.random.key(9), trainable["layers"]["attn"]["v"]["spectrum"].shape)
    trainable["layers"]["attn"]["v"]["spectrum"] = c
    merged = merge(frozen, trainable, spec)["layers"]["attn"]["v"]["kernel"].reshape(2, 32, 16)
    pos = fourier_positions(32, 16, spec)
    for layer in range(2):
        F = np.zeros(32 * 16, complex)
        F[pos] = np.asarray(c[layer])
        expected = params["layers"]["attn"]["v"]["kernel"][layer].reshape(32, 16) + 50.0 * np.fft.ifft2(F.reshape(32, 16)).real
        np.testing.assert_allclose(merged[layer], expected, rtol=1e-4, atol=1e-6)
    # positions: distinct, reproducible, shared by kernels of one shape; the biased draw favours low frequencies
    assert len(set(pos)) == 20 and np.array_equal(pos, fourier_positions(32, 16, spec))
    low = fourier_positions(64, 64, AdapterSpec(method="fourierft", n_frequencies=200, frequency_bias=True))
    uniform = fourier_positions(64, 64, AdapterSpec(method="fourierft", n_frequencies=200))
    def mean_freq(p):
        u, v = np.divmod(p, 64)
        return np.mean(np.minimum(u, 64 - u) + np.minimum(v, 64 - v))
    assert mean_freq(low) < 0.5 * mean_freq(uniform)
    assert count_trainable(trainable) == 2 * 2 * 20


def test_gradients_reach_only_adapters_and_training_lowers_the_loss(params):
    spec = AdapterSpec(method="lora", targets="all", rank=4, alpha=8.0)
    frozen, trainable = attach(params, spec, jax.random.key(10))
    x = tokens()

    @jax.jit
    def loss(trainable):
        logits = transformer.apply(merge(frozen, trainable, spec), x[:, :-1], CFG)
        return optax.softmax_cross_entropy_with_integer_labels(logits, x[:, 1:]).mean()

    opt = optax.adam(1e-2)
    state = opt.init(trainable)
    assert jax.tree.structure(state[0].mu) == jax.tree.structure(trainable)  # optimizer covers adapters only
    first = float(loss(trainable))
    grad = jax.jit(jax.grad(loss))
    for _ in range(15):
        g = grad(trainable)
        updates, state = opt.update(g, state)
        trainable = optax.apply_updates(trainable, updates)
    assert float(loss(trainable)) < first - 0.2
    assert count_trainable(trainable) < 0.5 * sum(math.prod(p.shape) for p in jax.tree.leaves(params))


def test_bad_specs_are_refused(params):
    with pytest.raises(AdapterError, match="method='lokr'"):
        AdapterSpec(method="lokr")
    with pytest.raises(AdapterError, match="matches no kernel"):
        attach(params, AdapterSpec(targets="^nothing$"), jax.random.key(0))
    with pytest.raises(AdapterError, match="rank"):
        AdapterSpec(rank=0)
