"""Reflect, Retry, Reward: after a failed first attempt the model writes a reflection and
tries again; when the retry succeeds, only the reflection tokens are rewarded.

A failed attempt ``a`` at prompt ``x`` becomes the context

    c = encode_prompt(x) + a + REFLECT_PROMPT       (bytes: [BOS] + x + a + REFLECT_PROMPT)

The model continues c with a reflection ``f`` (up to a token that holds a newline, a stop id
of the tokenizer, or the reflection length limit: :func:`reflect_stop_tokens`), then ``RETRY_PROMPT`` is appended (its leading newline dropped when f ended with one)
and the model writes a second answer ``y``. The reward of the sample is whether y solves x,
advantages are taken over the G reflections of one failed attempt, and the loss mask covers f
only: the retry answer and the fixed prompts are context, never trained. Every function takes
the tokenizer (default: bytes).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from jaxlab.data.chat import encode_prompt
from jaxlab.data.tokenizer import BYTES, Tokenizer, ids_containing, text_ids
from jaxlab.models import transformer
from jaxlab.rl.rollout import decode_response, sample_completions
from jaxlab.samplers import SampleConfig

REFLECT_PROMPT = "\nWrong. Reflect:"
RETRY_PROMPT = "\nRetry:"


def reflect_stop_tokens(tokenizer: Tokenizer = BYTES) -> tuple[int, ...]:
    """Where a reflection stops: every id whose text holds a newline, then the stop ids
    (bytes: (10, EOS))."""
    return tuple(dict.fromkeys(ids_containing(tokenizer, "\n") + tuple(tokenizer.eos_ids)))


def reflection_context(prompt: str, attempt_ids: np.ndarray, tokenizer: Tokenizer = BYTES) -> np.ndarray:
    """Tokens ``encode_prompt(prompt) + attempt + REFLECT_PROMPT`` that a reflection
    continues; ``attempt_ids`` are the generated ids of the first attempt (the stop token and
    other special ids are dropped, so the context length is bounded by the generation limit)."""
    reflect = tokenizer.encode(REFLECT_PROMPT)
    return np.concatenate([encode_prompt(prompt, tokenizer), text_ids(tokenizer, attempt_ids),
                           reflect]).astype(np.int32)


def retry_suffix(reflection_tokens: np.ndarray, tokenizer: Tokenizer = BYTES) -> np.ndarray:
    """The tokens of RETRY_PROMPT, without its newline when the reflection's text ended with
    one."""
    ended = tokenizer.decode(reflection_tokens, stop_at_eos=True).endswith("\n")
    return np.asarray(tokenizer.encode(RETRY_PROMPT[1:] if ended else RETRY_PROMPT), np.int32)


def reflect_and_retry(params: dict, model_cfg: transformer.Config, contexts: Sequence[np.ndarray],
                      key: jax.Array, *, reflect_cfg: SampleConfig, answer_cfg: SampleConfig,
                      tokenizer: Tokenizer = BYTES) -> dict:
    """Samples a reflection (stopping at ``reflect_cfg.stop_tokens``, e.g. newline and EOS)
    and then a retry answer for each context. Returns per row lists: ``reflection`` tokens and
    their sampled ``reflection_logp``, ``suffix`` (the retry prompt tokens), ``answer`` tokens
    with ``answer_logp``, the decoded ``answer_text``, and ``truncated`` (the answer hit its
    limit without a stop token)."""
    k_reflect, k_answer = jax.random.split(key)
    refl = sample_completions(params, model_cfg, contexts, k_reflect, reflect_cfg)
    reflections = [refl["tokens"][b, :n] for b, n in enumerate(refl["lengths"])]
    suffixes = [retry_suffix(f, tokenizer) for f in reflections]
    retry_contexts = [np.concatenate([c, f, s]).astype(np.int32)
                      for c, f, s in zip(contexts, reflections, suffixes)]
    ans = sample_completions(params, model_cfg, retry_contexts, k_answer, answer_cfg)
    return {
        "reflection": reflections,
        "reflection_logp": [refl["logprobs"][b, :n] for b, n in enumerate(refl["lengths"])],
        "suffix": suffixes,
        "answer": [ans["tokens"][b, :n] for b, n in enumerate(ans["lengths"])],
        "answer_logp": [ans["logprobs"][b, :n] for b, n in enumerate(ans["lengths"])],
        "answer_text": [decode_response(t, m, tokenizer) for t, m in zip(ans["tokens"], ans["mask"])],
        "truncated": ans["truncated"],
    }


def reflection_responses(out: dict) -> tuple[list, list, list]:
    """(tokens, loss masks, log-probs) of reflection + retry prompt + answer rows whose loss
    mask covers the reflection only (input to :func:`jaxlab.rl.rollout.build_rows`)."""
    tokens, masks, logps = [], [], []
    for f, f_logp, s, y in zip(out["reflection"], out["reflection_logp"], out["suffix"], out["answer"]):
        tokens.append(np.concatenate([f, s, y]).astype(np.int32))
        masks.append(np.concatenate([np.ones(len(f)), np.zeros(len(s) + len(y))]).astype(np.float32))
        logps.append(np.concatenate([f_logp, np.zeros(len(s) + len(y))]).astype(np.float32))
    return tokens, masks, logps
