"""Bits per byte and perplexity against a hand computation from transformer.apply log-probs."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.data import ByteTokenizer
from jaxlab.evals import text_bits_per_byte
from jaxlab.evals.text import window_spans
from jaxlab.models import transformer

TEXT = "Der Bär fing 3 Fische; 12+30=42. ¿Qué?\n" * 3


_apply = jax.jit(transformer.apply, static_argnums=2)


def token_nll(cfg, params, inputs, targets):
    """-log p(targets[t] | inputs[:t+1]) per position, one forward pass over ``inputs``."""
    logits = _apply(params, jnp.asarray(inputs, jnp.int32)[None], cfg)[0]
    logp = np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), np.float64)
    return -logp[np.arange(len(targets)), targets]


@pytest.fixture(scope="module")
def tokenizers_():
    from tokenizer_fixtures import bpe_tokenizer

    return {"bytes": ByteTokenizer(), "bpe": bpe_tokenizer("plain")}


@pytest.mark.parametrize("name", ["bytes", "bpe"])
def test_one_window_equals_hand_computation(tiny_model, tokenizers_, name):
    cfg, params = tiny_model
    tok = tokenizers_[name]
    ids = tok.encode(TEXT)
    stream = np.concatenate([[tok.bos_id], ids])
    nll = token_nll(cfg, params, stream[:-1], stream[1:]).sum()
    out = text_bits_per_byte(cfg, params, tok, TEXT, window=len(stream) + 3)
    n_bytes = len(TEXT.encode("utf-8"))
    assert out["n_windows"] == 1 and out["n_tokens"] == len(ids) and out["n_bytes"] == n_bytes
    assert out["bits_per_byte"] == pytest.approx(nll / n_bytes * math.log2(math.e), rel=1e-5)
    assert out["perplexity"] == pytest.approx(math.exp(nll / len(ids)), rel=1e-5)
    if name == "bpe":  # tokens are several bytes: bits per token > bits per byte
        assert len(ids) < n_bytes and out["bits_per_token"] > out["bits_per_byte"]


def test_windows_equal_hand_computation(tiny_model):
    cfg, params = tiny_model
    tok = ByteTokenizer()
    text = TEXT[:50]
    stream = np.concatenate([[tok.bos_id], tok.encode(text)])
    inputs, targets = stream[:-1], stream[1:]
    W, S = 16, 6
    # by hand: window j feeds inputs[jS : jS + W] and scores the targets no earlier window did
    nll, scored = 0.0, 0
    for begin in range(0, len(inputs), S):
        end = min(begin + W, len(inputs))
        per_token = token_nll(cfg, params, inputs[begin:end], targets[begin:end])
        nll += per_token[scored - begin:].sum()
        scored = end
        if end == len(inputs):
            break
    out = text_bits_per_byte(cfg, params, tok, text, window=W, stride=S, batch_size=3)
    assert out["nll_nats"] == pytest.approx(nll, rel=1e-5)
    # the windows see less context than one pass, so the numbers differ
    whole = text_bits_per_byte(cfg, params, tok, text, window=64)
    assert whole["nll_nats"] != pytest.approx(nll, rel=1e-6)


@pytest.mark.parametrize("n,window,stride", [(1, 4, 2), (10, 4, 4), (10, 4, 1), (37, 16, 5), (8, 16, 8)])
def test_window_spans_score_each_target_once(n, window, stride):
    spans = window_spans(n, window, stride)
    scored = np.zeros(n, int)
    for begin, end, first in spans:
        assert 0 <= begin <= first < end <= n and end - begin <= window
        scored[first:end] += 1
    assert (scored == 1).all()


def test_bad_input(tiny_model):
    cfg, params = tiny_model
    with pytest.raises(ValueError, match="non-empty"):
        text_bits_per_byte(cfg, params, ByteTokenizer(), "")
    with pytest.raises(ValueError, match="stride"):
        text_bits_per_byte(cfg, params, ByteTokenizer(), "abc", window=4, stride=5)
    with pytest.raises(ValueError, match="vocabulary only 100"):
        text_bits_per_byte(dataclasses.replace(cfg, vocab_size=100), params, ByteTokenizer(), "abc")
