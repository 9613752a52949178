"""Logits processors: pure functions ``logits_BV -> logits_BV`` (float32).

A filter keeps a set of tokens and sets every other logit to ``-inf``; softmax of the result is
the kept tokens' distribution renormalised. With p = softmax(logits):

    temperature t:   logits / t                                   (t > 0)
    top-k k:         keep the k largest logits (ties: the lower token id wins, so exactly k
                     tokens are kept); k = 0 or k >= V keeps all
    top-p (nucleus): sort by logit descending (ties: lower id first); keep token j if the
                     mass of the tokens strictly before it is < p_top: the smallest prefix
                     whose mass is >= p_top; the top token is always kept; p_top = 1 keeps all
    min-p:           keep tokens with p_v >= min_p * max_v p_v; the top token is always kept

:func:`process_logits` applies temperature, then top-k, top-p and min-p in that order (each
filter sees the distribution renormalised by the previous ones) and returns the
log-probabilities of the distribution a sampler draws from. Temperature 0 means greedy: the
point mass on the argmax (lowest id among ties), the limit of the t -> 0 distribution when the
argmax is unique.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

if TYPE_CHECKING:  # avoids an import cycle; process_logits only reads the fields
    from jaxlab.samplers.generate import SampleConfig


def _is_static_number(x) -> bool:
    return isinstance(x, (int, float))


def apply_temperature(logits_BV: jax.Array, temperature: float) -> jax.Array:
    """logits / temperature (temperature > 0; use :func:`greedy_logprobs` for 0)."""
    if _is_static_number(temperature) and not temperature > 0:
        raise ValueError(f"temperature must be > 0 here (0 is greedy), got {temperature}")
    return logits_BV.astype(jnp.float32) / temperature


def top_k_mask(logits_BV: jax.Array, k: int) -> jax.Array:
    """Bool [B, V]: True for the k largest logits of each row, exactly k of them.

    Ties are broken towards the lower token id (``lax.top_k`` order). ``k`` is a Python int;
    k = 0 (off) or k >= V keeps every token.
    """
    B, V = logits_BV.shape
    if k < 0:
        raise ValueError(f"top_k must be >= 0, got {k}")
    if k == 0 or k >= V:
        return jnp.ones((B, V), bool)
    _, idx_Bk = jax.lax.top_k(logits_BV, k)
    return jnp.zeros((B, V), bool).at[jnp.arange(B)[:, None], idx_Bk].set(True)


def top_k_filter(logits_BV: jax.Array, k: int) -> jax.Array:
    """Logits with all but the k largest of each row set to -inf (see :func:`top_k_mask`)."""
    return jnp.where(top_k_mask(logits_BV, k), logits_BV, -jnp.inf)


def top_p_mask(logits_BV: jax.Array, p: float | jax.Array) -> jax.Array:
    """Bool [B, V]: the nucleus of each row, the smallest set of most probable tokens whose
    probability mass is >= p.

    With tokens sorted by logit descending (stable: ties in lower-id-first order; the logit
    order is the probability order, without softmax rounding), ``sorted_j`` their probs and
    ``mass_before_j = sum_{i<j} sorted_i``, token j is kept iff ``mass_before_j < p``. So the
    kept mass is >= p, dropping the least probable kept token leaves < p, and the top token
    (mass before = 0) is always kept; tokens of probability 0 (logit -inf) are never kept.
    p >= 1 (a Python number) keeps every token.
    """
    B, V = logits_BV.shape
    if _is_static_number(p):
        if not 0.0 < p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {p}")
        if p >= 1.0:
            return jnp.ones((B, V), bool)
    logits_BV = logits_BV.astype(jnp.float32)
    probs_BV = jax.nn.softmax(logits_BV, axis=-1)
    order_BV = jnp.argsort(-logits_BV, axis=-1, stable=True)
    sorted_BV = jnp.take_along_axis(probs_BV, order_BV, axis=-1)
    cumsum_BV = jnp.cumsum(sorted_BV, axis=-1)
    mass_before_BV = jnp.concatenate([jnp.zeros_like(cumsum_BV[:, :1]), cumsum_BV[:, :-1]], axis=-1)
    # zero-probability tokens (already filtered, or underflowed) never join the nucleus
    keep_sorted_BV = (mass_before_BV < p) & (sorted_BV > 0)
    return jnp.zeros((B, V), bool).at[jnp.arange(B)[:, None], order_BV].set(keep_sorted_BV)


def top_p_filter(logits_BV: jax.Array, p: float | jax.Array) -> jax.Array:
    """Logits outside the nucleus of mass p set to -inf (see :func:`top_p_mask`)."""
    return jnp.where(top_p_mask(logits_BV, p), logits_BV, -jnp.inf)


def min_p_mask(logits_BV: jax.Array, min_p: float | jax.Array) -> jax.Array:
    """Bool [B, V]: tokens with prob >= min_p * (max prob of the row); 0 keeps all, 1 keeps
    only the top token(s)."""
    B, V = logits_BV.shape
    if _is_static_number(min_p):
        if not 0.0 <= min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        if min_p == 0.0:
            return jnp.ones((B, V), bool)
    probs_BV = jax.nn.softmax(logits_BV.astype(jnp.float32), axis=-1)
    return probs_BV >= min_p * jnp.max(probs_BV, axis=-1, keepdims=True)


def min_p_filter(logits_BV: jax.Array, min_p: float | jax.Array) -> jax.Array:
    """Logits of tokens with prob < min_p * max prob set to -inf (see :func:`min_p_mask`)."""
    return jnp.where(min_p_mask(logits_BV, min_p), logits_BV, -jnp.inf)


def greedy_logprobs(logits_BV: jax.Array) -> jax.Array:
    """Log-probs of the greedy point mass: 0 at the argmax (lowest id among ties), -inf else."""
    V = logits_BV.shape[-1]
    top_B = jnp.argmax(logits_BV, axis=-1)
    return jnp.where(jnp.arange(V)[None, :] == top_B[:, None], 0.0, -jnp.inf).astype(jnp.float32)


def process_logits(logits_BV: jax.Array, cfg: SampleConfig) -> jax.Array:
    """Log-probabilities [B, V] (float32) of the distribution sampled from under ``cfg``:

        log_softmax(min_p(top_p(top_k(logits / temperature))))

    filtered tokens get -inf. ``cfg.temperature == 0`` gives :func:`greedy_logprobs` (the
    filters never remove the argmax, so they do not change it).
    """
    logits_BV = logits_BV.astype(jnp.float32)
    if cfg.temperature == 0:
        return greedy_logprobs(logits_BV)
    # Shifted by the row's maximum before dividing (every step below is shift-invariant): the
    # most likely token is then exactly 0 however XLA rounds or recomputes the division, so a
    # tiny temperature gives a point mass with log-probability 0. Dividing first, values of
    # ~1e6 rounded differently in two fusions would put errors of ~0.1 into the log-probs.
    logits_BV = logits_BV - jnp.max(logits_BV, axis=-1, keepdims=True)
    logits_BV = apply_temperature(logits_BV, cfg.temperature)
    logits_BV = top_k_filter(logits_BV, cfg.top_k)
    logits_BV = top_p_filter(logits_BV, cfg.top_p)
    logits_BV = min_p_filter(logits_BV, cfg.min_p)
    return jax.nn.log_softmax(logits_BV, axis=-1)
