"""Scorers of candidate solutions, for best-of-N: a trained GenRM verifier's p("Yes"), or an
outcome reward model's p(correct) from a scalar head.

A scorer is any function ``score(problems, solutions) -> [N] float`` over N (problem,
solution) pairs, higher = more likely right; :func:`jaxlab.ttc.harness.run_methods` takes one
for its ``bon-rm`` method (best-of-k by the scorer's top score, ties averaged:
:mod:`jaxlab.ttc.best_of_n`).

GenRM (Zhang et al. 2024, "Generative Verifiers"): the verifier reads
``verification_record(problem, solution)`` (problem + solution + "Is the answer correct? ") and
the score is p("Yes") at the verdict position (:func:`jaxlab.losses.verifier.p_yes`) when the
first tokens of "Yes" and "No" differ, otherwise the whole-word two-way probability
(:func:`jaxlab.losses.verifier.p_yes_from_logprobs`). Train one with
``experiments/genrm_verifier.py``.

Outcome reward model (the discriminative verifier GenRM is compared with; Cobbe et al. 2021):
the same verification prompt through the model's trunk, and a linear head on the hidden state
h at the verdict position,

    z = w . h + b,    score = sigma(z) = p(correct),
    loss = binary cross-entropy(z, y) over (problem, solution, y = 1 if right else 0),

with params ``{"model": trunk, "head": {"kernel": [D], "bias": []}}`` (:func:`reward_init`,
:func:`reward_loss_sums` for :func:`jaxlab.train.fit.fit`, :func:`reward_scorer`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.analysis.displacement import unembedding_inputs
from jaxlab.data.chat import encode_record, pad_rows, verdict_ids, verification_record
from jaxlab.data.tokenizer import BYTES, Tokenizer
from jaxlab.losses.classifier import binary_cross_entropy, init_linear_head, linear_head
from jaxlab.losses.lm import sequence_logprobs
from jaxlab.losses.verifier import (first_target_index, first_token_decides, logits_at, p_yes,
                                    p_yes_from_logprobs, verdict_word_mask)
from jaxlab.models import transformer
from jaxlab.train.batch import apply_batch

Scorer = Callable[[Sequence[str], Sequence[str]], np.ndarray]


def verification_rows(problems: Sequence[str], solutions: Sequence[str], seq_len: int,
                      tokenizer: Tokenizer = BYTES, verdict: bool = True) -> dict:
    """Right-padded rows of the verification prompts with the "Yes" target (``verdict``;
    "No" otherwise), whose first target position is where the verdict is read."""
    return pad_rows([encode_record(verification_record(p, s, verdict), tokenizer)
                     for p, s in zip(problems, solutions)], seq_len, tokenizer)


def scoring_rows(problems: Sequence[str], solutions: Sequence[str], seq_len: int,
                 tokenizer: Tokenizer = BYTES) -> dict:
    """The rows :func:`genrm_scores` reads: "Yes" rows, plus "No" rows (``no_*``) when the
    verdicts' first tokens do not decide."""
    rows = verification_rows(problems, solutions, seq_len, tokenizer)
    if not first_token_decides(*verdict_ids(tokenizer)):
        no = verification_rows(problems, solutions, seq_len, tokenizer, verdict=False)
        rows.update({f"no_{k}": v for k, v in no.items()})
    return rows


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def genrm_scores(params, rows, model_cfg, yes_ids: tuple, no_ids: tuple):
    """p("Yes") of each verification row, [B]. ``rows``: :func:`scoring_rows`. When the first
    tokens decide: softmax(logits)[Y] at the verdict position; otherwise the whole-word
    probability exp(log p("Yes" tokens)) of the teacher-forced "Yes" row (the "No" rows,
    ``no_*``, give log p("No") for the two-way variant of p_yes_from_logprobs)."""
    logits = apply_batch(params, rows, model_cfg)
    if first_token_decides(yes_ids, no_ids):
        return p_yes(logits_at(logits, first_target_index(rows["mask"])), yes_ids[0], no_ids[0])
    logp_yes, _ = sequence_logprobs(logits, rows["targets"], verdict_word_mask(rows["mask"], len(yes_ids)))
    logp_no, _ = sequence_logprobs(apply_batch(params, rows, model_cfg, prefix="no_"), rows["no_targets"],
                                   verdict_word_mask(rows["no_mask"], len(no_ids)))
    return p_yes_from_logprobs(logp_yes, logp_no)


def scores_in_chunks(fn, rows: dict, chunk: int = 256) -> np.ndarray:
    """``fn`` over ``rows`` (a dict of [N, ...] arrays) in chunks of ``chunk`` rows, the last one
    padded to the same shape (one compilation), concatenated to [N]."""
    n = len(rows["inputs"])
    out = []
    for s in range(0, n, chunk):
        part = {k: v[s:s + chunk] for k, v in rows.items()}
        m = len(part["inputs"])
        if m < chunk:
            part = {k: np.concatenate([v, np.repeat(v[:1], chunk - m, axis=0)]) for k, v in part.items()}
        out.append(np.asarray(fn(part))[:m])
    return np.concatenate(out) if out else np.zeros(0)


def pair_scorer(score_pairs: Callable[[list, list], np.ndarray]) -> Scorer:
    """A :data:`Scorer` from ``score_pairs(problems, solutions)`` on non-empty lists of equal
    length: checks that the two sequences pair up and gives [] for none."""

    def score(problems: Sequence[str], solutions: Sequence[str]) -> np.ndarray:
        if len(problems) != len(solutions):
            raise ValueError(f"{len(problems)} problems but {len(solutions)} solutions")
        if not len(problems):
            return np.zeros(0)
        return score_pairs(list(problems), list(solutions))

    return score


def genrm_scorer(params, model_cfg, tokenizer: Tokenizer = BYTES, *, seq_len: int = 512, chunk: int = 64) -> Scorer:
    """A :data:`Scorer` giving a GenRM verifier's p("Yes") (module docstring); rows longer than
    ``seq_len`` tokens are an error (raise it rather than cut the verdict off)."""
    yes_no = verdict_ids(tokenizer)
    return pair_scorer(lambda problems, solutions: scores_in_chunks(
        lambda r: genrm_scores(params, r, model_cfg, *yes_no),
        scoring_rows(problems, solutions, seq_len, tokenizer), chunk))


def reward_init(trunk: dict, d_model: int) -> dict:
    """Reward-model params: the model ``trunk`` and a zero head (every score 1/2 at first)."""
    return {"model": trunk, "head": init_linear_head(d_model)}


def reward_param_axes(path: str) -> tuple:
    """Logical axes of :func:`reward_init`'s params (the trunk's as the transformer's)."""
    if path.startswith("model/"):
        return transformer.param_axes(path[len("model/"):])
    return {"head/kernel": ("embed",), "head/bias": ()}[path]


def reward_logits(params: dict, rows: dict, model_cfg) -> jax.Array:
    """The head's logit z = w . h + b at the verdict position of each row, float32 [B]
    (``rows``: :func:`verification_rows`)."""
    hidden_BTD = unembedding_inputs(params["model"], model_cfg, rows["inputs"],
                                    positions_BT=rows["positions"], segment_ids_BT=rows["segment_ids"])
    h_BD = logits_at(hidden_BTD, first_target_index(rows["mask"]))
    return linear_head(h_BD, params["head"]["kernel"], params["head"]["bias"])


def reward_loss_sums(params: dict, batch: dict, key=None, *, model_cfg) -> dict:
    """Binary cross-entropy of :func:`reward_logits` against ``batch["label"]`` (1 = right),
    summed over the rows, with the head's accuracy (z > 0 on right answers) and count = rows."""
    del key
    z_B = reward_logits(params, batch, model_cfg)
    y_B = batch["label"]
    return {"loss": jnp.sum(binary_cross_entropy(z_B, y_B)),
            "accuracy": jnp.sum(((z_B > 0) == (y_B > 0.5)).astype(jnp.float32)),
            "count": jnp.asarray(y_B.shape[0], jnp.float32)}


reward_logits_jit = jax.jit(reward_logits, static_argnums=2)


def reward_scorer(params: dict, model_cfg, tokenizer: Tokenizer = BYTES, *, seq_len: int = 512,
                  chunk: int = 64) -> Scorer:
    """A :data:`Scorer` giving an outcome reward model's p(correct) = sigma(z)."""

    def p_correct(problems: list, solutions: list) -> np.ndarray:
        rows = verification_rows(problems, solutions, seq_len, tokenizer)
        z = scores_in_chunks(lambda r: reward_logits_jit(params, r, model_cfg), rows, chunk)
        return 1.0 / (1.0 + np.exp(-z))

    return pair_scorer(p_correct)
