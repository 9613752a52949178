"""The small regression harness of the layer papers (FAN, KAN): scalar-to-scalar networks of
one layer type, sized to a parameter budget, fitted full-batch with Adam.

    mlp:  x -> act(x W_1 + b_1) -> ... -> act(. W_depth + b_depth) -> . W_out + b_out
    fan:  x -> phi_1(x) -> ... -> phi_depth(.) -> . W_out + b_out
          phi(h) = [cos(h W_p) || sin(h W_p) || GELU(h W_q + b_q)]      (:mod:`jaxlab.nn.fan`)
    kan:  x -> KAN_1(x) -> ... -> KAN_depth(.) -> KAN_out(.)            (:mod:`jaxlab.nn.kan`)

MLP and FAN use GELU for the non-periodic part, so the periodic features are the only
difference. A KAN is KAN layers throughout (its read-out is a KAN layer too, so depth 1 is the
paper's [1, width, 1] network); every layer uses the same ``grid`` (a static argument).

:func:`fit` returns the loss of every step; :func:`fit_logged` also returns the network's
predictions every ``log_every`` steps, and :func:`spectral_residual` reads, from such
predictions, how much of each frequency of the target is still missing.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.nn.fan import fan, init_fan
from jaxlab.nn.kan import KANGrid, init_kan, kan
from jaxlab.nn.linear import dense, init_dense

NetKind = Literal["mlp", "fan", "kan"]
KINDS = ("mlp", "fan", "kan")


def init_net(kind: NetKind, key: jax.Array, *, width: int, depth: int, d_in: int = 1, d_out: int = 1,
             grid: KANGrid = KANGrid()) -> dict:
    """Params of a ``depth``-layer network of ``width`` units (then the read-out); ``grid`` is
    the KAN layers' spline grid (unused by the other kinds)."""
    if kind not in KINDS:
        raise ValueError(f"unknown network kind {kind!r}; expected one of {KINDS}")
    if width < 4 or depth < 1:
        raise ValueError(f"need width >= 4 and depth >= 1, got width={width}, depth={depth}")
    keys = jax.random.split(key, depth + 1)
    layers, d = [], d_in
    for l in range(depth):
        if kind == "fan":
            layers.append(init_fan(keys[l], d, width))
        elif kind == "kan":
            layers.append(init_kan(keys[l], d, width, grid))
        else:
            layers.append(init_dense(keys[l], (d,), (width,), bias=True))
        d = width
    out = init_kan(keys[-1], d, d_out, grid) if kind == "kan" else init_dense(keys[-1], (d,), (d_out,), bias=True)
    return {"layers": layers, "out": out}


def net(kind: NetKind, params: dict, x_ND: jax.Array, grid: KANGrid = KANGrid()) -> jax.Array:
    """The network's output [N, d_out] for inputs [N, d_in]."""
    if kind == "kan":
        if params["out"]["coef"].shape[-1] != grid.n_bases:
            raise ValueError(f"the KAN params hold {params['out']['coef'].shape[-1]} spline bases per edge; "
                             f"grid {grid} has {grid.n_bases}")
        h = x_ND
        for layer in params["layers"]:
            h = kan(layer, h, grid)
        return kan(params["out"], h, grid)
    h = x_ND
    for layer in params["layers"]:
        h = fan(layer, h) if kind == "fan" else jax.nn.gelu(dense(layer, h, "...i,io->...o"))
    return dense(params["out"], h, "...i,io->...o")


def count_params(params: dict) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))


def width_for_budget(kind: NetKind, budget: int, depth: int, *, d_in: int = 1, d_out: int = 1,
                     grid: KANGrid = KANGrid()) -> int:
    """The width (a multiple of 4, so FAN's d_p = width / 4 is whole) whose parameter count is
    closest to ``budget`` (a bisection: the count grows with the width)."""
    def size(w):
        return count_params(jax.eval_shape(lambda: init_net(kind, jax.random.key(0), width=w, depth=depth,
                                                            d_in=d_in, d_out=d_out, grid=grid)))

    lo, hi = 1, 1024  # widths 4 lo .. 4 hi
    while lo < hi:
        mid = (lo + hi) // 2
        if size(4 * mid) < budget:
            lo = mid + 1
        else:
            hi = mid
    return min({4 * max(lo - 1, 1), 4 * lo}, key=lambda w: abs(size(w) - budget))


def _steps(kind: NetKind, grid: KANGrid, opt, carry, x_ND, y_ND, n: int):
    """``n`` full-batch steps of ``opt`` on the mean squared error: (carry, loss per step [n])."""
    def loss(p):
        return jnp.mean((net(kind, p, x_ND, grid) - y_ND) ** 2)

    def step(carry, _):
        p, s = carry
        value, grads = jax.value_and_grad(loss)(p)
        updates, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), value

    return jax.lax.scan(step, carry, None, length=n)


@functools.partial(jax.jit, static_argnames=("kind", "steps", "lr", "grid"))
def fit(kind: NetKind, params: dict, x_ND: jax.Array, y_ND: jax.Array, *, steps: int, lr: float,
        grid: KANGrid = KANGrid()) -> tuple[dict, jax.Array]:
    """Full-batch Adam on the mean squared error for ``steps`` steps (one compiled scan).
    Returns (params, loss per step [steps])."""
    opt = optax.adam(lr)
    (params, _), losses = _steps(kind, grid, opt, (params, opt.init(params)), x_ND, y_ND, steps)
    return params, losses


@functools.partial(jax.jit, static_argnames=("kind", "steps", "lr", "log_every", "grid"))
def fit_logged(kind: NetKind, params: dict, x_ND: jax.Array, y_ND: jax.Array, *, steps: int, lr: float,
               log_every: int, grid: KANGrid = KANGrid()) -> tuple[dict, jax.Array, jax.Array]:
    """:func:`fit`, also recording the predictions on ``x_ND`` before training and after every
    ``log_every`` steps. Returns (params, loss per step [steps], predictions [K + 1, N, d_out]),
    K = steps / log_every; prediction k is the network after k * log_every steps (the same
    optimisation as :func:`fit`, step for step)."""
    if log_every < 1 or steps % log_every:
        raise ValueError(f"log_every must divide steps, got steps={steps}, log_every={log_every}")
    opt = optax.adam(lr)

    def chunk(carry, _):
        carry, losses = _steps(kind, grid, opt, carry, x_ND, y_ND, log_every)
        return carry, (losses, net(kind, carry[0], x_ND, grid))

    (params_end, _), (losses_KS, preds_KND) = jax.lax.scan(chunk, (params, opt.init(params)), None,
                                                           length=steps // log_every)
    preds_KND = jnp.concatenate([net(kind, params, x_ND, grid)[None], preds_KND], axis=0)
    return params_end, losses_KS.reshape(-1), preds_KND


def spectral_residual(pred_KN, y_N, freqs: tuple[int, ...]) -> np.ndarray:
    """The relative residual of each target frequency, [K, F], for predictions [K, N] of a
    target [N] sampled at N evenly spaced points of one period of the grid:

        r_k(m) = |FFT(pred_k - y)[m]| / |FFT(y)[m]|      (m cycles over the N points)

    1 where the network has none of frequency m yet (or has it wrong in amplitude or phase by as
    much as the target holds), 0 where it has all of it. Raises ValueError for a frequency the
    N points cannot resolve (outside 1 .. N/2 - 1) or that the target does not hold."""
    pred_KN, y_N = np.asarray(pred_KN, np.float64), np.asarray(y_N, np.float64)
    if pred_KN.ndim != 2 or y_N.ndim != 1 or pred_KN.shape[1] != y_N.shape[0]:
        raise ValueError(f"need predictions [K, N] and a target [N], got {pred_KN.shape} and {y_N.shape}")
    N = y_N.shape[0]
    bad = [m for m in freqs if not 1 <= m < N // 2]
    if bad or not freqs:
        raise ValueError(f"freqs must be non-empty, in 1 .. {N // 2 - 1} for {N} points; got {freqs}")
    idx = np.asarray(freqs)
    target_F = np.abs(np.fft.rfft(y_N)[idx])
    if not np.all(target_F > 1e-6 * N):
        raise ValueError(f"the target holds (almost) none of some of the frequencies {freqs}: |FFT| {target_F}")
    return np.abs(np.fft.rfft(pred_KN - y_N, axis=-1)[:, idx]) / target_F
