"""Shared checks of the kernel tests: errors relative to a reference, cuda lowering."""

import jax
import numpy as np
from jax import export

# Relative error bounds of the kernel tests (||actual - expected|| / ||expected||).
F32_REL = 1e-5
BF16_FWD_REL = 1e-2
BF16_GRAD_REL = 5e-2


def relative_error(actual, expected) -> float:
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30))


def assert_close(actual, expected, rel: float, what: str = "") -> None:
    """No NaN or inf anywhere, and a relative error of at most ``rel``."""
    arr = np.asarray(actual, np.float64)
    assert np.all(np.isfinite(arr)), f"{what}: non-finite values"
    assert arr.shape == np.shape(expected), f"{what}: shape {arr.shape} != {np.shape(expected)}"
    err = relative_error(arr, expected)
    assert err <= rel, f"{what}: relative error {err:.3e} > {rel:.0e}"


def lower_for_cuda(fn, *args) -> str:
    """StableHLO of ``jax.jit(fn)`` lowered for a CUDA GPU (no GPU needed): every Pallas
    kernel in it goes through the Triton lowering."""
    exported = export.export(
        jax.jit(fn), platforms=["cuda"],
        disabled_checks=[export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")])(*args)
    return exported.mlir_module()


def values_and_grads(fn, args, cotangent):
    """(fn(*args), the VJP of fn at args applied to ``cotangent``)."""
    out, vjp = jax.vjp(fn, *args)
    return out, vjp(cotangent)


def run_compiled(fn, *args):
    """``jax.jit(fn)(*args)``, compiled without XLA's backend optimisations: the interpreted
    kernels compile about twice as fast and the tests only need the values."""
    compiled = jax.jit(fn).lower(*args).compile(
        compiler_options={"xla_backend_optimization_level": 0})
    return compiled(*args)


def kernel_and_reference(kernel, reference, args, cotangent):
    """((out, grads) of ``kernel``, (out, grads) of ``reference`` at the float32 upcast of
    the same inputs), from one compiled program."""
    import jax.numpy as jnp
    f32 = lambda x: x.astype(jnp.float32)  # noqa: E731

    def both(args, cotangent):
        return (values_and_grads(kernel, args, cotangent),
                values_and_grads(reference, tuple(map(f32, args)), f32(cotangent)))

    return run_compiled(both, tuple(args), cotangent)


def random_qkv(seed, B, T, S, H, K, Dh, dtype):
    """q [B, T, H, Dh], k, v [B, S, K, Dh] and an output cotangent, standard normal."""
    kq, kk, kv, kc = jax.random.split(jax.random.key(seed), 4)
    return (jax.random.normal(kq, (B, T, H, Dh)).astype(dtype),
            jax.random.normal(kk, (B, S, K, Dh)).astype(dtype),
            jax.random.normal(kv, (B, S, K, Dh)).astype(dtype),
            jax.random.normal(kc, (B, T, H, Dh)).astype(dtype))


def packed_segments(T: int, B: int, *, empty_tail: int = 0):
    """(q_segment_ids, kv_segment_ids) [B, T]: row b packs b + 2 sequences; the last
    ``empty_tail`` queries of row 0 get an id no key has (their rows must come out zero)."""
    import jax.numpy as jnp
    rows = []
    for b in range(B):
        n = b + 2
        bounds = np.linspace(0, T, n + 1).astype(int)
        rows.append(np.repeat(np.arange(1, n + 1), np.diff(bounds)))
    kv = np.stack(rows).astype(np.int32)
    q = kv.copy()
    if empty_tail:
        q[0, T - empty_tail:] = 99
    return jnp.asarray(q), jnp.asarray(kv)
