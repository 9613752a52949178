"""Reflect, Retry, Reward (Bensal et al. 2025, "Reflect, Retry, Reward: Self-Improving LLMs via
Reinforcement Learning"): after a failed first attempt the model writes a reflection and tries
again; when the retry succeeds, only the reflection tokens are rewarded.

A failed attempt ``a`` at prompt ``x`` becomes a context ``c`` the model continues with a
reflection ``f``; then a retry suffix ``s`` is appended and the model writes a second answer
``y``. The reward of the sample is whether y solves x, advantages are taken over the G
reflections of one failed attempt, and the loss mask covers f only (:func:`reflection_responses`):
the retry answer and the fixed prompts are context, never trained. Two layouts
(:class:`Layout`):

``INLINE`` (the byte models' format; one stream, no turns)::

    c = encode_prompt(x) + a + "\\nWrong. Reflect:"        (bytes: [BOS] + x + a + ...)
    f stops at a token that holds a newline, a stop id, or the reflection length limit
    s = "\\nRetry:"   (its leading newline dropped when f ended with one)

``TURNS`` (a conversation under the tokenizer's chat template, e.g. ChatML)::

    c = encode_prompt(x)              system (the template's default) + user x + assistant header
        + a + END                     the failed attempt closes its assistant turn
        + USER(reflect_text) + GEN    a user turn asks for the reflection; the assistant header
    f stops at a stop id (the end of the assistant's turn) or the length limit
    s = [END, unless f ended with a stop id] + USER(retry_text) + GEN

with END = the template's turn end and what follows it (ChatML "<|im_end|>" + "\\n"; plain: the
EOS id), USER(t) = the user header + t + the template's suffix (ChatML "<|im_start|>user\\n" t
"<|im_end|>\\n"; plain "User: " t "\\n"), GEN = the generation prompt (ChatML
"<|im_start|>assistant\\n"; plain "Assistant: "). The attempt's own ids are kept (special ids
dropped), so the context is the conversation the model actually produced: when the attempt is
the canonical encoding of its text and x is a messages list ending in a user turn (or a text
prompt under a template that makes it one, ChatML), ``c`` equals
``encode_prompt(x + [assistant a, user reflect_text])`` (:mod:`jaxlab.data.chat`).

Every function takes the tokenizer (default: bytes) and the layout (default: INLINE).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import jax
import numpy as np

from jaxlab.data.chat import encode_prompt, turn_end
from jaxlab.data.tokenizer import BYTES, Tokenizer, ids_containing, text_ids
from jaxlab.models import transformer
from jaxlab.rl.rollout import decode_response, sample_completions
from jaxlab.samplers import SampleConfig

REFLECT_PROMPT = "\nWrong. Reflect:"
RETRY_PROMPT = "\nRetry:"


@dataclasses.dataclass(frozen=True)
class Layout:
    """How the reflection and the retry are asked for (module docstring): ``kind`` "inline"
    (``reflect_text`` / ``retry_text`` are appended to the stream as they are) or "turns"
    (they are user turns of the chat template)."""
    kind: Literal["inline", "turns"] = "inline"
    reflect_text: str = REFLECT_PROMPT
    retry_text: str = RETRY_PROMPT

    def __post_init__(self):
        if self.kind not in ("inline", "turns"):
            raise ValueError(f"layout kind must be 'inline' or 'turns', got {self.kind!r}")
        if not self.reflect_text or not self.retry_text:
            raise ValueError("a layout needs a non-empty reflect_text and retry_text")


INLINE = Layout()
TURNS = Layout("turns", reflect_text="Your answer is wrong. Reflect on what went wrong.",
               retry_text="Try again.")


def reflect_stop_tokens(tokenizer: Tokenizer = BYTES, layout: Layout = INLINE) -> tuple[int, ...]:
    """Where a reflection stops. INLINE: every id whose text holds a newline, then the stop
    ids (bytes: (10, EOS)). TURNS: the stop ids (the end of the assistant's turn; a reflection
    may span lines)."""
    if layout.kind == "turns":
        return tuple(int(i) for i in tokenizer.eos_ids)
    return tuple(dict.fromkeys(ids_containing(tokenizer, "\n") + tuple(tokenizer.eos_ids)))


def _ids(tokenizer: Tokenizer, text: str) -> np.ndarray:
    return np.asarray(tokenizer.encode(text), np.int32).reshape(-1)


def end_of_turn(tokenizer: Tokenizer = BYTES) -> np.ndarray:
    """The ids that close an assistant turn and lead to the next message: the template's turn
    end and its text after the end (ChatML "<|im_end|>" + "\\n"; plain: [EOS id])."""
    template = tokenizer.chat_template
    after = _ids(tokenizer, template.after_end) if template.after_end else np.zeros(0, np.int32)
    return np.concatenate([turn_end(tokenizer), after]).astype(np.int32)


def user_turn(text: str, tokenizer: Tokenizer = BYTES) -> np.ndarray:
    """A user message and the assistant header that answers it: USER(text) + GEN (module
    docstring), encoded as :func:`jaxlab.data.chat.render_messages` encodes those pieces."""
    template = tokenizer.chat_template
    return np.concatenate([_ids(tokenizer, template.header("user") + text + template.suffix),
                           _ids(tokenizer, template.generation_prompt)]).astype(np.int32)


def reflection_context(prompt, attempt_ids: np.ndarray, tokenizer: Tokenizer = BYTES,
                       layout: Layout = INLINE) -> np.ndarray:
    """The tokens a reflection continues (module docstring), int32 [T]: INLINE
    ``encode_prompt(prompt) + attempt + reflect_text``; TURNS ``encode_prompt(prompt) + attempt
    + END + USER(reflect_text) + GEN``. ``attempt_ids`` are the generated ids of the first
    attempt (its stop token and other special ids are dropped, so the context length is
    bounded by the generation limit)."""
    head = [encode_prompt(prompt, tokenizer), text_ids(tokenizer, attempt_ids)]
    if layout.kind == "turns":
        tail = [end_of_turn(tokenizer), user_turn(layout.reflect_text, tokenizer)]
    else:
        tail = [_ids(tokenizer, layout.reflect_text)]
    return np.concatenate(head + tail).astype(np.int32)


def retry_suffix(reflection_tokens: np.ndarray, tokenizer: Tokenizer = BYTES,
                 layout: Layout = INLINE) -> np.ndarray:
    """The tokens between a reflection and the retry answer. INLINE: ``retry_text``, without
    its leading newline when the reflection's text ended with one. TURNS: END (only the text
    after the turn end when the reflection ended with a stop id) + USER(retry_text) + GEN."""
    f = np.asarray(reflection_tokens).reshape(-1)
    if layout.kind == "turns":
        template = tokenizer.chat_template
        stopped = f.size > 0 and int(f[-1]) in tuple(int(i) for i in tokenizer.eos_ids)
        close = (_ids(tokenizer, template.after_end) if template.after_end else np.zeros(0, np.int32)) \
            if stopped else end_of_turn(tokenizer)
        return np.concatenate([close, user_turn(layout.retry_text, tokenizer)]).astype(np.int32)
    ended = tokenizer.decode(f, stop_at_eos=True).endswith("\n")
    text = layout.retry_text
    return _ids(tokenizer, text[1:] if ended and text.startswith("\n") else text)


def max_row_tokens(prompt_tokens: int, answer_tokens: int, reflect_tokens: int,
                   tokenizer: Tokenizer = BYTES, layout: Layout = INLINE) -> int:
    """An upper bound on the training-row columns of one reflect sample (the stream
    context + f + s + y, less one, as :func:`jaxlab.rl.rollout.build_rows` lays it out) for a
    prompt of ``prompt_tokens`` tokens, attempts and retries of at most ``answer_tokens``
    and reflections of at most ``reflect_tokens``:

        INLINE  P + N + |reflect_text| + R + |retry_text| + N - 1
        TURNS   P + N + |END| + |USER(reflect_text) + GEN| + R + |END| + |USER(retry_text) + GEN| + N - 1
    """
    if layout.kind == "turns":
        fixed = (2 * len(end_of_turn(tokenizer)) + len(user_turn(layout.reflect_text, tokenizer))
                 + len(user_turn(layout.retry_text, tokenizer)))
    else:
        fixed = len(_ids(tokenizer, layout.reflect_text)) + len(_ids(tokenizer, layout.retry_text))
    return prompt_tokens + 2 * answer_tokens + reflect_tokens + fixed - 1


def reflect_and_retry(params: dict, model_cfg: transformer.Config, contexts: Sequence[np.ndarray],
                      key: jax.Array, *, reflect_cfg: SampleConfig, answer_cfg: SampleConfig,
                      tokenizer: Tokenizer = BYTES, layout: Layout = INLINE,
                      batch_size: int | None = None) -> dict:
    """Samples a reflection (stopping at ``reflect_cfg.stop_tokens``: :func:`reflect_stop_tokens`)
    and then a retry answer for each context. Returns per row lists: ``reflection`` tokens and
    their sampled ``reflection_logp``, ``suffix`` (the retry prompt tokens), ``answer`` tokens
    with ``answer_logp``, the decoded ``reflection_text`` and ``answer_text``, and ``truncated``
    (the answer hit its limit without a stop token). ``batch_size``: sample in chunks of that
    many rows (:func:`jaxlab.rl.rollout.sample_completions`)."""
    k_reflect, k_answer = jax.random.split(key)
    refl = sample_completions(params, model_cfg, contexts, k_reflect, reflect_cfg, batch_size=batch_size)
    reflections = [refl["tokens"][b, :n] for b, n in enumerate(refl["lengths"])]
    suffixes = [retry_suffix(f, tokenizer, layout) for f in reflections]
    retry_contexts = [np.concatenate([c, f, s]).astype(np.int32)
                      for c, f, s in zip(contexts, reflections, suffixes)]
    ans = sample_completions(params, model_cfg, retry_contexts, k_answer, answer_cfg, batch_size=batch_size)
    return {
        "reflection": reflections,
        "reflection_logp": [refl["logprobs"][b, :n] for b, n in enumerate(refl["lengths"])],
        "reflection_text": [tokenizer.decode(f, stop_at_eos=True) for f in reflections],
        "suffix": suffixes,
        "answer": [ans["tokens"][b, :n] for b, n in enumerate(ans["lengths"])],
        "answer_logp": [ans["logprobs"][b, :n] for b, n in enumerate(ans["lengths"])],
        "answer_text": [decode_response(t, m, tokenizer) for t, m in zip(ans["tokens"], ans["mask"])],
        "truncated": ans["truncated"],
    }


def reflection_responses(out: dict) -> tuple[list, list, list]:
    """(tokens, loss masks, log-probs) of reflection + retry prompt + answer rows whose loss
    mask covers the reflection only (its stop token included; input to
    :func:`jaxlab.rl.rollout.build_rows`)."""
    tokens, masks, logps = [], [], []
    for f, f_logp, s, y in zip(out["reflection"], out["reflection_logp"], out["suffix"], out["answer"]):
        tokens.append(np.concatenate([f, s, y]).astype(np.int32))
        masks.append(np.concatenate([np.ones(len(f)), np.zeros(len(s) + len(y))]).astype(np.float32))
        logps.append(np.concatenate([f_logp, np.zeros(len(s) + len(y))]).astype(np.float32))
    return tokens, masks, logps
