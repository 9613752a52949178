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
    return round_fp8(round_fp8(x, fmt) * round_fp8(y, fmt), fmt)


def relative_errors(x, y) -> dict[str, np.ndarray]:
    """|approx - xy| / |xy| of L-Mul with 2..5 mantissa bits and of the float8 products."""
    exact = jnp.asarray(x, jnp.float32) * jnp.asarray(y, jnp.float32)
    out = {f"lmul_m{m}": lmul(x, y, m) for m in (2, 3, 4, 5)}
    out.update({f"fp8_{f}": fp8_mul(x, y, f) for f in ("e4m3", "e5m2")})
    return {k: np.asarray(jnp.abs(v - exact) / jnp.abs(exact)) for k, v in out.items()}


# Elementwise multipliers a dot product (einsum) can use in place of exact products.
FP8_FORMATS = {"e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2"}


def check_products(products: str) -> str:
    """``products`` if it names a multiplier of :func:`products_einsum`: "exact", "lmul<m>"
    (L-Mul with m mantissa bits, 1 <= m <= 10), "fp8_e4m3" or "fp8_e5m2"; else ValueError."""
    if products == "exact" or products in (f"fp8_{f}" for f in FP8_FORMATS):
        return products
    if isinstance(products, str) and products.startswith("lmul") and products[4:].isdigit() \
            and 1 <= int(products[4:]) <= 10:
        return products
    raise ValueError(f"unknown products {products!r}; expected 'exact', 'lmul<m>' (1 <= m <= 10), "
                     f"{', '.join(repr('fp8_' + f) for f in FP8_FORMATS)}")


def power_of_two_part(x):
    """sign(x) 2^floor(log2 |x|) (0 for 0): the exponent part of a float, mantissa dropped."""
    frac, exp = jnp.frexp(jnp.asarray(x, jnp.float32))
    return jnp.where(frac == 0, 0.0, jnp.sign(frac) * jnp.ldexp(jnp.ones_like(frac), exp - 1))


def lmul_einsum(spec: str, a, b, m: int):
    """``jnp.einsum(spec, a, b)`` with every product a_i b_i replaced by L-Mul(a_i, b_i, m),
    summed in float32, without materialising the elementwise products.

    With x rounded to m bits, |x| = (1 + x_m) 2^(x_e) and p(x) = sign(x) 2^(x_e)
    (:func:`power_of_two_part`), L-Mul is bilinear in (x, p(x)) and (y, p(y)):

        L-Mul(x, y) = x p(y) + p(x) y + (2^(-l(m)) - 1) p(x) p(y)

    (each term is sign(x) sign(y) 2^(x_e + y_e) times 1 + x_m, 1 + y_m and 2^(-l) - 1), so a
    contraction of L-Mul products is three ordinary einsums: the attention scores q.k and the
    mixture probs.v cost three matmuls each instead of a [..., Dh] or [..., S] product tensor."""
    a = round_mantissa(a, m)
    b = round_mantissa(b, m)
    pa, pb = power_of_two_part(a), power_of_two_part(b)
    ein = lambda x, y: jnp.einsum(spec, x, y, preferred_element_type=jnp.float32)  # noqa: E731
    return ein(a, pb) + ein(pa, b) + (2.0 ** (-offset_exponent(m)) - 1.0) * ein(pa, pb)


def round_fp8(x, fmt: str):
    """x rounded to float8 ``e4m3`` (e4m3fn: no infinities, |x| > 448 -> NaN) or ``e5m2``,
    returned as float32."""
    if fmt not in FP8_FORMATS:
        raise ValueError(f"unknown float8 format {fmt!r}; expected one of {sorted(FP8_FORMATS)}")
    return jnp.asarray(x, jnp.float32).astype(jnp.dtype(FP8_FORMATS[fmt])).astype(jnp.float32)


def products_einsum(spec: str, a, b, products: str = "exact"):
    """``jnp.einsum(spec, a, b)`` in float32 with the multiplier ``products``
    (:func:`check_products`):

        exact      the float32 products
        lmul<m>    L-Mul with m mantissa bits (:func:`lmul_einsum`)
        fp8_<f>    both operands rounded to float8 <f>, exact products (a float8 x float8
                   product fits float32) accumulated in float32, as float8 matmul units do"""
    check_products(products)
    if products == "exact":
        return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)
    if products.startswith("lmul"):
        return lmul_einsum(spec, a, b, int(products[4:]))
    fmt = products[4:]
    return jnp.einsum(spec, round_fp8(a, fmt), round_fp8(b, fmt), preferred_element_type=jnp.float32)
