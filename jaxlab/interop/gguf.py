"""GGUF files (llama.cpp) of Llama-architecture models in and out of jaxlab.

A GGUF file holds metadata (key -> value) and tensors. :func:`load` reads one whose
``general.architecture`` is ``llama`` into a :class:`jaxlab.models.transformer.Config`, its
params pytree and its tokenizer (rebuilt from the ``tokenizer.*`` metadata);
:func:`save` writes one that llama.cpp-compatible readers load. The container (header,
metadata, tensor infos; GGUF versions 2 and 3, little-endian) is parsed here from a memory map
(:func:`read_metadata`; the gguf package's reader takes seconds on a 49k-token vocabulary) and
written with the ``gguf`` package's ``GGUFWriter``; dequantizing and quantizing the blocks is
done here, in numpy.

Tensors. GGUF writes a tensor's dims fastest first ([ne0, ne1] = [in, out]); as a numpy array
that is [out, in], the layout of a torch ``nn.Linear`` weight, so every weight maps to a jaxlab
param as in :mod:`jaxlab.interop.hf` (kernel = W^T reshaped):

    GGUF tensor                 jaxlab param               GGUF tensor          jaxlab param
    token_embd.weight  [V, D]   embed/embedding            blk.{l}.attn_q       layers/attn/q/kernel
    output.weight      [V, D]   unembed/kernel (untied)    blk.{l}.attn_k       layers/attn/k/kernel
    output_norm.weight [D]      final_norm/scale           blk.{l}.attn_v       layers/attn/v/kernel
    blk.{l}.attn_norm  [D]      layers/attn_norm/scale     blk.{l}.attn_output  layers/attn/o/kernel
    blk.{l}.ffn_norm   [D]      layers/mlp_norm/scale      blk.{l}.ffn_{gate,up,down}  layers/mlp/...

No ``output.weight`` means tied embeddings. llama.cpp rotates adjacent pairs (x_{2i}, x_{2i+1})
of each head where jaxlab and Hugging Face rotate the halves (x_i, x_{i+Dh/2}), so llama.cpp's
converter permutes the rows of q and k per head:

    gguf_row(h, 2i + j) = hf_row(h, j Dh/2 + i),    i < Dh/2, j in {0, 1}

(:func:`permute_rotary_rows`); :func:`unpermute_rotary_rows` undoes it on load.

Block formats (GGML; d, m, dmin are float16, QK = elements per block):

    Q8_0  QK=32,  34 B: d, q[32] int8                           x = d q
    Q4_0  QK=32,  18 B: d, 16 B of nibbles                      x = d (q - 8)
    Q4_1  QK=32,  20 B: d, m, 16 B of nibbles                   x = d q + m
          (byte j holds element j in its low and element j+16 in its high nibble)
    Q4_K  QK=256, 144 B: d, dmin, 12 B of 6-bit (scale, min) x 8 sub-blocks, 128 B of nibbles
                                                                x = d sc_s q - dmin mn_s
          (byte j of 32-byte chunk c holds sub-block 2c in its low, 2c+1 in its high nibble)
    Q6_K  QK=256, 210 B: ql[128] (low 4 bits), qh[64] (high 2 bits), sc[16] int8, d
                                                                x = d sc_{p//16} (q - 32)

F32, F16 and BF16 are stored plainly. :func:`quantize_q8_0` writes Q8_0 as llama.cpp does
(d = max|x| / 127, q = round-half-away(x / d)); per block its error is at most
``d/2 + 127 |d - f16(d)|`` <= 0.563 max|x| / 127 (float16 keeps d to a relative 2^-11).

Metadata. Every key of the file is either mapped to the config or tokenizer, allowlisted as
harmless (``general.*`` descriptions, the context length, ``quantize.imatrix.*``), or refused
with an error naming it (an unknown architecture, rope scaling other than linear, experts,
any key jaxlab does not know).

Tokenizer. ``tokenizer.ggml.model == "gpt2"`` (byte-level BPE) is rebuilt as a
``tokenizers.Tokenizer``: the file's tokens (already in the byte-level alphabet) and merges, a
pre-tokenizer from ``tokenizer.ggml.pre`` (llama.cpp's split regexes, :data:`PRE_TOKENIZERS`;
``smollm`` splits every digit off, then applies GPT-2's regex), control tokens (type 3) as
special tokens and user-defined ones (type 4) as added tokens, and the byte-level decoder.
The unknown token (``unknown_token_id``) is the BPE model's unk token (byte-level BPE never
needs it). It is returned as :class:`jaxlab.interop.tokenizer.HFTokenizer` with the BOS, EOS
(then EOT and EOM, as stops), pad ids, ``add_bos_token`` and ``tokenizer.chat_template``.

transformers' GGUF loader has no split for ``smollm`` and falls back to GPT-2's byte-level
regex, which keeps digit runs together; jaxlab follows llama.cpp (and SmolLM2's own
tokenizer.json: ``Digits(individual_digits)`` then ByteLevel). SmolLM2's merges join no digit
to anything, so both give the same ids on it (checked in the tests).
"""

from __future__ import annotations

import dataclasses
import json
import math
import mmap
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxlab.interop import hf
from jaxlab.interop.tokenizer import HFTokenizer
from jaxlab.models import transformer
from jaxlab.nn.rope import RopeScaling

__all__ = [
    "ARCHITECTURE", "DEQUANTIZERS", "GGUFError", "PRE_TOKENIZERS", "SAVE_DTYPES", "config_from_gguf",
    "dequantize", "gguf_tensor_names", "load", "permute_rotary_rows", "quantize_q8_0",
    "read_metadata", "save", "TensorInfo", "tokenizer_from_gguf", "tokenizer_metadata",
    "unpermute_rotary_rows",
]

ARCHITECTURE = "llama"
SAVE_DTYPES = ("f16", "q8_0")


class GGUFError(ValueError):
    """A GGUF file, metadata key or tensor jaxlab cannot read or write (named in the message)."""


def _import_gguf():
    try:
        import gguf
    except ImportError:
        raise ImportError("reading and writing GGUF files needs the 'gguf' package: "
                          "pip install 'gguf>=0.17'") from None
    return gguf


# ----------------------------------------------------------------------------- block formats

def _f16(blocks_NB: np.ndarray, start: int) -> np.ndarray:
    """The float16 at byte ``start`` of every block, as float32 [N, 1]."""
    return blocks_NB[:, start:start + 2].copy().view(np.float16).astype(np.float32)


def _nibbles(qs_NB: np.ndarray) -> np.ndarray:
    """Low nibbles of every byte, then high nibbles: uint8 [N, 2B]."""
    return np.concatenate([qs_NB & 0x0F, qs_NB >> 4], axis=1)


def _dequant_f32(b_NB):
    return b_NB.copy().view(np.float32)


def _dequant_f16(b_NB):
    return b_NB.copy().view(np.float16).astype(np.float32)


def _dequant_bf16(b_NB):
    """bfloat16 is the top half of a float32: x = bits << 16."""
    return (b_NB.copy().view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _dequant_q8_0(b_NB):
    return _f16(b_NB, 0) * b_NB[:, 2:].copy().view(np.int8).astype(np.float32)


def _dequant_q4_0(b_NB):
    return _f16(b_NB, 0) * (_nibbles(b_NB[:, 2:]).astype(np.float32) - 8.0)


def _dequant_q4_1(b_NB):
    return _f16(b_NB, 0) * _nibbles(b_NB[:, 4:]).astype(np.float32) + _f16(b_NB, 2)


def _q4_k_scales(sc_N12: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 6-bit (scale, min) of the 8 sub-blocks, each uint8 [N, 8]:

        s < 4:  scale = b[s] & 63,                        min = b[s+4] & 63
        s >= 4: scale = (b[s+4] & 15) | (b[s-4] >> 6) << 4,  min = (b[s+4] >> 4) | (b[s] >> 6) << 4
    """
    lo, mid, hi = sc_N12[:, 0:4], sc_N12[:, 4:8], sc_N12[:, 8:12]
    scale = np.concatenate([lo & 63, (hi & 0x0F) | ((lo >> 6) << 4)], axis=1)
    mins = np.concatenate([mid & 63, (hi >> 4) | ((mid >> 6) << 4)], axis=1)
    return scale, mins


def _dequant_q4_k(b_NB):
    n = b_NB.shape[0]
    d, dmin = _f16(b_NB, 0), _f16(b_NB, 2)
    scale_N8, min_N8 = _q4_k_scales(b_NB[:, 4:16])
    qs_NCL = b_NB[:, 16:144].reshape(n, 4, 32)
    q_NSL = np.stack([qs_NCL & 0x0F, qs_NCL >> 4], axis=2).reshape(n, 8, 32).astype(np.float32)
    d_NS1 = (d * scale_N8.astype(np.float32))[:, :, None]
    m_NS1 = (dmin * min_N8.astype(np.float32))[:, :, None]
    return (d_NS1 * q_NSL - m_NS1).reshape(n, 256)


def _dequant_q6_k(b_NB):
    n = b_NB.shape[0]
    ql_NHCL = b_NB[:, 0:128].reshape(n, 2, 2, 32)  # half, first/second 32 bytes, l
    qh_NHL = b_NB[:, 128:192].reshape(n, 2, 32)
    scale_N16 = b_NB[:, 192:208].copy().view(np.int8).astype(np.float32)
    d = _f16(b_NB, 208)
    q_NHQL = np.stack([
        (ql_NHCL[:, :, 0] & 0x0F) | ((qh_NHL & 3) << 4),
        (ql_NHCL[:, :, 1] & 0x0F) | (((qh_NHL >> 2) & 3) << 4),
        (ql_NHCL[:, :, 0] >> 4) | (((qh_NHL >> 4) & 3) << 4),
        (ql_NHCL[:, :, 1] >> 4) | (((qh_NHL >> 6) & 3) << 4),
    ], axis=2)
    q_NP = q_NHQL.reshape(n, 256).astype(np.float32) - 32.0
    scale_NP = np.repeat(d * scale_N16, 16, axis=1)  # element p uses scale p // 16
    return scale_NP * q_NP


# GGML type name -> (elements per block, bytes per block, dequantizer uint8 [N, B] -> f32 [N, QK])
DEQUANTIZERS: dict[str, tuple[int, int, Callable[[np.ndarray], np.ndarray]]] = {
    "F32": (1, 4, _dequant_f32),
    "F16": (1, 2, _dequant_f16),
    "BF16": (1, 2, _dequant_bf16),
    "Q8_0": (32, 34, _dequant_q8_0),
    "Q4_0": (32, 18, _dequant_q4_0),
    "Q4_1": (32, 20, _dequant_q4_1),
    "Q4_K": (256, 144, _dequant_q4_k),
    "Q6_K": (256, 210, _dequant_q6_k),
}


def dequantize(data: np.ndarray, type_name: str, shape: tuple[int, ...], *, name: str = "tensor") -> np.ndarray:
    """float32 array of numpy ``shape`` from the raw bytes of a tensor of GGML type ``type_name``.

    The last dim (GGUF's ne0, a row) must be a multiple of the block size."""
    if type_name not in DEQUANTIZERS:
        raise GGUFError(f"tensor {name} is stored as {type_name}; jaxlab dequantizes "
                        f"{', '.join(DEQUANTIZERS)}")
    qk, block_bytes, fn = DEQUANTIZERS[type_name]
    n_elements = int(np.prod(shape))
    if shape and shape[-1] % qk:
        raise GGUFError(f"tensor {name} has rows of {shape[-1]} elements, not a multiple of the "
                        f"{type_name} block of {qk}")
    raw = np.asarray(data).reshape(-1).view(np.uint8)
    n_blocks = n_elements // qk
    if raw.size != n_blocks * block_bytes:
        raise GGUFError(f"tensor {name} ({type_name}, shape {tuple(shape)}) holds {raw.size} bytes, "
                        f"expected {n_blocks * block_bytes} (truncated or corrupt file?)")
    return fn(raw.reshape(n_blocks, block_bytes)).reshape(shape)


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """C's roundf: halves round away from zero (numpy's rint rounds them to even)."""
    return np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """Q8_0 bytes of a float array whose last dim is a multiple of 32: uint8 [..., n/32 * 34].

    Per block of 32: d = max|x| / 127 (float32), q = roundf(x / d) (0 when d = 0), stored as
    float16 d then int8 q, as llama.cpp's reference quantizer does."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0 or x.shape[-1] % 32:
        raise GGUFError(f"Q8_0 needs rows that are a multiple of 32 elements, got shape {x.shape}")
    blocks_N32 = x.reshape(-1, 32)
    d_N1 = np.abs(blocks_N32).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv_N1 = np.where(d_N1 == 0, np.float32(0), np.float32(1) / d_N1).astype(np.float32)
    q_N32 = _round_half_away(blocks_N32 * inv_N1).astype(np.int8)
    out = np.concatenate([d_N1.astype(np.float16).view(np.uint8), q_N32.view(np.uint8)], axis=1)
    return out.reshape(*x.shape[:-1], x.shape[-1] // 32 * 34)


# ----------------------------------------------------------------------------- q/k rows

def permute_rotary_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Rows of a q or k weight [n_heads * Dh, ...] from rotate-half to llama.cpp's pair order:
    row (h, 2i + j) <- row (h, j Dh/2 + i)."""
    rest = w.shape[1:]
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *rest).swapaxes(1, 2).reshape(w.shape)


def unpermute_rotary_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of :func:`permute_rotary_rows`: row (h, j Dh/2 + i) <- row (h, 2i + j)."""
    rest = w.shape[1:]
    return w.reshape(n_heads, w.shape[0] // n_heads // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)


# ----------------------------------------------------------------------------- container

_MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}  # GGUF value type -> struct format (8 = string, 9 = array)
_NUMPY = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32,
          6: np.float32, 7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}
DEFAULT_ALIGNMENT = 32


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor of a GGUF file: ``shape`` in numpy order (GGUF's dims reversed), its GGML
    type name and its raw bytes (a read-only view of the memory-mapped file)."""

    name: str
    shape: tuple[int, ...]
    type_name: str
    data: np.ndarray


class _Cursor:
    """Reads little-endian GGUF values from a buffer; running past its end is a GGUFError."""

    def __init__(self, buf, path: Path):
        self.buf, self.pos, self.path = buf, 0, path

    def need(self, n: int, what: str) -> None:
        if self.pos + n > len(self.buf):
            raise GGUFError(f"{self.path} ends inside {what} (offset {self.pos}): the file is "
                            "truncated or corrupt")

    def scalar(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        self.need(size, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self, what: str) -> str:
        n = self.scalar("<Q", what)
        self.need(n, what)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"{self.path}: {what} is not valid UTF-8") from None

    def value(self, kind: int, what: str) -> Any:
        if kind == 6:  # float32, as its shortest decimal (1e-05, not 9.999999747378752e-06)
            return float(str(np.float32(self.scalar("<f", what))))
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind], what)
        if kind == 8:
            return self.string(what)
        if kind == 9:
            item, count = self.scalar("<I", what), self.scalar("<Q", what)
            if item in _NUMPY:
                size = np.dtype(_NUMPY[item]).itemsize * count
                self.need(size, what)
                values = np.frombuffer(self.buf, _NUMPY[item], count, self.pos).tolist()
                self.pos += size
                return values
            return [self.value(item, what) for _ in range(count)]
        raise GGUFError(f"{self.path}: {what} has unknown value type {kind} (corrupt file?)")


def _read(path: Path) -> tuple[dict[str, Any], dict[str, TensorInfo]]:
    """(metadata, {name: TensorInfo}) of a GGUF file (version 2 or 3, little-endian)."""
    gguf = _import_gguf()
    if not path.is_file():
        raise GGUFError(f"no GGUF file at {path}")
    with open(path, "rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            raise GGUFError(f"{path} is empty, not a GGUF file") from None
    cur = _Cursor(buf, path)
    cur.need(4, "the header")
    if bytes(buf[:4]) != _MAGIC:
        raise GGUFError(f"{path} is not a GGUF file (it does not start with {_MAGIC!r})")
    cur.pos = 4
    version = cur.scalar("<I", "the header")
    if version not in (2, 3):
        raise GGUFError(f"{path} is GGUF version {version} (or big-endian); jaxlab reads versions 2 "
                        "and 3, little-endian")
    n_tensors, n_keys = cur.scalar("<Q", "the header"), cur.scalar("<Q", "the header")
    metadata = {}
    for i in range(n_keys):
        key = cur.string(f"metadata key {i}")
        metadata[key] = cur.value(cur.scalar("<I", f"metadata {key}"), f"metadata {key}")
    infos = []
    for i in range(n_tensors):
        name = cur.string(f"tensor info {i}")
        n_dims = cur.scalar("<I", f"tensor info {name}")
        dims = [cur.scalar("<Q", f"tensor info {name}") for _ in range(n_dims)]
        kind, offset = cur.scalar("<I", f"tensor info {name}"), cur.scalar("<Q", f"tensor info {name}")
        try:
            type_name = gguf.GGMLQuantizationType(kind).name
        except ValueError:
            raise GGUFError(f"tensor {name} has unknown GGML type {kind} (corrupt file?)") from None
        infos.append((name, tuple(reversed(dims)), type_name, offset))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment < 1 or alignment & (alignment - 1):
        raise GGUFError(f"metadata general.alignment={alignment!r} is not a power of two")
    data_start = -(-cur.pos // alignment) * alignment
    tensors = {}
    for name, shape, type_name, offset in infos:
        if name in tensors:
            raise GGUFError(f"{path} holds tensor {name} twice")
        nbytes = _tensor_bytes(name, shape, type_name)
        start = data_start + offset
        if start + nbytes > len(buf):
            raise GGUFError(f"tensor {name} runs past the end of {path} ({len(buf)} bytes): the file "
                            "is truncated or corrupt")
        tensors[name] = TensorInfo(name, shape, type_name, np.frombuffer(buf, np.uint8, nbytes, start))
    return metadata, tensors


def _tensor_bytes(name: str, shape: tuple[int, ...], type_name: str) -> int:
    if type_name not in DEQUANTIZERS:
        raise GGUFError(f"tensor {name} is stored as {type_name}; jaxlab dequantizes "
                        f"{', '.join(DEQUANTIZERS)}")
    qk, block_bytes, _ = DEQUANTIZERS[type_name]
    if shape and shape[-1] % qk:
        raise GGUFError(f"tensor {name} has rows of {shape[-1]} elements, not a multiple of the "
                        f"{type_name} block of {qk}")
    return math.prod(shape) // qk * block_bytes


def read_metadata(path: str | Path) -> dict[str, Any]:
    """{key: value} of a GGUF file's metadata."""
    return _read(Path(path))[0]


# ----------------------------------------------------------------------------- metadata

_ARCH_KEYS = {  # llama.<key> read into the config
    "block_count", "embedding_length", "feed_forward_length", "attention.head_count",
    "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "rope.freq_base",
    "rope.dimension_count", "attention.key_length", "attention.value_length", "vocab_size",
    "rope.scaling.type", "rope.scaling.factor", "rope.scale_linear", "expert_count",
    "expert_used_count",
}
_HARMLESS_ARCH_KEYS = {"context_length", "rope.scaling.original_context_length",
                       "rope.scaling.finetuned"}
_TOKENIZER_KEYS = {
    "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.scores",
    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id", "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id", "tokenizer.ggml.seperator_token_id",
    "tokenizer.ggml.cls_token_id", "tokenizer.ggml.mask_token_id", "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_space_prefix",
    "tokenizer.ggml.add_sep_token", "tokenizer.chat_template",
}
_HARMLESS_PREFIXES = ("general.", "quantize.imatrix.", "tokenizer.chat_template.")
# keys that must hold this value (or be absent) for jaxlab to reproduce the model
_REQUIRED_VALUES = {"tokenizer.ggml.add_eos_token": False, "tokenizer.ggml.add_sep_token": False,
                    "tokenizer.ggml.add_space_prefix": False, "split.count": 1,
                    "llama.expert_count": 0, "llama.expert_used_count": 0}


def _check_keys(metadata: dict[str, Any]) -> None:
    """Refuses every key that is neither read nor known to be harmless (module docstring)."""
    arch = metadata.get("general.architecture")
    if arch != ARCHITECTURE:
        raise GGUFError(f"general.architecture is {arch!r}; jaxlab reads {ARCHITECTURE!r} GGUF files")
    for key, value in metadata.items():
        if key in _REQUIRED_VALUES:
            if value != _REQUIRED_VALUES[key]:
                raise GGUFError(f"metadata {key}={value!r} is not supported; jaxlab needs "
                                f"{_REQUIRED_VALUES[key]!r}")
            continue
        if key.startswith(_HARMLESS_PREFIXES) or key in _TOKENIZER_KEYS or key.startswith("split."):
            continue
        local = key[len(ARCHITECTURE) + 1:] if key.startswith(ARCHITECTURE + ".") else None
        if local in _ARCH_KEYS or local in _HARMLESS_ARCH_KEYS:
            continue
        raise GGUFError(f"metadata key {key} (= {_short(value)}) is not something jaxlab can "
                        "express; refusing rather than computing a different model")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _int(metadata: dict, key: str, default: int | None = None) -> int:
    value = metadata.get(key, default)
    if value is None:
        raise GGUFError(f"GGUF metadata lacks {key}")
    if isinstance(value, list) or isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise GGUFError(f"metadata {key} must be one integer, got {_short(value)} (per-layer values "
                        "are not supported)")
    return int(value)


def _rope_scaling(metadata: dict[str, Any]) -> RopeScaling:
    """llama.cpp divides the frequencies by ``rope.scaling.factor`` (older files:
    ``rope.scale_linear``) when it is set and not 0, with type linear when the type is absent;
    jaxlab reads none and linear."""
    a = ARCHITECTURE + "."
    factor = metadata.get(a + "rope.scaling.factor", metadata.get(a + "rope.scale_linear")) or None
    kind = metadata.get(a + "rope.scaling.type", "none" if factor is None else "linear")
    if kind not in ("none", "linear"):
        raise GGUFError(f"metadata {a}rope.scaling.type={kind!r} is not supported; jaxlab "
                        "implements none and linear for GGUF")
    if kind == "none":
        if factor not in (None, 1.0):
            raise GGUFError(f"metadata {a}rope.scaling.factor={factor} with rope.scaling.type="
                            "'none' is ambiguous; refusing")
        return RopeScaling()
    return RopeScaling(kind="linear", factor=float(1.0 if factor is None else factor))


def config_from_gguf(metadata: dict[str, Any], *, tied: bool, dtype: str = "float32") -> transformer.Config:
    """The :class:`transformer.Config` of a llama GGUF's metadata; ``tied``: the file has no
    ``output.weight``. Raises GGUFError naming the first key jaxlab cannot express."""
    if dtype not in hf.DTYPES:
        raise GGUFError(f"dtype must be one of {sorted(hf.DTYPES)}, got {dtype!r}")
    _check_keys(metadata)
    a = ARCHITECTURE + "."
    d_model = _int(metadata, a + "embedding_length")
    n_heads = _int(metadata, a + "attention.head_count")
    head_dim = _int(metadata, a + "attention.key_length", d_model // n_heads)
    value_dim = _int(metadata, a + "attention.value_length", head_dim)
    if value_dim != head_dim:
        raise GGUFError(f"metadata {a}attention.value_length={value_dim} differs from key_length="
                        f"{head_dim}; jaxlab uses one head dim")
    rope_dim = _int(metadata, a + "rope.dimension_count", head_dim)
    if rope_dim != head_dim:
        raise GGUFError(f"metadata {a}rope.dimension_count={rope_dim} rotates part of the "
                        f"{head_dim} head dims; jaxlab reads GGUF models that rotate all of them")
    scaling = _rope_scaling(metadata)
    if a + "vocab_size" in metadata:
        vocab = _int(metadata, a + "vocab_size")
    elif metadata.get("tokenizer.ggml.tokens"):
        vocab = len(metadata["tokenizer.ggml.tokens"])
    else:
        raise GGUFError(f"GGUF metadata lacks {a}vocab_size and tokenizer.ggml.tokens")
    fields = dict(
        vocab_size=vocab, d_model=d_model,
        n_layers=_int(metadata, a + "block_count"), n_heads=n_heads,
        n_kv_heads=_int(metadata, a + "attention.head_count_kv", n_heads), head_dim=head_dim,
        mlp_dim=_int(metadata, a + "feed_forward_length"), mlp_type="swiglu", norm_type="rms",
        norm_eps=float(metadata.get(a + "attention.layer_norm_rms_epsilon", 1e-5)),
        qk_norm=False, rope_base=float(metadata.get(a + "rope.freq_base", 10000.0)),
        rope_fraction=1.0, rope_scaling=scaling, causal=True, window=None, tie_embeddings=tied,
        attention_bias=False, mlp_bias=False, param_dtype=dtype, compute_dtype=dtype)
    try:
        return transformer.Config(**fields)
    except (TypeError, ValueError) as e:
        raise GGUFError(f"GGUF metadata describes a model jaxlab cannot build: {e}") from None


# ----------------------------------------------------------------------------- tensors

_GGUF_NAMES = {  # jaxlab param path -> GGUF tensor name ({} = the layer index)
    "embed/embedding": "token_embd.weight",
    "unembed/kernel": "output.weight",
    "final_norm/scale": "output_norm.weight",
    "layers/attn_norm/scale": "blk.{}.attn_norm.weight",
    "layers/mlp_norm/scale": "blk.{}.ffn_norm.weight",
    "layers/attn/q/kernel": "blk.{}.attn_q.weight",
    "layers/attn/k/kernel": "blk.{}.attn_k.weight",
    "layers/attn/v/kernel": "blk.{}.attn_v.weight",
    "layers/attn/o/kernel": "blk.{}.attn_output.weight",
    "layers/mlp/gate/kernel": "blk.{}.ffn_gate.weight",
    "layers/mlp/up/kernel": "blk.{}.ffn_up.weight",
    "layers/mlp/down/kernel": "blk.{}.ffn_down.weight",
}
_ROTARY = {"layers/attn/q/kernel": "n_heads", "layers/attn/k/kernel": "n_kv_heads"}


def gguf_tensor_names(path: str, n_layers: int) -> list[str]:
    """The GGUF tensor names of jaxlab param ``path`` (one per layer under ``layers/``)."""
    if path not in _GGUF_NAMES:
        raise GGUFError(f"jaxlab param {path!r} has no llama GGUF counterpart")
    name = _GGUF_NAMES[path]
    return [name.format(i) for i in range(n_layers)] if path.startswith("layers/") else [name]


def _param_from_gguf(w: np.ndarray, name: str, path: str, shape: tuple[int, ...],
                     cfg: transformer.Config) -> np.ndarray:
    """GGUF tensor ``name`` (numpy [out, in] order, dequantized) as jaxlab param ``path``."""
    layout = hf._TENSORS[path][1]
    if tuple(w.shape) != layout.hf_shape(shape):
        raise GGUFError(f"tensor {name} has shape {tuple(w.shape)} (numpy order), but the metadata "
                        f"({hf._shape_context(cfg)}) implies {layout.hf_shape(shape)}")
    if path in _ROTARY:
        w = unpermute_rotary_rows(w, getattr(cfg, _ROTARY[path]))
    return layout.from_hf(w, shape).astype(hf.DTYPES[cfg.param_dtype], copy=False)


def _quantized_param(tensors: dict, names: list[str], param_path: str, shape: tuple[int, ...],
                     cfg: transformer.Config):
    """The layer kernels ``names`` kept in their GGUF blocks (a stacked
    :class:`jaxlab.nn.quant.QuantizedKernel`), or None when they are not all Q8_0 or all Q4_1."""
    from jaxlab.nn.quant import from_gguf_blocks

    types = {tensors[n].type_name.upper() for n in names}
    if len(types) != 1 or types & {"Q8_0", "Q4_1"} == set() or param_path.endswith("/bias"):
        return None
    layout = hf._TENSORS[param_path][1]
    order = None
    if param_path in _ROTARY:
        m = layout.hf_shape(shape)[0]
        order = unpermute_rotary_rows(np.arange(m)[:, None], getattr(cfg, _ROTARY[param_path]))[:, 0]
    per_layer = []
    for name in names:
        t = tensors[name]
        if tuple(t.shape) != layout.hf_shape(shape):
            raise GGUFError(f"tensor {name} has shape {tuple(t.shape)} (numpy order), but the metadata "
                            f"({hf._shape_context(cfg)}) implies {layout.hf_shape(shape)}")
        raw = np.asarray(t.data, np.uint8).reshape(t.shape[0], -1)
        per_layer.append(from_gguf_blocks(raw, t.type_name, shape, n_in=layout.n_in, row_order=order))
    return jax.tree.map(lambda *xs: np.stack(xs), *per_layer)


def load(path: str | Path, *, dtype: str = "float32", progress: bool = False,
         keep_quantized: bool = False) -> tuple[transformer.Config, dict, HFTokenizer]:
    """(config, params, tokenizer) of a llama GGUF file (module docstring).

    Every tensor is dequantized to float32, then cast to ``dtype`` (the config's param and
    compute dtype). With ``keep_quantized``, layer kernels stored as Q8_0 or Q4_1 stay in their
    blocks as :class:`jaxlab.nn.quant.QuantizedKernel` (dequantized inside ``dense`` one layer
    at a time: a frozen base for LoRA, :func:`jaxlab.peft.inline`). Raises GGUFError for an
    unreadable file, a metadata key jaxlab cannot express, a missing, unexpected, truncated or
    wrongly shaped tensor (each named).
    """
    from tqdm.auto import tqdm

    path = Path(path)
    metadata, tensors = _read(path)
    cfg = config_from_gguf(metadata, tied="output.weight" not in tensors, dtype=dtype)
    tokenizer = tokenizer_from_gguf(metadata)
    expected = hf._expected_params(cfg)
    wanted = {p: gguf_tensor_names(p, cfg.n_layers) for p in expected}
    names = [n for ns in wanted.values() for n in ns]
    missing = [n for n in names if n not in tensors]
    if missing:
        raise GGUFError(f"{path} lacks tensor(s) its metadata implies: {hf._list(missing)}")
    unexpected = sorted(set(tensors) - set(names))
    if unexpected:
        raise GGUFError(f"{path} holds tensor(s) jaxlab's llama model has no place for: "
                        f"{hf._list(unexpected)}")
    flat = {}
    bar = tqdm(total=len(names), desc=f"loading {path.name}", unit="tensor", disable=not progress)
    for param_path, struct_ in expected.items():
        stacked = param_path.startswith("layers/")
        shape = struct_.shape[1:] if stacked else struct_.shape
        if keep_quantized and stacked and param_path.endswith("/kernel"):
            kept = _quantized_param(tensors, wanted[param_path], param_path, shape, cfg)
            if kept is not None:
                flat[param_path] = jax.tree.map(jax.device_put, kept)
                bar.update(len(wanted[param_path]))
                continue
        host = np.empty((len(wanted[param_path]), *shape), hf.DTYPES[cfg.param_dtype])
        for i, name in enumerate(wanted[param_path]):
            t = tensors[name]
            w = dequantize(t.data, t.type_name, t.shape, name=name)
            host[i] = _param_from_gguf(w, name, param_path, shape, cfg)
            bar.update()
        flat[param_path] = jax.device_put(host if stacked else host[0])
    bar.close()
    return cfg, traverse_util.unflatten_dict(flat, sep="/"), tokenizer


# ----------------------------------------------------------------------------- tokenizer

_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# tokenizer.ggml.pre -> llama.cpp's split regexes, applied one after the other
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    "default": (_GPT2_SPLIT,),
    "gpt2": (_GPT2_SPLIT,),
    "smollm": (r"\p{N}", _GPT2_SPLIT),
    "starcoder": (r"\p{N}", _GPT2_SPLIT),
    "refact": (r"\p{N}", _GPT2_SPLIT),
}
CONTROL, USER_DEFINED = 3, 4  # llama.cpp token types (1 = normal)


def _import_tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError("a GGUF tokenizer needs the 'tokenizers' package: pip install tokenizers") from None
    return tokenizers


def _pre_tokenizer(pre: str):
    tokenizers = _import_tokenizers()
    from tokenizers import pre_tokenizers

    if pre not in PRE_TOKENIZERS:
        raise GGUFError(f"metadata tokenizer.ggml.pre={pre!r} is not supported; jaxlab knows "
                        f"{', '.join(PRE_TOKENIZERS)}")
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Split(tokenizers.Regex(r), behavior="isolated") for r in PRE_TOKENIZERS[pre]]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def _token_id(metadata: dict, key: str, n_tokens: int) -> int | None:
    value = metadata.get(key)
    if value is None:
        return None
    value = _int(metadata, key)
    if not 0 <= value < n_tokens:
        raise GGUFError(f"metadata {key}={value} is outside the vocabulary of {n_tokens} tokens")
    return value


def tokenizer_from_gguf(metadata: dict[str, Any]) -> HFTokenizer:
    """The byte-level BPE tokenizer a GGUF's ``tokenizer.*`` metadata describes (module docstring)."""
    tokenizers = _import_tokenizers()
    from tokenizers import AddedToken, decoders, models

    kind = metadata.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise GGUFError(f"metadata tokenizer.ggml.model={kind!r} is not supported; jaxlab rebuilds "
                        "'gpt2' (byte-level BPE) tokenizers")
    tokens = metadata.get("tokenizer.ggml.tokens")
    merges = metadata.get("tokenizer.ggml.merges")
    if not tokens or merges is None:
        raise GGUFError("GGUF metadata lacks tokenizer.ggml.tokens or tokenizer.ggml.merges")
    types = metadata.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    if len(types) != len(tokens):
        raise GGUFError(f"tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} tokens")
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise GGUFError("tokenizer.ggml.tokens repeats a token")
    pairs = [tuple(m.split(" ")) for m in merges]
    bad = next((m for m, p in zip(merges, pairs, strict=True) if len(p) != 2), None)
    if bad is not None:
        raise GGUFError(f"tokenizer.ggml.merges holds {bad!r}, not two tokens separated by a space")
    unk = _token_id(metadata, "tokenizer.ggml.unknown_token_id", len(tokens))
    tok = tokenizers.Tokenizer(models.BPE(vocab, pairs, unk_token=None if unk is None else tokens[unk],
                                          fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = _pre_tokenizer(metadata.get("tokenizer.ggml.pre", "default"))
    tok.decoder = decoders.ByteLevel()
    special = [AddedToken(t, special=True, normalized=False)
               for t, k in zip(tokens, types, strict=True) if k == CONTROL]
    added = [AddedToken(t, special=False, normalized=False)
             for t, k in zip(tokens, types, strict=True) if k == USER_DEFINED]
    tok.add_special_tokens(special)
    tok.add_tokens(added)
    n = len(tokens)
    ids = {k: _token_id(metadata, f"tokenizer.ggml.{k}_token_id", n)
           for k in ("bos", "eos", "eot", "eom", "padding")}
    eos_ids = tuple(dict.fromkeys(i for i in (ids["eos"], ids["eot"], ids["eom"]) if i is not None))
    return HFTokenizer(tok, bos_id=ids["bos"], eos_ids=eos_ids, pad_id=ids["padding"],
                       chat_template=metadata.get("tokenizer.chat_template"),
                       add_bos=bool(metadata.get("tokenizer.ggml.add_bos_token", False)))


def _pre_name(pre_json: dict | None) -> str:
    """The ``tokenizer.ggml.pre`` name of a tokenizer.json pre-tokenizer, or GGUFError."""
    def level(d, use_regex):
        return (d.get("type") == "ByteLevel" and not d.get("add_prefix_space")
                and d.get("use_regex", True) == use_regex)

    for name in PRE_TOKENIZERS:  # one built by tokenizer_from_gguf
        if pre_json == json.loads(_pre_tokenizer(name).__getstate__()):
            return name
    if pre_json and level(pre_json, True):  # Hugging Face's GPT-2 pre-tokenizer
        return "gpt2"
    steps = (pre_json or {}).get("pretokenizers") or []
    if (len(steps) == 2 and steps[0].get("type") == "Digits" and steps[0].get("individual_digits")
            and level(steps[1], True)):  # SmolLM2's tokenizer.json
        return "smollm"
    raise GGUFError(f"this tokenizer's pre-tokenizer ({_short(pre_json)}) has no llama.cpp "
                    f"tokenizer.ggml.pre name jaxlab knows ({', '.join(PRE_TOKENIZERS)})")


def tokenizer_metadata(tokenizer: HFTokenizer) -> dict[str, Any]:
    """The ``tokenizer.*`` metadata of a byte-level BPE :class:`HFTokenizer` (inverse of
    :func:`tokenizer_from_gguf`)."""
    if not isinstance(tokenizer, HFTokenizer):
        raise GGUFError(f"a GGUF file needs a byte-level BPE HFTokenizer, got {type(tokenizer).__name__}")
    spec = json.loads(tokenizer.tokenizer.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise GGUFError("only byte-level BPE tokenizers (BPE model, ByteLevel decoder) can be "
                        "written to GGUF")
    if spec.get("normalizer") is not None:
        raise GGUFError(f"this tokenizer has a normalizer ({_short(spec['normalizer'])}); llama.cpp's "
                        "gpt2 tokenizer has none")
    by_id = {i: t for t, i in model["vocab"].items()}
    added = {a["id"]: a for a in spec.get("added_tokens") or []}
    for i, a in added.items():
        by_id.setdefault(i, a["content"])
    n = max(by_id) + 1
    if sorted(by_id) != list(range(n)):
        raise GGUFError("the tokenizer's ids are not contiguous from 0; GGUF stores a token per id")
    tokens = [by_id[i] for i in range(n)]
    types = [(CONTROL if added[i]["special"] else USER_DEFINED) if i in added else 1 for i in range(n)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    meta: dict[str, Any] = {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": _pre_name(spec.get("pre_tokenizer")),
        "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges, "tokenizer.ggml.add_bos_token": bool(tokenizer.add_bos),
    }
    if len(tokenizer.eos_ids) > 3:
        raise GGUFError(f"the tokenizer has {len(tokenizer.eos_ids)} stop ids; GGUF stores at most "
                        "three (eos, eot, eom)")
    unk = model.get("unk_token")
    for key, value in [("bos", tokenizer.bos_id), ("padding", tokenizer.pad_id),
                       ("unknown", model["vocab"].get(unk) if unk is not None else None),
                       *zip(("eos", "eot", "eom"), tokenizer.eos_ids)]:
        if value is not None:
            meta[f"tokenizer.ggml.{key}_token_id"] = int(value)
    if tokenizer.chat_template_source:
        meta["tokenizer.chat_template"] = tokenizer.chat_template_source
    return meta


# ----------------------------------------------------------------------------- save

def _check_savable(cfg: transformer.Config) -> None:
    problems = []
    if cfg.norm_type != "rms":
        problems.append(f"norm_type={cfg.norm_type!r} (llama uses RMSNorm)")
    if cfg.mlp_type != "swiglu":
        problems.append(f"mlp_type={cfg.mlp_type!r} (llama uses SwiGLU)")
    for flag in ("qk_norm", "attention_bias", "mlp_bias"):
        if getattr(cfg, flag):
            problems.append(f"{flag}=True")
    if not cfg.causal:
        problems.append("causal=False")
    if cfg.window is not None:
        problems.append(f"window={cfg.window}")
    if cfg.rope_fraction != 1.0:
        problems.append(f"rope_fraction={cfg.rope_fraction}")
    if cfg.rope_scaling.kind not in ("none", "linear"):
        problems.append(f"rope_scaling.kind={cfg.rope_scaling.kind!r}")
    if cfg.attention_kind != "softmax":
        problems.append(f"attention_kind={cfg.attention_kind!r}")
    if cfg.head_dim % 2:
        problems.append(f"head_dim={cfg.head_dim} (RoPE needs an even head dim)")
    if problems:
        raise GGUFError("cannot write this model as a llama GGUF: " + "; ".join(problems))


def _config_metadata(cfg: transformer.Config, context_length: int) -> dict[str, Any]:
    a = ARCHITECTURE + "."
    meta = {
        a + "context_length": context_length, a + "embedding_length": cfg.d_model,
        a + "block_count": cfg.n_layers, a + "feed_forward_length": cfg.mlp_dim,
        a + "attention.head_count": cfg.n_heads, a + "attention.head_count_kv": cfg.n_kv_heads,
        a + "rope.freq_base": float(cfg.rope_base), a + "rope.dimension_count": cfg.head_dim,
        a + "attention.layer_norm_rms_epsilon": float(cfg.norm_eps), a + "vocab_size": cfg.vocab_size,
    }
    if cfg.head_dim * cfg.n_heads != cfg.d_model:
        meta.update({a + "attention.key_length": cfg.head_dim, a + "attention.value_length": cfg.head_dim})
    if cfg.rope_scaling.kind == "linear":
        meta.update({a + "rope.scaling.type": "linear", a + "rope.scaling.factor": float(cfg.rope_scaling.factor)})
    return meta


def _gguf_tensors(cfg: transformer.Config, params: dict) -> dict[str, np.ndarray]:
    """{GGUF name: float32 array in numpy [out, in] order, q/k rows permuted}, in file order."""
    flat = hf.flat_params(cfg, params)
    out = {}
    host = {p: np.asarray(jax.device_get(x), dtype=np.float32) for p, x in flat.items()}

    def put(path, index=None):
        x = host[path] if index is None else host[path][index]
        w = hf._TENSORS[path][1].to_hf(x)
        if path in _ROTARY:
            w = permute_rotary_rows(w, getattr(cfg, _ROTARY[path]))
        out[gguf_tensor_names(path, cfg.n_layers)[index or 0]] = np.ascontiguousarray(w)

    put("embed/embedding")
    for i in range(cfg.n_layers):
        for path in _GGUF_NAMES:
            if path.startswith("layers/"):
                put(path, i)
    put("final_norm/scale")
    if "unembed/kernel" in host:
        put("unembed/kernel")
    return out


def save(path: str | Path, cfg: transformer.Config, params: dict, tokenizer: HFTokenizer, *,
         dtype: str = "f16", context_length: int = 2048, name: str | None = None) -> Path:
    """Writes a llama GGUF file of ``cfg``, ``params`` and ``tokenizer``; returns its path.

    dtype: "f16" stores every matrix as float16; "q8_0" as Q8_0 (a matrix whose rows are not a
      multiple of 32 stays float16, as in llama.cpp's converter). Norm scales are float32.
    context_length: ``llama.context_length``, the context the model was trained for.
    The file is written beside its destination and renamed into place.
    """
    gguf = _import_gguf()
    if dtype not in SAVE_DTYPES:
        raise GGUFError(f"dtype must be one of {SAVE_DTYPES}, got {dtype!r}")
    _check_savable(cfg)
    meta = {**_config_metadata(cfg, int(context_length)), **tokenizer_metadata(tokenizer)}
    if len(meta["tokenizer.ggml.tokens"]) > cfg.vocab_size:
        raise GGUFError(f"the tokenizer has {len(meta['tokenizer.ggml.tokens'])} tokens, more than the "
                        f"model's vocab_size {cfg.vocab_size}")
    tensors = _gguf_tensors(cfg, params)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, ARCHITECTURE)
        if name:
            writer.add_name(name)
        writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q8_0 if dtype == "q8_0"
                                 else gguf.LlamaFileType.MOSTLY_F16))
        if dtype == "q8_0":
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for key, value in meta.items():
            _add(writer, gguf, key, value)
        for tname, w in tensors.items():
            if w.ndim == 1:
                writer.add_tensor(tname, w.astype(np.float32))
            elif dtype == "q8_0" and w.shape[-1] % 32 == 0:
                writer.add_tensor(tname, quantize_q8_0(w),
                                  raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            else:
                writer.add_tensor(tname, w.astype(np.float16))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates it private
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _add(writer, gguf, key: str, value: Any) -> None:
    """One metadata entry with the value type llama.cpp expects for ``key``."""
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif key == "tokenizer.ggml.token_type":
        writer.add_array(key, [int(v) for v in value])  # the writer stores Python ints as INT32
    else:
        writer.add_array(key, list(value))
