"""Lossless text compression with a language model: arithmetic coding of each token under the
model's next-token distribution (LLMZip, Valmeekam et al. 2023; FineZip, Mittu et al. 2024).

A token t with model probability p(t | prefix) costs about -log2 p bits, so the compressed size
approaches the model's cross-entropy on the text:  bits per byte ~ sum_t -log2 p(t) / bytes.

Exactness. The decoder must see bit-for-bit the distributions the encoder used. Both sides
therefore compute the distribution of position i of a chunk the same way: one forward pass of
the model over the chunk's fixed-shape window [1, W] (the tokens known so far, then padding;
a causal model's position i does not depend on what follows it), and the same integer
quantization of those probabilities:

    f_v = floor(p_v (F - V)) + 1        (every token keeps a non-zero frequency; sum_v f_v <= F)

with F = 2^24. The coder is the classic integer arithmetic coder (Witten, Neal and Cleary 1987)
with 48-bit state and pending-bit carries. Text is tokenized and cut into chunks of W - 1
tokens, each coded after a BOS with no context from the chunk before (chunks are
independent). The container: magic, the chunk count and token counts as varints, then the bits.
Decoding costs one forward pass per token (encoding one per chunk).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

MAGIC = b"JLZ1"
FREQ_BITS = 24
PRECISION = 48


class CompressionError(ValueError):
    """A stream or input that cannot be coded (named in the message)."""


# ---------------------------------------------------------------- frequencies

def quantized_cdf(probs_V: np.ndarray) -> np.ndarray:
    """The cumulative integer frequencies [V + 1] of a probability vector (module docstring):
    cdf[0] = 0, cdf[v + 1] - cdf[v] = f_v >= 1."""
    p = np.asarray(probs_V, np.float64)
    V = p.size
    total = 1 << FREQ_BITS
    if V >= total // 2:
        raise CompressionError(f"a vocabulary of {V} tokens needs more than {FREQ_BITS} frequency bits")
    f = np.floor(np.clip(p, 0.0, 1.0) * (total - V)).astype(np.int64) + 1
    return np.concatenate([[0], np.cumsum(f)])


# ---------------------------------------------------------------- the arithmetic coder

class _Coder:
    full = (1 << PRECISION) - 1
    half = 1 << (PRECISION - 1)
    quarter = 1 << (PRECISION - 2)

    def __init__(self):
        self.low, self.high = 0, self.full

    def _narrow(self, lo: int, hi: int, total: int) -> None:
        span = self.high - self.low + 1
        self.high = self.low + span * hi // total - 1
        self.low = self.low + span * lo // total


class ArithmeticEncoder(_Coder):
    """encode(lo, hi, total) for each symbol's [cdf[s], cdf[s + 1]) of ``total``; finish() ->
    the bits as a list of 0/1."""

    def __init__(self):
        super().__init__()
        self.pending = 0
        self.bits: list[int] = []

    def _emit(self, bit: int) -> None:
        self.bits.append(bit)
        self.bits.extend([1 - bit] * self.pending)
        self.pending = 0

    def encode(self, lo: int, hi: int, total: int) -> None:
        self._narrow(lo, hi, total)
        while True:
            if self.high < self.half:
                self._emit(0)
            elif self.low >= self.half:
                self._emit(1)
                self.low -= self.half
                self.high -= self.half
            elif self.low >= self.quarter and self.high < 3 * self.quarter:
                self.pending += 1
                self.low -= self.quarter
                self.high -= self.quarter
            else:
                break
            self.low, self.high = 2 * self.low, 2 * self.high + 1

    def finish(self) -> list[int]:
        self.pending += 1
        self._emit(0 if self.low < self.quarter else 1)
        return self.bits


class ArithmeticDecoder(_Coder):
    """decode(cdf) -> the symbol whose interval holds the code value; reads ``bits`` (zeros past
    their end)."""

    def __init__(self, bits: np.ndarray):
        super().__init__()
        self.bits, self.pos = bits, 0
        self.value = 0
        for _ in range(PRECISION):
            self.value = 2 * self.value + self._next_bit()

    def _next_bit(self) -> int:
        bit = int(self.bits[self.pos]) if self.pos < len(self.bits) else 0
        self.pos += 1
        return bit

    def decode(self, cdf: np.ndarray) -> int:
        total = int(cdf[-1])
        span = self.high - self.low + 1
        scaled = ((self.value - self.low + 1) * total - 1) // span
        symbol = int(np.searchsorted(cdf, scaled, side="right")) - 1
        if not 0 <= symbol < len(cdf) - 1:
            raise CompressionError("corrupt stream: the code value lies outside every token's interval")
        self._narrow(int(cdf[symbol]), int(cdf[symbol + 1]), total)
        while True:
            if self.high < self.half:
                pass
            elif self.low >= self.half:
                self.value -= self.half
                self.low -= self.half
                self.high -= self.half
            elif self.low >= self.quarter and self.high < 3 * self.quarter:
                self.value -= self.quarter
                self.low -= self.quarter
                self.high -= self.quarter
            else:
                break
            self.low, self.high = 2 * self.low, 2 * self.high + 1
            self.value = 2 * self.value + self._next_bit()
        return symbol


# ---------------------------------------------------------------- container

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise CompressionError("corrupt stream: a length field runs past the end")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


# ---------------------------------------------------------------- the model side

ProbsFn = Callable[[np.ndarray], np.ndarray]  # window tokens [W] -> probabilities [W, V]


def model_probs_fn(params: dict, cfg, window: int) -> ProbsFn:
    """A :data:`ProbsFn` for a :mod:`jaxlab.models.transformer` model: softmax of the logits
    of one [1, window] forward pass in float32 (compiled once for the window's shape)."""
    from jaxlab.models import transformer

    @jax.jit
    def probs(tokens_W):
        logits = transformer.apply(params, tokens_W[None], cfg)[0].astype(jnp.float32)
        return jax.nn.softmax(logits, axis=-1)

    def fn(tokens_W: np.ndarray) -> np.ndarray:
        if tokens_W.shape != (window,):
            raise CompressionError(f"the window must hold {window} tokens, got {tokens_W.shape}")
        return np.asarray(probs(jnp.asarray(tokens_W, jnp.int32)))
    return fn


def _chunks(ids: np.ndarray, window: int) -> list[np.ndarray]:
    step = window - 1
    return [ids[i:i + step] for i in range(0, len(ids), step)] or [ids[:0]]


def compress(text: str, tokenizer, probs_fn: ProbsFn, window: int, *, progress: bool = False) -> bytes:
    """The compressed bytes of ``text`` (module docstring). The tokenizer must round-trip the
    text exactly (``decode(encode(text)) == text``), else there is nothing lossless to code."""
    ids = np.asarray(tokenizer.encode(text), np.int64)
    if tokenizer.decode(ids) != text:
        raise CompressionError("the tokenizer does not round-trip this text exactly; lossless coding "
                               "needs decode(encode(text)) == text")
    if tokenizer.bos_id is None:
        raise CompressionError("compression starts each chunk with BOS; this tokenizer has none")
    encoder = ArithmeticEncoder()
    chunks = _chunks(ids, window)
    iterator = chunks
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(chunks, desc="compress", unit="chunk")
    for chunk in iterator:
        tokens_W = np.full(window, tokenizer.pad_id, np.int64)
        tokens_W[0] = tokenizer.bos_id
        tokens_W[1:1 + len(chunk)] = chunk
        probs_WV = probs_fn(tokens_W)
        for i, token in enumerate(chunk):
            cdf = quantized_cdf(probs_WV[i])
            encoder.encode(int(cdf[token]), int(cdf[token + 1]), int(cdf[-1]))
    bits = np.asarray(encoder.finish(), np.uint8)
    header = MAGIC + _varint(len(chunks)) + b"".join(_varint(len(c)) for c in chunks)
    return header + np.packbits(bits).tobytes()


def decompress(data: bytes, tokenizer, probs_fn: ProbsFn, window: int, *, max_tokens: int = 10_000_000,
               progress: bool = False) -> str:
    """The text :func:`compress` coded into ``data`` (the same model, tokenizer and window)."""
    if not data.startswith(MAGIC):
        raise CompressionError("not a jaxlab compressed stream (bad magic)")
    n_chunks, pos = _read_varint(data, len(MAGIC))
    lengths = []
    for _ in range(n_chunks):
        n, pos = _read_varint(data, pos)
        if n > window - 1:
            raise CompressionError(f"corrupt stream: a chunk of {n} tokens in a window of {window}")
        lengths.append(n)
    if sum(lengths) > max_tokens:
        raise CompressionError(f"the stream claims {sum(lengths)} tokens, more than max_tokens={max_tokens}")
    decoder = ArithmeticDecoder(np.unpackbits(np.frombuffer(data[pos:], np.uint8)))
    ids: list[int] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=sum(lengths), desc="decompress", unit="tok")
    for n in lengths:
        tokens_W = np.full(window, tokenizer.pad_id, np.int64)
        tokens_W[0] = tokenizer.bos_id
        for i in range(n):
            token = decoder.decode(quantized_cdf(probs_fn(tokens_W)[i]))
            tokens_W[i + 1] = token
            ids.append(token)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return tokenizer.decode(np.asarray(ids, np.int64))


BASELINES = {
    "gzip-9": lambda data: gzip.compress(data, compresslevel=9),
    "bz2-9": lambda data: bz2.compress(data, 9),
    "xz-9e": lambda data: lzma.compress(data, preset=9 | lzma.PRESET_EXTREME),
}


def baseline_sizes(text: str) -> dict[str, int]:
    """Compressed sizes in bytes of the same text by gzip -9, bz2 -9 and xz -9e."""
    data = text.encode("utf-8")
    return {name: len(fn(data)) for name, fn in BASELINES.items()}


def baseline_report(text: str) -> dict[str, float]:
    """``{name}_bits_per_byte`` and ``{name}_bytes_per_s`` (compression throughput) of each
    baseline compressor on ``text``."""
    data = text.encode("utf-8")
    out = {}
    for name, fn in BASELINES.items():
        start = time.perf_counter()
        size = len(fn(data))
        out[f"{name}_bytes_per_s"] = len(data) / max(time.perf_counter() - start, 1e-9)
        out[f"{name}_bits_per_byte"] = 8 * size / len(data)
    return out


def compression_report(text: str, tokenizer, probs_fn: ProbsFn, window: int, *, decode: bool = True) -> dict:
    """Bits per byte of the model coder next to gzip, bz2 and xz on ``text``, with the encode
    (and decode) throughput in bytes/s of each (:func:`baseline_report`); ``roundtrip`` is
    whether decoding gave the text back."""
    n_bytes = len(text.encode("utf-8"))
    if n_bytes == 0:
        raise CompressionError("cannot report on an empty text")
    start = time.perf_counter()
    data = compress(text, tokenizer, probs_fn, window)
    encode_s = time.perf_counter() - start
    out = {"bytes": n_bytes, "model_bits_per_byte": 8 * len(data) / n_bytes,
           "encode_bytes_per_s": n_bytes / encode_s}
    out.update(baseline_report(text))
    if decode:
        start = time.perf_counter()
        back = decompress(data, tokenizer, probs_fn, window)
        out["decode_bytes_per_s"] = n_bytes / (time.perf_counter() - start)
        out["roundtrip"] = back == text
    return out
