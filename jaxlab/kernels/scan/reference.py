"""Plain-jnp linear recurrences: the ground truth the scan kernels are tested against.

Diagonal linear recurrence (the core of Mamba-style selective SSMs, RG-LRU and diagonal linear
attention), per batch row and channel:

    h_t = a_t * h_{t-1} + b_t,     h_{-1} = h0 (default 0)

``linear_scan_sequential`` runs it step by step with ``lax.scan``; ``linear_scan_associative``
in O(log T) parallel steps with ``lax.associative_scan``, composing the affine maps
h -> a h + b:  (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2).

Mamba-1 selective scan (``selective_scan_reference``), per channel d and state index n:

    h_t[d, n] = exp(delta_t[d] A[d, n]) h_{t-1}[d, n] + delta_t[d] B_t[n] x_t[d]
    y_t[d]    = sum_n C_t[n] h_t[d, n] + D[d] x_t[d]

with the N-dimensional state per channel starting at zero (or h0). ``reset_BT`` restarts the
recurrence where it is true: there h_{t-1} is taken as 0 (packed sequences in one row, left
padding before a prompt). All state math is float32; the outputs come back in the input dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _out_dtype(*xs):
    return jnp.result_type(*xs)


def linear_scan_sequential(a_BTD: jax.Array, b_BTD: jax.Array,
                           h0_BD: jax.Array | None = None) -> jax.Array:
    """h [B, T, D] of h_t = a_t h_{t-1} + b_t, one step at a time (``lax.scan``)."""
    B, T, D = b_BTD.shape
    h0 = jnp.zeros((B, D), jnp.float32) if h0_BD is None else h0_BD.astype(jnp.float32)

    def step(h_BD, ab):
        a_BD, b_BD = ab
        h_BD = a_BD.astype(jnp.float32) * h_BD + b_BD.astype(jnp.float32)
        return h_BD, h_BD

    _, h_TBD = jax.lax.scan(step, h0, (jnp.swapaxes(a_BTD, 0, 1), jnp.swapaxes(b_BTD, 0, 1)))
    return jnp.swapaxes(h_TBD, 0, 1).astype(_out_dtype(a_BTD, b_BTD))


def linear_scan_associative(a_BTD: jax.Array, b_BTD: jax.Array,
                            h0_BD: jax.Array | None = None) -> jax.Array:
    """h [B, T, D] of h_t = a_t h_{t-1} + b_t in O(log T) depth (``lax.associative_scan``)."""
    a = a_BTD.astype(jnp.float32)
    b = b_BTD.astype(jnp.float32)
    if h0_BD is not None:  # fold the initial state into the first input: h_0 = a_0 h0 + b_0
        b = b.at[:, 0].add(a[:, 0] * h0_BD.astype(jnp.float32))

    def compose(first, second):
        a1, b1 = first
        a2, b2 = second
        return a1 * a2, a2 * b1 + b2

    _, h = jax.lax.associative_scan(compose, (a, b), axis=1)
    return h.astype(_out_dtype(a_BTD, b_BTD))


def selective_scan_reference(x_BTD: jax.Array, delta_BTD: jax.Array, A_DN: jax.Array,
                             B_BTN: jax.Array, C_BTN: jax.Array,
                             D_D: jax.Array | None = None, *, z_BTD: jax.Array | None = None,
                             delta_bias_D: jax.Array | None = None, delta_softplus: bool = False,
                             h0_BDN: jax.Array | None = None, return_state: bool = False,
                             reset_BT: jax.Array | None = None):
    """y [B, T, D] of the Mamba-1 selective scan (module docstring), with ``lax.scan`` over
    time and a [B, D, N] float32 state. Options, as Mamba's block uses them:

        delta = softplus(delta + delta_bias)  with ``delta_softplus`` (the bias added either way)
        y     = y * silu(z)                   with ``z_BTD`` (the gate)
        h_{-1} = h0_BDN (default 0);  ``return_state`` also returns h_{T-1} [B, D, N]
        h_{t-1} = 0 where ``reset_BT`` [B, T] is true (the decay exp(delta_t A) times 1 - reset_t)
    """
    Bsz, T, D = x_BTD.shape
    N = A_DN.shape[1]
    A = A_DN.astype(jnp.float32)
    delta = delta_BTD.astype(jnp.float32)
    if delta_bias_D is not None:
        delta = delta + delta_bias_D.astype(jnp.float32)
    if delta_softplus:
        delta = jax.nn.softplus(delta)

    keep_BT = (jnp.ones(x_BTD.shape[:2], jnp.float32) if reset_BT is None
               else 1.0 - reset_BT.astype(jnp.float32))

    def step(h_BDN, inputs):
        x_BD, dt_BD, b_BN, c_BN, keep_B = (u.astype(jnp.float32) for u in inputs)
        h_BDN = (jnp.exp(dt_BD[:, :, None] * A[None]) * keep_B[:, None, None] * h_BDN
                 + (dt_BD * x_BD)[:, :, None] * b_BN[:, None, :])
        return h_BDN, jnp.einsum("bdn,bn->bd", h_BDN, c_BN)

    h0 = jnp.zeros((Bsz, D, N), jnp.float32) if h0_BDN is None else h0_BDN.astype(jnp.float32)
    xs = tuple(jnp.swapaxes(u, 0, 1) for u in (x_BTD, delta, B_BTN, C_BTN, keep_BT))
    h_last, y_TBD = jax.lax.scan(step, h0, xs)
    y_BTD = jnp.swapaxes(y_TBD, 0, 1)
    if D_D is not None:
        y_BTD = y_BTD + D_D.astype(jnp.float32) * x_BTD.astype(jnp.float32)
    if z_BTD is not None:
        y_BTD = y_BTD * jax.nn.silu(z_BTD.astype(jnp.float32))
    y_BTD = y_BTD.astype(x_BTD.dtype)
    return (y_BTD, h_last) if return_state else y_BTD
