"""L-Mul (Luo and Sun 2024, "Addition Is All You Need"): a float product approximated with
additions only. For x = (1 + x_m) 2^(x_e), y = (1 + y_m) 2^(y_e) with m-bit mantissas,

    L-Mul(x, y) = (1 + x_m + y_m + 2^(-l(m))) 2^(x_e + y_e),   l(m) = m (m <= 3), 3 (m = 4), 4 (m > 4)

with the product's sign; the exact product's mantissa (1 + x_m)(1 + y_m) = 1 + x_m + y_m +
x_m y_m has its x_m y_m term replaced by the constant 2^(-l(m)). Here it is emulated in float32
(inputs first rounded to m mantissa bits), next to the float8 formats it is compared with:
e4m3 (3 mantissa bits) and e5m2 (2), whose product is round8(round8(x) round8(y)).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def offset_exponent(m: int) -> int:
    """l(m) of the module docstring."""
    if m < 1:
        raise ValueError(f"mantissa bits must be >= 1, got {m}")
    return m if m <= 3 else (3 if m == 4 else 4)


def round_mantissa(x, m: int):
    """x rounded to m explicit mantissa bits (round to nearest), exponent range unchanged."""
    frac, exp = jnp.frexp(jnp.asarray(x, jnp.float32))  # x = frac 2^exp, |frac| in [0.5, 1)
    scale = 2.0 ** (m + 1)
    return jnp.ldexp(jnp.round(frac * scale) / scale, exp)


def lmul(x, y, m: int):
    """L-Mul(x, y) with m-bit mantissas (module docstring); zeros give zero."""
    x = round_mantissa(x, m)
    y = round_mantissa(y, m)
    fx, ex = jnp.frexp(jnp.abs(x))  # |x| = fx 2^ex, fx in [0.5, 1): 1 + x_m = 2 fx
    fy, ey = jnp.frexp(jnp.abs(y))
    mant = (2 * fx - 1) + (2 * fy - 1) + 2.0 ** (-offset_exponent(m))
    out = jnp.sign(x) * jnp.sign(y) * jnp.ldexp(1.0 + mant, ex + ey - 2)
    return jnp.where((x == 0) | (y == 0), 0.0, out)


def fp8_mul(x, y, fmt: str):
    """round8(round8(x) round8(y)) in float8 ``e4m3`` or ``e5m2``, returned as float32."""
    dtype = {"e4m3": jnp.float8_e4m3fn, "e5m2": jnp.float8_e5m2}[fmt]
    r = lambda v: jnp.asarray(v, jnp.float32).astype(dtype).astype(jnp.float32)  # noqa: E731
    return r(r(x) * r(y))


def relative_errors(x, y) -> dict[str, np.ndarray]:
    """|approx - xy| / |xy| of L-Mul with 2..5 mantissa bits and of the float8 products."""
    exact = jnp.asarray(x, jnp.float32) * jnp.asarray(y, jnp.float32)
    out = {f"lmul_m{m}": lmul(x, y, m) for m in (2, 3, 4, 5)}
    out.update({f"fp8_{f}": fp8_mul(x, y, f) for f in ("e4m3", "e5m2")})
    return {k: np.asarray(jnp.abs(v - exact) / jnp.abs(exact)) for k, v in out.items()}
