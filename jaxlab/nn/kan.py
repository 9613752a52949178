"""KAN, the Kolmogorov-Arnold Network layer (Liu et al. 2024): a learnable function on every
edge instead of a weight.

    y_j = sum_i phi_ij(x_i),   phi_ij(x) = w_b[i, j] silu(x) + w_s[i, j] sum_m c[i, j, m] B_m(x)

B_m are the G + k B-spline bases of order k on a uniform grid of G intervals over
[lo, hi], extended by k knots on each side (knots t_0 .. t_{G + 2k}, spacing h = (hi - lo) / G),
by the Cox-de Boor recursion:

    B_{m,0}(x) = 1 if t_m <= x < t_{m+1} else 0
    B_{m,p}(x) = (x - t_m) / (t_{m+p} - t_m) B_{m,p-1}(x) + (t_{m+p+1} - x) / (t_{m+p+1} - t_{m+1}) B_{m+1,p-1}(x)

Inside [lo, hi] the bases sum to 1. Grid extension (the paper's refinement) moves to a finer
grid G' and refits c' by least squares so that each edge's spline keeps its values:
B'(x) c' ~ B(x) c on points spread over [lo, hi].
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class KANGrid:
    intervals: int = 5     # G
    order: int = 3         # k
    lo: float = -1.0
    hi: float = 1.0

    def knots(self) -> jnp.ndarray:
        h = (self.hi - self.lo) / self.intervals
        return self.lo + h * jnp.arange(-self.order, self.intervals + self.order + 1, dtype=jnp.float32)

    @property
    def n_bases(self) -> int:
        return self.intervals + self.order


def bspline_bases(x: jax.Array, grid: KANGrid) -> jax.Array:
    """B_m(x) [..., G + k] for x [...] (module docstring)."""
    t = grid.knots()
    x = x[..., None].astype(jnp.float32)
    b = ((x >= t[:-1]) & (x < t[1:])).astype(jnp.float32)  # order 0: G + 2k bases
    for p in range(1, grid.order + 1):
        left = (x - t[: -(p + 1)]) / (t[p:-1] - t[: -(p + 1)]) * b[..., :-1]
        right = (t[p + 1:] - x) / (t[p + 1:] - t[1:-p]) * b[..., 1:]
        b = left + right
    return b


def init_kan(key: jax.Array, d_in: int, d_out: int, grid: KANGrid, *, noise: float = 0.1) -> dict:
    """Small random spline coefficients, w_b = 1 / sqrt(d_in), w_s = 1."""
    return {"coef": noise * jax.random.normal(key, (d_in, d_out, grid.n_bases)) / grid.n_bases,
            "w_base": jnp.full((d_in, d_out), 1.0 / np.sqrt(d_in), jnp.float32),
            "w_spline": jnp.ones((d_in, d_out), jnp.float32)}


def kan(params: dict, x: jax.Array, grid: KANGrid) -> jax.Array:
    """y [..., d_out] of x [..., d_in] (module docstring)."""
    bases = bspline_bases(x, grid)                                          # [..., I, M]
    spline = jnp.einsum("...im,iom->...io", bases, params["coef"])           # [..., I, O]
    edges = params["w_base"] * jax.nn.silu(x)[..., None] + params["w_spline"] * spline
    return edges.sum(axis=-2)


def extend_grid(params: dict, grid: KANGrid, new_intervals: int, *, samples: int = 256) -> tuple[dict, KANGrid]:
    """(params, grid) on a grid of ``new_intervals`` intervals, the spline coefficients refitted
    by least squares on ``samples`` points of [lo, hi] (module docstring)."""
    new = dataclasses.replace(grid, intervals=new_intervals)
    xs = jnp.linspace(grid.lo, grid.hi - 1e-6, samples)
    old_b, new_b = bspline_bases(xs, grid), bspline_bases(xs, new)          # [S, M], [S, M']
    values = jnp.einsum("sm,iom->sio", old_b, params["coef"])                # [S, I, O]
    coef, *_ = jnp.linalg.lstsq(new_b, values.reshape(samples, -1))
    I, O = params["coef"].shape[:2]
    return {**params, "coef": coef.T.reshape(I, O, new.n_bases)}, new
