"""The small regression harness of the layer papers (FAN, KAN): scalar-to-scalar networks of
one layer type, sized to a parameter budget, fitted full-batch with Adam.

    mlp:  x -> act(x W_1 + b_1) -> ... -> act(. W_depth + b_depth) -> . W_out + b_out
    fan:  x -> phi_1(x) -> ... -> phi_depth(.) -> . W_out + b_out
          phi(h) = [cos(h W_p) || sin(h W_p) || GELU(h W_q + b_q)]      (:mod:`jaxlab.nn.fan`)

Both use GELU for the non-periodic part, so the periodic features are the only difference.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from jaxlab.nn.fan import fan, init_fan
from jaxlab.nn.linear import dense, init_dense

NetKind = Literal["mlp", "fan"]


def init_net(kind: NetKind, key: jax.Array, *, width: int, depth: int, d_in: int = 1, d_out: int = 1) -> dict:
    """Params of a ``depth``-layer network of ``width`` units (then a linear read-out)."""
    if kind not in ("mlp", "fan"):
        raise ValueError(f"unknown network kind {kind!r}; expected 'mlp' or 'fan'")
    if width < 4 or depth < 1:
        raise ValueError(f"need width >= 4 and depth >= 1, got width={width}, depth={depth}")
    keys = jax.random.split(key, depth + 1)
    layers, d = [], d_in
    for l in range(depth):
        layers.append(init_fan(keys[l], d, width) if kind == "fan"
                      else init_dense(keys[l], (d,), (width,), bias=True))
        d = width
    return {"layers": layers, "out": init_dense(keys[-1], (d,), (d_out,), bias=True)}


def net(kind: NetKind, params: dict, x_ND: jax.Array) -> jax.Array:
    """The network's output [N, d_out] for inputs [N, d_in]."""
    h = x_ND
    for layer in params["layers"]:
        h = fan(layer, h) if kind == "fan" else jax.nn.gelu(dense(layer, h, "...i,io->...o"))
    return dense(params["out"], h, "...i,io->...o")


def count_params(params: dict) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))


def width_for_budget(kind: NetKind, budget: int, depth: int, *, d_in: int = 1, d_out: int = 1) -> int:
    """The width (a multiple of 4, so FAN's d_p = width / 4 is whole) whose parameter count is
    closest to ``budget`` (a bisection: the count grows with the width)."""
    def size(w):
        return count_params(jax.eval_shape(lambda: init_net(kind, jax.random.key(0), width=w, depth=depth,
                                                            d_in=d_in, d_out=d_out)))

    lo, hi = 1, 1024  # widths 4 lo .. 4 hi
    while lo < hi:
        mid = (lo + hi) // 2
        if size(4 * mid) < budget:
            lo = mid + 1
        else:
            hi = mid
    return min({4 * max(lo - 1, 1), 4 * lo}, key=lambda w: abs(size(w) - budget))


@functools.partial(jax.jit, static_argnames=("kind", "steps", "lr"))
def fit(kind: NetKind, params: dict, x_ND: jax.Array, y_ND: jax.Array, *, steps: int, lr: float) -> tuple[dict, jax.Array]:
    """Full-batch Adam on the mean squared error for ``steps`` steps (one compiled scan).
    Returns (params, loss per step [steps])."""
    opt = optax.adam(lr)

    def loss(p):
        return jnp.mean((net(kind, p, x_ND) - y_ND) ** 2)

    def step(carry, _):
        p, s = carry
        value, grads = jax.value_and_grad(loss)(p)
        updates, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), value

    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params, losses
