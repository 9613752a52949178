"""Perplexity and bits per byte of a model on a text, windowed over long texts.

The text's tokens y_1..y_n follow a start token y_0 (BOS, or EOS when the tokenizer has no
BOS, as lm-evaluation-harness does), so every text token is scored:

    NLL          = - sum_{t=1}^{n} log p(y_t | context_t)           (nats)
    bits/byte    = NLL / (UTF-8 bytes of the text) * log2(e)
    bits/token   = NLL / n * log2(e),    perplexity = exp(NLL / n)

Windows (a text longer than the model should see at once): window j feeds the inputs
y_{jS} .. y_{jS+W-1} (W = ``window``, S = ``stride``) at positions 0..W-1 and scores only the
targets no earlier window scored, so each target is scored once, with at least W - S tokens
of context except in the first window. With W >= n + 1 it is one plain forward pass.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxlab.evals.generation import check_vocab
from jaxlab.models import transformer

DEFAULT_WINDOW = 1024


def window_spans(n_inputs: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored) input index of each window over ``n_inputs`` positions: inputs
    [begin, end) are fed, targets at [first scored, end) are scored (module docstring)."""
    if not 1 <= stride <= window:
        raise ValueError(f"need 1 <= stride <= window, got stride={stride}, window={window}")
    spans, scored_to, begin = [], 0, 0
    while scored_to < n_inputs:
        end = min(begin + window, n_inputs)
        spans.append((begin, end, scored_to))
        scored_to = end
        begin += stride
    return spans


@functools.partial(jax.jit, static_argnames="cfg")
def _window_nll(params, inputs_BW, targets_BW, mask_BW, cfg):
    """Sum over each row of the masked target NLL, [B] float32."""
    logits_BWV = transformer.apply(params, inputs_BW, cfg)
    logp_BWV = jax.nn.log_softmax(logits_BWV.astype(jnp.float32), axis=-1)
    nll_BW = -jnp.take_along_axis(logp_BWV, targets_BW[..., None], axis=-1)[..., 0]
    return jnp.sum(nll_BW * mask_BW, axis=1)


def text_bits_per_byte(cfg, params, tokenizer, text: str, *, window: int = DEFAULT_WINDOW,
                       stride: int | None = None, batch_size: int = 8, progress: bool = False) -> dict:
    """Bits per byte and perplexity of ``text`` (module docstring); ``stride`` defaults to
    window // 2. Returns ``{"bits_per_byte", "bits_per_token", "perplexity", "nll_nats",
    "n_tokens", "n_bytes", "window", "stride", "n_windows"}``."""
    if not isinstance(text, str) or not text:
        raise ValueError("text_bits_per_byte needs a non-empty str")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    check_vocab(cfg, tokenizer)
    stride = max(1, window // 2) if stride is None else stride
    start = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    if start is None:
        raise ValueError(f"{type(tokenizer).__name__} has neither a BOS nor an EOS id to start the text")
    ids = np.asarray(tokenizer.encode(text), np.int32)
    stream = np.concatenate([[start], ids]).astype(np.int32)
    inputs, targets = stream[:-1], stream[1:]
    spans = window_spans(len(inputs), window, stride)
    W = min(window, len(inputs))
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else start
    rows_in = np.full((len(spans), W), pad, np.int32)
    rows_tg = np.zeros((len(spans), W), np.int32)
    rows_mask = np.zeros((len(spans), W), np.float32)
    for r, (begin, end, scored) in enumerate(spans):
        rows_in[r, :end - begin] = inputs[begin:end]
        rows_tg[r, :end - begin] = targets[begin:end]
        rows_mask[r, scored - begin:end - begin] = 1.0
    nll = 0.0
    for b in tqdm(range(0, len(spans), batch_size), desc="bits/byte", unit="batch", disable=not progress):
        sl = slice(b, b + batch_size)
        fill = batch_size - len(rows_in[sl])  # a fixed batch shape; filler rows are masked out
        take = lambda a: np.concatenate([a[sl], np.zeros((fill, W), a.dtype)]) if fill else a[sl]
        sums_B = _window_nll(params, jnp.asarray(take(rows_in)), jnp.asarray(take(rows_tg)),
                             jnp.asarray(take(rows_mask)), cfg)
        nll += float(np.sum(np.asarray(sums_B, np.float64)))
    n_tokens, n_bytes = int(len(ids)), len(text.encode("utf-8"))
    return {"bits_per_byte": nll / n_bytes / math.log(2), "bits_per_token": nll / n_tokens / math.log(2),
            "perplexity": math.exp(nll / n_tokens), "nll_nats": nll, "n_tokens": n_tokens,
            "n_bytes": n_bytes, "window": int(window), "stride": int(stride), "n_windows": len(spans)}
