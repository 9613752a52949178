"""Generative verifiers (GenRM, Zhang et al. 2024): a verifier trained by next-token prediction
to answer "Yes" or "No" to "Is the answer correct? ", scored by the probability of "Yes".

Objective, over the tokens of two kinds of examples (:mod:`jaxlab.data.chat` builds both:
``verification_record`` and plain prompt/response records):

    L = L_SFT(D_verify) + lambda * L_SFT(D_correct)

    L_SFT(D_verify)   token-mean cross-entropy over the verdict targets ("Yes"/"No" + EOS,
                      or rationale + verdict + EOS for the CoT variant) of verification examples
    L_SFT(D_correct)  token-mean cross-entropy over the solution targets of correct solutions

Each term is a token mean over its own tokens. :func:`genrm_sums` returns both numerators and
both counts; :func:`genrm_objective` combines them once the sums cover the whole step, or, with
``counts`` = the step's totals (known from the masks before the forward pass), gives each
micro-batch's exact share, so that shares add up to L in value and gradient.

Score. The verdict is read at the position whose target is the first verdict token (the last
prompt token), :func:`first_target_index`. "Yes" and "No" are one token or several depending
on the tokenizer (:func:`jaxlab.data.chat.verdict_ids`); when their first tokens differ
(:func:`first_token_decides`, e.g. bytes "Y" / "N"), that position decides the verdict:

    p_Yes = softmax(logits)[Y]                       over="vocab"  (the paper's p(Yes))
    p_Yes = p[Y] / (p[Y] + p[N]) = sigma(z_Y - z_N)   over="yes_no" (two-way, ignores the mass
                                                                    on every other token)

with Y, N the first ids of the two words. Otherwise the score takes whole-word log-probs
(log p("Yes"), log p("No"): :func:`jaxlab.losses.lm.sequence_logprobs` of two teacher-forced
rows over :func:`verdict_word_mask`) in :func:`p_yes_from_logprobs`. GenRM-CoT averages over K
sampled rationales: r = (1 / K) sum_k p_Yes(x, y, v_k) (:func:`p_yes_mean`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlab.losses.lm import cross_entropy_sums

OVER = ("vocab", "yes_no")


def _check_over(over: str) -> None:
    if over not in OVER:
        raise ValueError(f"over={over!r} is not one of {', '.join(map(repr, OVER))}")


# ---------------------------------------------------------------- objective

def genrm_sums(logits_BTV: jax.Array, targets_BT: jax.Array, verify_mask_BT: jax.Array,
               correct_mask_BT: jax.Array) -> dict:
    """Sums of the two GenRM terms over one batch (verification and correct-solution targets
    may share rows, or come from separate rows with the other mask 0):

        verify_nll, verify_correct, verify_count      over verify_mask
        correct_nll, correct_correct, correct_count   over correct_mask
    (``*_correct``: targets that are the argmax). Add across micro-batches and devices."""
    v = cross_entropy_sums(logits_BTV, targets_BT, verify_mask_BT)
    c = cross_entropy_sums(logits_BTV, targets_BT, correct_mask_BT)
    return {"verify_nll": v["nll"], "verify_correct": v["correct"], "verify_count": v["count"],
            "correct_nll": c["nll"], "correct_correct": c["correct"], "correct_count": c["count"]}


def genrm_objective(sums: dict, *, lam: float, counts: tuple | None = None):
    """L = verify_nll / N_v + lam * correct_nll / N_c. Returns (loss, metrics).

    N_v, N_c are ``sums``' counts (exact when ``sums`` cover the step), or ``counts`` = (N_v,
    N_c) given, the totals of the whole step: then each micro-batch's value is its exact share
    of L and the shares add up to L. A zero count makes its term 0. Metrics: verify_nll,
    correct_nll (token means of each term), verify_accuracy, correct_accuracy, verify_count,
    correct_count (the counts used)."""
    if isinstance(lam, (int, float)) and lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    raw_v, raw_c = (sums["verify_count"], sums["correct_count"]) if counts is None else counts
    raw_v, raw_c = jnp.asarray(raw_v, jnp.float32), jnp.asarray(raw_c, jnp.float32)
    n_v, n_c = jnp.maximum(raw_v, 1.0), jnp.maximum(raw_c, 1.0)
    verify, correct = sums["verify_nll"] / n_v, sums["correct_nll"] / n_c
    metrics = {"verify_nll": verify, "correct_nll": correct,
               "verify_accuracy": sums["verify_correct"] / n_v,
               "correct_accuracy": sums["correct_correct"] / n_c,
               "verify_count": raw_v, "correct_count": raw_c}
    return verify + lam * correct, metrics


def genrm_loss(logits_BTV: jax.Array, targets_BT: jax.Array, verify_mask_BT: jax.Array,
               correct_mask_BT: jax.Array, *, lam: float):
    """L_SFT(D_verify) + lam * L_SFT(D_correct) of one batch. Returns (loss, metrics)."""
    return genrm_objective(genrm_sums(logits_BTV, targets_BT, verify_mask_BT, correct_mask_BT),
                           lam=lam)


# ---------------------------------------------------------------- score

def first_target_index(mask_BT: jax.Array) -> jax.Array:
    """Index of the first masked target of each row, [B] int32: the position whose logits
    predict the first response token (0 for a row without any)."""
    return jnp.argmax(jnp.asarray(mask_BT) > 0, axis=-1).astype(jnp.int32)


def logits_at(logits_BTV: jax.Array, index_B: jax.Array) -> jax.Array:
    """logits_BTV[b, index_b] for every row b, [B, V]."""
    return jnp.take_along_axis(logits_BTV, index_B[:, None, None].astype(jnp.int32), axis=1)[:, 0]


def first_token_decides(yes_ids: tuple[int, ...], no_ids: tuple[int, ...]) -> bool:
    """True when the verdicts' first tokens differ, so the first position's logits decide."""
    if not yes_ids or not no_ids:
        raise ValueError(f"verdict words need at least one token each, got {yes_ids}, {no_ids}")
    return yes_ids[0] != no_ids[0]


def verdict_word_mask(mask_BT: jax.Array, n_word: int) -> jax.Array:
    """The first ``n_word`` masked targets of each row (the verdict word of a teacher-forced
    verification row, without the end-of-turn tokens that follow it), [B, T] float32."""
    mask_BT = jnp.asarray(mask_BT, jnp.float32)
    return mask_BT * (jnp.cumsum(mask_BT > 0, axis=-1) <= n_word)


def p_yes(logits_V: jax.Array, yes_id: int, no_id: int, *, over: str = "vocab") -> jax.Array:
    """p(Yes) from the logits at the verdict position; any leading shape ([..., V] -> [...]):

        over="vocab":   exp(z_Y) / sum_v exp(z_v)
        over="yes_no":  exp(z_Y) / (exp(z_Y) + exp(z_N)) = sigma(z_Y - z_N)
    """
    _check_over(over)
    logits_V = jnp.asarray(logits_V, jnp.float32)
    if over == "yes_no":
        return jax.nn.sigmoid(logits_V[..., yes_id] - logits_V[..., no_id])
    return jnp.exp(logits_V[..., yes_id] - jax.nn.logsumexp(logits_V, axis=-1))


def p_yes_from_logprobs(logp_yes: jax.Array, logp_no: jax.Array, *, over: str = "vocab") -> jax.Array:
    """p(Yes) from log-probs of the whole verdict words (any shape):

        over="vocab":   exp(log p(Yes))
        over="yes_no":  p(Yes) / (p(Yes) + p(No)) = sigma(log p(Yes) - log p(No))
    """
    _check_over(over)
    logp_yes = jnp.asarray(logp_yes, jnp.float32)
    if over == "yes_no":
        return jax.nn.sigmoid(logp_yes - jnp.asarray(logp_no, jnp.float32))
    return jnp.exp(logp_yes)


def p_yes_mean(p_BK: jax.Array, mask_BK: jax.Array | None = None) -> jax.Array:
    """GenRM-CoT / majority-vote score: the mean of p(Yes) over the K rationales of each
    candidate, r_b = sum_k m_bk p_bk / sum_k m_bk ([B, K] -> [B]); ``mask_BK`` drops rationales
    (e.g. ones that did not reach a verdict). A candidate without any scores 0."""
    p_BK = jnp.asarray(p_BK, jnp.float32)
    mask_BK = jnp.ones_like(p_BK) if mask_BK is None else jnp.asarray(mask_BK, jnp.float32)
    return jnp.sum(p_BK * mask_BK, axis=-1) / jnp.maximum(jnp.sum(mask_BK, axis=-1), 1.0)
