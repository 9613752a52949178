"""Linear-recurrence scans: references against loops, Pallas kernels against references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from kernel_checks import (BF16_FWD_REL, BF16_GRAD_REL, F32_REL, assert_close,
                           kernel_and_reference, lower_for_cuda, run_compiled)

from jaxlab.kernels import UnsupportedError, linear_scan, selective_scan
from jaxlab.kernels.scan import (ScanBlocks, linear_scan_associative, linear_scan_pallas,
                                 linear_scan_sequential, selective_scan_pallas,
                                 selective_scan_reference)


def _scan_inputs(seed, B, T, D, dtype=jnp.float32):
    ka, kb, kh, kc = jax.random.split(jax.random.key(seed), 4)
    a = jax.random.uniform(ka, (B, T, D), minval=-1.0, maxval=1.0).astype(dtype)
    b = jax.random.normal(kb, (B, T, D)).astype(dtype)
    return a, b, jax.random.normal(kh, (B, D)).astype(dtype), jax.random.normal(kc, (B, T, D)).astype(dtype)


def naive_linear_scan(a, b, h0):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    h = np.zeros_like(b)
    prev = np.zeros(b[:, 0].shape) if h0 is None else np.asarray(h0, np.float64)
    for t in range(b.shape[1]):
        prev = a[:, t] * prev + b[:, t]
        h[:, t] = prev
    return h


@pytest.mark.parametrize("fn", [linear_scan_sequential, linear_scan_associative])
@pytest.mark.parametrize("with_h0", [False, True])
def test_references_match_the_recurrence(fn, with_h0):
    a, b, h0, _ = _scan_inputs(0, 2, 13, 5)
    h0 = h0 if with_h0 else None
    np.testing.assert_allclose(run_compiled(fn, a, b, h0), naive_linear_scan(a, b, h0),
                               rtol=1e-5, atol=1e-6)


# name: (B, T, D, block_d, chunk): one chunk (single pass) and several (two passes + combine)
LSCAN_CASES = {
    "one-chunk-odd-length": (2, 37, 20, 8, None),
    "chunked-odd-length": (2, 37, 20, 8, 8),
    "chunked-channels-padded": (1, 50, 33, 16, 16),
}


@pytest.mark.parametrize("name", LSCAN_CASES)
def test_linear_scan_kernel_values_and_gradients_f32(name):
    B, T, D, bd, chunk = LSCAN_CASES[name]
    a, b, h0, dh = _scan_inputs(1, B, T, D)
    kernel = functools.partial(linear_scan_pallas, blocks=ScanBlocks(block_d=bd, chunk=chunk))
    (h, grads), (ref_h, ref_grads) = kernel_and_reference(kernel, linear_scan_sequential,
                                                          (a, b, h0), dh)
    assert_close(h, ref_h, F32_REL, "h")
    for g, r, n in zip(grads, ref_grads, ("a", "b", "h0")):
        assert_close(g, r, F32_REL, f"d{n}")


def test_linear_scan_kernel_bf16():
    a, b, h0, dh = _scan_inputs(2, 2, 45, 24, jnp.bfloat16)
    kernel = functools.partial(linear_scan_pallas, blocks=ScanBlocks(block_d=8, chunk=16))
    (h, grads), (ref_h, ref_grads) = kernel_and_reference(kernel, linear_scan_sequential,
                                                          (a, b, h0), dh)
    assert h.dtype == jnp.bfloat16
    assert_close(h, ref_h, BF16_FWD_REL, "h")
    for g, r in zip(grads, ref_grads):
        assert g.dtype == jnp.bfloat16
        assert_close(g, r, BF16_GRAD_REL, "grad")


def test_linear_scan_dispatcher():
    a, b, h0, _ = _scan_inputs(3, 1, 9, 4)
    want = naive_linear_scan(a, b, h0)
    for impl in ("auto", "xla", "sequential"):
        np.testing.assert_allclose(linear_scan(a, b, h0, impl=impl), want, rtol=1e-5, atol=1e-6)
    jaxpr = lambda impl: str(jax.make_jaxpr(functools.partial(linear_scan, impl=impl))(a, b))  # noqa: E731
    assert "pallas_call" in jaxpr("pallas") and "pallas_call" not in jaxpr("auto")
    with pytest.raises(ValueError, match="unknown linear_scan impl"):
        linear_scan(a, b, impl="cuda")
    with pytest.raises(ValueError, match="one shape"):
        linear_scan(a, b[:, :3])
    with pytest.raises(ValueError, match="h0 must be"):
        linear_scan(a, b, h0[:, :2])
    with pytest.raises(UnsupportedError, match="dtype"):
        linear_scan(a.astype(jnp.int32), b.astype(jnp.int32), impl="pallas")


# ----------------------------------------------------------------------------- selective scan


def _selective_inputs(seed, B, T, D, N, dtype=jnp.float32):
    ks = jax.random.split(jax.random.key(seed), 7)
    x = jax.random.normal(ks[0], (B, T, D))
    delta = jax.nn.softplus(jax.random.normal(ks[1], (B, T, D)) - 1.0)
    A = -jnp.exp(jax.random.normal(ks[2], (D, N)) * 0.5)
    Bm, Cm = jax.random.normal(ks[3], (B, T, N)), jax.random.normal(ks[4], (B, T, N))
    D_skip = jax.random.normal(ks[5], (D,))
    dy = jax.random.normal(ks[6], (B, T, D))
    return tuple(u.astype(dtype) for u in (x, delta, A, Bm, Cm, D_skip, dy))


def naive_selective_scan(x, delta, A, B, C, D):
    x, delta, A, B, C, D = (np.asarray(u, np.float64) for u in (x, delta, A, B, C, D))
    Bsz, T, Dm = x.shape
    y = np.zeros_like(x)
    for b in range(Bsz):
        h = np.zeros(A.shape)
        for t in range(T):
            h = np.exp(delta[b, t][:, None] * A) * h + (delta[b, t] * x[b, t])[:, None] * B[b, t][None]
            y[b, t] = h @ C[b, t] + D * x[b, t]
    return y


def test_selective_scan_reference_matches_the_recurrence():
    x, delta, A, Bm, Cm, Dk, _ = _selective_inputs(4, 2, 11, 6, 3)
    np.testing.assert_allclose(run_compiled(selective_scan_reference, x, delta, A, Bm, Cm, Dk),
                               naive_selective_scan(x, delta, A, Bm, Cm, Dk), rtol=1e-5, atol=1e-5)


# name: (B, T, D, N, block_d, chunk)
SSCAN_CASES = {
    "odd-length-padded-state": (2, 13, 20, 5, 8, 4),
    "state-16": pytest.param((1, 16, 8, 16, 8, 8), marks=pytest.mark.slow),
}


@pytest.mark.parametrize("case", SSCAN_CASES.values(), ids=SSCAN_CASES.keys())
def test_selective_scan_kernel_values_and_gradients_f32(case):
    B, T, D, N, bd, chunk = case
    *args, dy = _selective_inputs(5, B, T, D, N)
    kernel = functools.partial(selective_scan_pallas, blocks=ScanBlocks(block_d=bd, chunk=chunk))
    (y, grads), (ref_y, ref_grads) = kernel_and_reference(kernel, selective_scan_reference,
                                                          tuple(args), dy)
    assert_close(y, ref_y, F32_REL, "y")
    for g, r, n in zip(grads, ref_grads, ("x", "delta", "A", "B", "C", "D")):
        assert_close(g, r, F32_REL, f"d{n}")


def test_selective_scan_kernel_bf16():
    *args, dy = _selective_inputs(6, 2, 12, 16, 4, jnp.bfloat16)
    kernel = functools.partial(selective_scan_pallas, blocks=ScanBlocks(block_d=8, chunk=4))
    (y, grads), (ref_y, ref_grads) = kernel_and_reference(kernel, selective_scan_reference,
                                                          tuple(args), dy)
    assert y.dtype == jnp.bfloat16
    assert_close(y, ref_y, BF16_FWD_REL, "y")
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, BF16_GRAD_REL, "grad")


def test_selective_scan_dispatcher_checks_shapes():
    x, delta, A, Bm, Cm, Dk, _ = _selective_inputs(7, 1, 5, 4, 2)
    np.testing.assert_allclose(selective_scan(x, delta, A, Bm, Cm, Dk),
                               naive_selective_scan(x, delta, A, Bm, Cm, Dk), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(x, delta, A[:3], Bm, Cm)
    with pytest.raises(ValueError, match="C must be"):
        selective_scan(x, delta, A, Bm, Cm[:, :2])
    with pytest.raises(ValueError, match="unknown selective_scan impl"):
        selective_scan(x, delta, A, Bm, Cm, impl="cuda")


# ----------------------------------------------------------------------------- GPU lowering


@pytest.mark.parametrize("chunk", [1000, 128])
def test_linear_scan_lowers_to_triton_for_a_cuda_gpu(chunk):
    s = jax.ShapeDtypeStruct((2, 1000, 600), jnp.bfloat16)
    h0 = jax.ShapeDtypeStruct((2, 600), jnp.bfloat16)
    loss = lambda a, b, h0: linear_scan_pallas(a, b, h0, blocks=ScanBlocks(chunk=chunk),  # noqa: E731
                                               interpret=False).astype(jnp.float32).sum()
    module = lower_for_cuda(jax.grad(loss, argnums=(0, 1, 2)), s, s, h0)
    # chunked: summary + final passes forward and backward; one chunk: one pass each way
    assert module.count("__gpu$xla.gpu.triton") == (2 if chunk == 1000 else 4)


def test_selective_scan_lowers_to_triton_for_a_cuda_gpu():
    x = jax.ShapeDtypeStruct((2, 300, 200), jnp.bfloat16)
    A = jax.ShapeDtypeStruct((200, 16), jnp.float32)
    bc = jax.ShapeDtypeStruct((2, 300, 16), jnp.bfloat16)
    D = jax.ShapeDtypeStruct((200,), jnp.float32)
    loss = lambda *args: selective_scan_pallas(*args, interpret=False).astype(jnp.float32).sum()  # noqa: E731
    module = lower_for_cuda(jax.grad(loss, argnums=tuple(range(6))), x, x, A, bc, bc, D)
    assert module.count("__gpu$xla.gpu.triton") == 2
