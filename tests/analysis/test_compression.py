"""Arithmetic coding under a model: decompress(compress(x)) == x for any text (a hypothesis
test), the size tracks the model's cross-entropy, and corrupt streams are refused."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxlab.analysis import compression as comp
from jaxlab.data import ByteTokenizer
from jaxlab.models import transformer

CFG = transformer.Config(vocab_size=259, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, mlp_dim=64)
WINDOW = 24


@pytest.fixture(scope="module")
def probs_fn():
    return comp.model_probs_fn(transformer.init(CFG, jax.random.key(0)), CFG, WINDOW)


@given(st.lists(st.integers(0, 5), max_size=200), st.integers(0, 2 ** 31 - 1))
@settings(max_examples=40, deadline=None)
def test_coder_round_trips_any_symbols(symbols, seed):
    rng = np.random.default_rng(seed)
    cdfs = [comp.quantized_cdf(rng.dirichlet(np.full(6, 0.3))) for _ in symbols]
    enc = comp.ArithmeticEncoder()
    for s, cdf in zip(symbols, cdfs):
        enc.encode(int(cdf[s]), int(cdf[s + 1]), int(cdf[-1]))
    dec = comp.ArithmeticDecoder(np.asarray(enc.finish(), np.uint8))
    assert [dec.decode(cdf) for cdf in cdfs] == symbols


def test_coded_length_is_the_information_content():
    rng = np.random.default_rng(1)
    p = np.array([0.7, 0.2, 0.05, 0.05])
    cdf = comp.quantized_cdf(p)
    symbols = rng.choice(4, size=5000, p=p)
    enc = comp.ArithmeticEncoder()
    for s in symbols:
        enc.encode(int(cdf[s]), int(cdf[s + 1]), int(cdf[-1]))
    bits = len(enc.finish())
    information = -np.log2(p[symbols]).sum()
    assert information <= bits <= information + 4  # within a few bits of -sum log2 p


@given(st.text(max_size=60))
@settings(max_examples=12, deadline=None)
def test_model_compression_is_lossless(probs_fn, text):
    data = comp.compress(text, ByteTokenizer(), probs_fn, WINDOW)
    assert comp.decompress(data, ByteTokenizer(), probs_fn, WINDOW) == text


def test_size_tracks_the_model_cross_entropy_and_baselines_are_measured(probs_fn):
    text = "The quick brown fox jumps over the lazy dog. " * 3
    tok = ByteTokenizer()
    data = comp.compress(text, tok, probs_fn, WINDOW)
    ids = tok.encode(text)
    information = 0.0
    for chunk in [ids[i:i + WINDOW - 1] for i in range(0, len(ids), WINDOW - 1)]:
        window = np.full(WINDOW, tok.pad_id)
        window[0], window[1:1 + len(chunk)] = tok.bos_id, chunk
        p = probs_fn(window)
        information += -np.log2(p[np.arange(len(chunk)), chunk]).sum()
    header = len(comp.MAGIC) + 1 + 7
    assert 8 * (len(data) - header) == pytest.approx(information, rel=0.01, abs=16)
    report = comp.compression_report(text, tok, probs_fn, WINDOW)
    assert report["roundtrip"] and report["model_bits_per_byte"] == pytest.approx(8 * len(data) / len(text))
    sizes = comp.baseline_sizes(text)
    for name in ("gzip-9", "bz2-9", "xz-9e"):
        assert report[f"{name}_bits_per_byte"] == pytest.approx(8 * sizes[name] / len(text))
        assert report[f"{name}_bytes_per_s"] > 0


def test_corrupt_streams_are_refused(probs_fn):
    tok = ByteTokenizer()
    with pytest.raises(comp.CompressionError, match="bad magic"):
        comp.decompress(b"XXXX", tok, probs_fn, WINDOW)
    with pytest.raises(comp.CompressionError, match="past the end"):
        comp.decompress(comp.MAGIC + b"\x85", tok, probs_fn, WINDOW)
    with pytest.raises(comp.CompressionError, match="chunk of 99 tokens"):
        comp.decompress(comp.MAGIC + b"\x01\x63", tok, probs_fn, WINDOW)
    with pytest.raises(comp.CompressionError, match="max_tokens"):
        comp.decompress(comp.MAGIC + b"\x02\x10\x10", tok, probs_fn, WINDOW, max_tokens=20)
