"""Block-quantized kernels that :func:`jaxlab.nn.linear.dense` dequantizes where it uses them.

A kernel [in..., out...] is read as the matrix W^T [m, n] (m = out, n = in, the layout of a
torch Linear weight and of a GGUF tensor), cut into blocks of ``block`` consecutive inputs of
one output row, and each block stored as codes plus per-block constants:

    nf4    (block 64)  w = absmax * NF4[q],        q in 0..15; NF4 the 16 NormalFloat levels
                                                    (Dettmers et al. 2023, QLoRA), two per byte
    int8   (block 64)  w = absmax / 127 * q,        q in -127..127
    q8_0   (block 32)  w = d * q,                   q in -128..127, d float16 (GGUF Q8_0)
    q4_1   (block 32)  w = d * q + m,               q in 0..15, d and m float16 (GGUF Q4_1),
                                                    two per byte: inputs 0..15 of a block in the
                                                    low nibbles of its 16 bytes, 16..31 in the high

Stacked layers keep their leading axes on every array, so ``lax.scan`` over layers hands each
layer its own :class:`QuantizedKernel` and only that layer's weights are ever dequantized.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

# The NF4 levels: quantiles of N(0, 1) scaled to [-1, 1], with an exact zero.
NF4_LEVELS = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                       -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                       0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                       0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                       0.7229568362236023, 1.0], np.float32)
FORMATS = {"nf4": 64, "int8": 64, "q8_0": 32, "q4_1": 32}  # format -> block size
FOUR_BIT = ("nf4", "q4_1")


class QuantError(ValueError):
    """A kernel shape or format that cannot be quantized, with what is allowed."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QuantizedKernel:
    """codes [..., m, blocks, bytes] uint8; scale (and offset, q4_1 only) [..., m, blocks];
    ``fmt`` and ``kernel_shape`` (the kernel's shape without leading layer axes) are static.
    ``shape`` is the dequantized kernel's shape, leading layer axes included."""

    codes: jax.Array
    scale: jax.Array
    offset: jax.Array | None
    fmt: str = dataclasses.field(metadata=dict(static=True))
    kernel_shape: tuple[int, ...] = dataclasses.field(metadata=dict(static=True))
    n_in: int = dataclasses.field(metadata=dict(static=True))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape[:-3]) + tuple(self.kernel_shape)

    def dequantize(self, dtype=jnp.float32) -> jax.Array:
        """The kernel [..., *shape] in ``dtype`` (module docstring for each format)."""
        codes = self.codes
        if self.fmt in FOUR_BIT:
            low, high = codes & 0x0F, codes >> 4
            q = jnp.concatenate([low, high], axis=-1)  # [..., m, blocks, block]
        else:
            q = codes
        scale = self.scale.astype(jnp.float32)[..., None]
        if self.fmt == "nf4":
            w = jnp.asarray(NF4_LEVELS)[q.astype(jnp.int32)] * scale
        elif self.fmt == "int8":
            w = jax.lax.bitcast_convert_type(q, jnp.int8).astype(jnp.float32) * (scale / 127.0)
        elif self.fmt == "q8_0":
            w = jax.lax.bitcast_convert_type(q, jnp.int8).astype(jnp.float32) * scale
        else:
            w = q.astype(jnp.float32) * scale + self.offset.astype(jnp.float32)[..., None]
        lead = self.codes.shape[:-3]
        m = self.codes.shape[-3]
        w_MN = w.reshape(*lead, m, -1)
        w_NM = jnp.swapaxes(w_MN, -1, -2)
        return w_NM.reshape(*lead, *self.kernel_shape).astype(dtype)


def _matrix(kernel: np.ndarray, n_in: int, lead: int) -> np.ndarray:
    """W^T [..., m, n] of a kernel [..., in..., out...] with ``n_in`` input axes."""
    shape = kernel.shape
    n = math.prod(shape[lead: lead + n_in])
    w_NM = kernel.reshape(*shape[:lead], n, -1)
    return np.swapaxes(w_NM, -1, -2)


def quantize(kernel, fmt: str, *, n_in: int = 1, lead: int = 0) -> QuantizedKernel:
    """Block-quantizes a float kernel (``lead`` leading layer axes, then ``n_in`` input axes).

    Codes are rounded to the nearest level: NF4 to the nearest of NF4_LEVELS after dividing by
    the block's absmax; int8 round(127 w / absmax); q8_0 round(w / d) with d = absmax / 127
    in float16; q4_1 round((w - m) / d) with m = the block's min, d = (max - min) / 15."""
    if fmt not in FORMATS:
        raise QuantError(f"format {fmt!r} is not one of {tuple(FORMATS)}")
    w = np.asarray(kernel, np.float32)
    block = FORMATS[fmt]
    w_MN = _matrix(w, n_in, lead)
    n = w_MN.shape[-1]
    if n % block:
        raise QuantError(f"a {fmt} kernel needs an input size divisible by {block}, got shape "
                         f"{w.shape} (input size {n})")
    b = w_MN.reshape(*w_MN.shape[:-1], n // block, block)
    offset = None
    if fmt in ("nf4", "int8"):
        absmax = np.abs(b).max(-1, keepdims=True)
        safe = np.where(absmax > 0, absmax, 1.0)
        if fmt == "nf4":
            q = np.abs((b / safe)[..., None] - NF4_LEVELS).argmin(-1).astype(np.uint8)
        else:
            q = np.round(127.0 * b / safe).astype(np.int8).view(np.uint8)
        scale = absmax[..., 0].astype(np.float32)
    elif fmt == "q8_0":
        d = (np.abs(b).max(-1, keepdims=True) / 127.0).astype(np.float16)
        safe = np.where(d > 0, d.astype(np.float32), 1.0)
        q = np.clip(np.round(b / safe), -128, 127).astype(np.int8).view(np.uint8)
        scale = d[..., 0]
    else:
        lo, hi = b.min(-1, keepdims=True), b.max(-1, keepdims=True)
        d = ((hi - lo) / 15.0).astype(np.float16)
        m = lo.astype(np.float16)
        safe = np.where(d > 0, d.astype(np.float32), 1.0)
        q = np.clip(np.round((b - m.astype(np.float32)) / safe), 0, 15).astype(np.uint8)
        scale, offset = d[..., 0], m[..., 0]
    if fmt in FOUR_BIT:
        half = block // 2
        q = (q[..., :half] | (q[..., half:] << 4)).astype(np.uint8)
    return QuantizedKernel(jnp.asarray(q), jnp.asarray(scale), None if offset is None else jnp.asarray(offset),
                           fmt, tuple(w.shape[lead:]), n_in)


def from_gguf_blocks(raw: np.ndarray, type_name: str, kernel_shape: tuple[int, ...], *, n_in: int = 1,
                     row_order: np.ndarray | None = None) -> QuantizedKernel:
    """A GGUF Q8_0 or Q4_1 tensor's raw bytes [m, bytes per row] as a kernel of ``kernel_shape``,
    without dequantizing; ``row_order`` permutes the output rows (llama.cpp's rotary order of
    q and k rows undone)."""
    fmt = type_name.lower()
    if fmt not in ("q8_0", "q4_1"):
        raise QuantError(f"GGUF {type_name} blocks are not kept quantized; q8_0 and q4_1 are")
    raw = np.asarray(raw, np.uint8)
    m = raw.shape[0]
    per_block = 34 if fmt == "q8_0" else 20
    blocks = raw.reshape(m, -1, per_block)
    if row_order is not None:
        blocks = blocks[np.asarray(row_order)]
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0]
    if fmt == "q8_0":
        codes, offset = blocks[..., 2:], None
    else:
        offset = jnp.asarray(blocks[..., 2:4].copy().view(np.float16)[..., 0])
        codes = blocks[..., 4:]
    return QuantizedKernel(jnp.asarray(np.ascontiguousarray(codes)), jnp.asarray(d), offset, fmt,
                           tuple(kernel_shape), n_in)


def nbytes(tree) -> int:
    """Bytes held by the arrays of a params tree (quantized kernels count their codes and
    constants)."""
    return int(sum(x.nbytes for x in jax.tree.leaves(tree)))
