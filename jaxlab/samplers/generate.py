"""Autoregressive generation over the cache of the model's family (:func:`jaxlab.models.module`:
the KV cache of :mod:`jaxlab.models.transformer`, the recurrent state of :mod:`jaxlab.models.mamba`).

    cache = init_cache(B, T + N);  logits_BTV, cache = prefill(prompt_BT, mask_BT)
    y_0 ~ q(. | logits_BTV[:, -1])                   (left padding: the last real token is at T-1)
    for i in 1 .. N-1 (while some row is not done):
        logits_BV, cache = decode_step(y_{i-1});   y_i ~ q(. | logits_BV)

q is the processed distribution of :func:`jaxlab.samplers.processors.process_logits`
(temperature, top-k, top-p, min-p); temperature 0 is greedy (argmax, lowest id among ties),
which is the t -> 0 limit of sampling at temperature t when the argmax is unique.

A row is done once it has emitted one of ``stop_tokens``; the stop token itself is part of the
output (mask 1). Done rows keep decoding (their cache rows are private to them), but every
later output slot holds ``sample_cfg.pad_id``, logprob 0 and mask 0. The loop is a
``lax.while_loop`` that ends after N tokens or as soon as every row is done.

Prompt lengths are bucketed: ``generate`` left-pads T up to ``prompt_bucket(T)`` (the next
power of two, at least 16) with masked slots, so prompts of new lengths in a bucket reuse one
compiled program; masked slots get no position and are never attended to, so the output is the
same as without the padding. The cache (``T_bucket + N`` slots, in the compute dtype) is
updated in place inside the jit-compiled loop; logits and log-probs are float32 whatever the
compute dtype.

Randomness: step i draws with ``fold_in(key, i)`` (one categorical draw per row from that key),
so the same key, prompts and configs give the same output.

Shared prompts (prefix reuse): ``samples_per_prompt = S`` samples S completions of each of B
prompts from one prefill. The prompt is run once per prompt; its cache rows and last logits are
repeated S times (row b * S + s is sample s of prompt b), and decoding runs on the B * S rows.
The draws are those of ``generate`` on the prompts each repeated S times, without S - 1 of the
S prefills.

Top log-probs: ``sample_cfg.top_logprobs = k`` also records, at every step, the k largest
log-probs of the model's raw distribution log_softmax(logits) (temperature 1, no filters),
descending: what trace confidences (DeepConf) are computed from.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import models
from jaxlab.models import transformer
from jaxlab.samplers.processors import process_logits


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """Sampling settings (frozen, hashable: static under jit; overridable with ``--set``).

    max_new_tokens: N, the number of generated slots per row (>= 1).
    temperature: >= 0; 0 = greedy (argmax).
    top_k: keep the k most likely tokens; 0 = off.
    top_p: nucleus mass in (0, 1]; 1 = off.
    min_p: keep tokens with prob >= min_p * max prob, in [0, 1]; 0 = off.
    stop_tokens: token ids that end a row (the stop token is kept in the output).
    pad_id: the token written into output slots after a row has stopped.
    top_logprobs: k, record the k largest raw-model log-probs at each step (0 = off).
    """

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    stop_tokens: tuple[int, ...] = ()
    pad_id: int = 0
    top_logprobs: int = 0

    def __post_init__(self):
        def is_int(x):
            return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

        def is_real(x):
            return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)

        if not is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise ValueError(f"sample.max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")
        if not is_real(self.temperature) or not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"sample.temperature must be a finite float >= 0 (0 = greedy), "
                             f"got {self.temperature!r}")
        if not is_int(self.top_k) or self.top_k < 0:
            raise ValueError(f"sample.top_k must be an int >= 0 (0 = off), got {self.top_k!r}")
        if not is_real(self.top_p) or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"sample.top_p must be in (0, 1] (1 = off), got {self.top_p!r}")
        if not is_real(self.min_p) or not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"sample.min_p must be in [0, 1] (0 = off), got {self.min_p!r}")
        for name in ("temperature", "top_p", "min_p"):  # 1 and 1.0 are one config
            object.__setattr__(self, name, float(getattr(self, name)))
        if isinstance(self.stop_tokens, (list, np.ndarray)):
            object.__setattr__(self, "stop_tokens", tuple(int(t) for t in self.stop_tokens))
        if not isinstance(self.stop_tokens, tuple) or not all(
                is_int(t) and t >= 0 for t in self.stop_tokens):
            raise ValueError(f"sample.stop_tokens must be a tuple of token ids >= 0, "
                             f"got {self.stop_tokens!r}")
        if not is_int(self.pad_id):
            raise ValueError(f"sample.pad_id must be an int, got {self.pad_id!r}")
        if not is_int(self.top_logprobs) or self.top_logprobs < 0:
            raise ValueError(f"sample.top_logprobs must be an int >= 0 (0 = off), got {self.top_logprobs!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class SampleOutput(NamedTuple):
    """Generated tokens of B rows, N = max_new_tokens slots each.

    tokens [B, N] int32: generated ids; ``pad_id`` after the row's stop token.
    logprobs [B, N] float32: log q(token) under the processed distribution it was drawn from
      (0 for greedy, a point mass); 0 at masked slots.
    model_logprobs [B, N] float32: log softmax(raw logits)[token] (temperature 1, no filters);
      0 at masked slots.
    mask [B, N] int32: 1 for generated tokens up to and including the stop token.
    lengths [B] int32: sum of mask over N.
    top_logprobs [B, N, k] float32: the k = ``top_logprobs`` largest log-probs of
      log_softmax(raw logits) at each step, descending; 0 at masked slots (k = 0: empty).
    """

    tokens: jax.Array
    logprobs: jax.Array
    model_logprobs: jax.Array
    mask: jax.Array
    lengths: jax.Array
    top_logprobs: jax.Array


def pad_prompts(prompts: list[list[int] | np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-pads prompts to the longest one: (tokens_BT int32, mask_BT int32 with 1 = real).

    Raises ValueError on an empty list, an empty prompt, or a prompt that is not a 1-D
    sequence of non-negative integer ids.
    """
    if len(prompts) == 0:
        raise ValueError("pad_prompts needs at least one prompt, got an empty list")
    rows = []
    for b, prompt in enumerate(prompts):
        row = np.asarray(prompt)
        if row.ndim != 1:
            raise ValueError(f"prompt {b} must be a 1-D sequence of token ids, got shape {row.shape}")
        if row.size == 0:
            raise ValueError(f"prompt {b} is empty; every prompt needs at least one token")
        if not np.issubdtype(row.dtype, np.integer):
            raise ValueError(f"prompt {b} must hold integer token ids, got dtype {row.dtype}")
        if row.min() < 0:
            raise ValueError(f"prompt {b} has a negative token id {row.min()}")
        rows.append(row)
    T = max(r.size for r in rows)
    tokens_BT = np.full((len(rows), T), pad_id, np.int32)
    mask_BT = np.zeros((len(rows), T), np.int32)
    for b, row in enumerate(rows):
        tokens_BT[b, T - row.size:] = row
        mask_BT[b, T - row.size:] = 1
    return tokens_BT, mask_BT


def sample_token(logits_BV: jax.Array, key: jax.Array, cfg: SampleConfig):
    """One draw per row: (token_B int32, logprob_B, model_logprob_B, top_logprobs_Bk).

    ``logprob`` is log q(token) under ``process_logits(logits, cfg)`` (0 for greedy);
    ``model_logprob`` is log_softmax(logits)[token]; ``top_logprobs`` the ``cfg.top_logprobs``
    largest values of log_softmax(logits), descending.
    """
    logits_BV = logits_BV.astype(jnp.float32)
    if cfg.greedy:
        token_B = jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
        logprob_B = jnp.zeros(token_B.shape, jnp.float32)
    else:
        logq_BV = process_logits(logits_BV, cfg)
        token_B = jax.random.categorical(key, logq_BV, axis=-1).astype(jnp.int32)
        logprob_B = jnp.take_along_axis(logq_BV, token_B[:, None], axis=-1)[:, 0]
    model_logp_BV = jax.nn.log_softmax(logits_BV, axis=-1)
    model_logprob_B = jnp.take_along_axis(model_logp_BV, token_B[:, None], axis=-1)[:, 0]
    if cfg.top_logprobs:
        top_Bk = jax.lax.top_k(model_logp_BV, min(cfg.top_logprobs, logits_BV.shape[-1]))[0]
    else:
        top_Bk = jnp.zeros((token_B.shape[0], 0), jnp.float32)
    return token_B, logprob_B, model_logprob_B, top_Bk


class _LoopState(NamedTuple):
    step: jax.Array  # the output slot the next iteration fills
    cache: dict
    token_B: jax.Array  # the token to feed next (the raw sample, also for done rows)
    done_B: jax.Array
    tokens_BN: jax.Array
    logprobs_BN: jax.Array
    model_logprobs_BN: jax.Array
    mask_BN: jax.Array
    top_BNk: jax.Array


def _is_stop(token_B: jax.Array, stop_tokens: tuple[int, ...]) -> jax.Array:
    if not stop_tokens:
        return jnp.zeros(token_B.shape, bool)
    return jnp.any(token_B[:, None] == jnp.asarray(stop_tokens, jnp.int32)[None, :], axis=-1)


def _record(state: _LoopState, token_B, logprob_B, model_logprob_B, top_Bk, cfg: SampleConfig) -> _LoopState:
    """Writes slot ``state.step`` (masked for rows already done) and advances the step."""
    live_B = ~state.done_B
    i = state.step
    put = lambda buf_BN, val_B: buf_BN.at[:, i].set(val_B.astype(buf_BN.dtype))
    return state._replace(
        step=i + 1,
        token_B=token_B,
        done_B=state.done_B | (live_B & _is_stop(token_B, cfg.stop_tokens)),
        tokens_BN=put(state.tokens_BN, jnp.where(live_B, token_B, cfg.pad_id)),
        logprobs_BN=put(state.logprobs_BN, jnp.where(live_B, logprob_B, 0.0)),
        model_logprobs_BN=put(state.model_logprobs_BN, jnp.where(live_B, model_logprob_B, 0.0)),
        mask_BN=put(state.mask_BN, live_B),
        top_BNk=state.top_BNk.at[:, i].set(jnp.where(live_B[:, None], top_Bk, 0.0)),
    )


def _generate(params: dict, model_cfg: transformer.Config, tokens_BT: jax.Array, mask_BT: jax.Array,
              key: jax.Array, sample_cfg: SampleConfig, samples_per_prompt: int = 1) -> SampleOutput:
    P, T = tokens_BT.shape
    N = sample_cfg.max_new_tokens
    # slots: T prompt + N - 1 fed samples (the last sample is never fed); one spare
    model = models.module(model_cfg)
    cache = model.init_cache(model_cfg, P, T + N)
    logits_B1V, cache = model.prefill(params, tokens_BT.astype(jnp.int32), model_cfg, cache,
                                      mask_BT=mask_BT.astype(jnp.int32), last_only=True)
    if samples_per_prompt > 1:  # one prefill per prompt; row b * S + s is its sample s
        cache = {name: value if model.CACHE_ROW_AXIS[name] is None else
                 jnp.repeat(value, samples_per_prompt, axis=model.CACHE_ROW_AXIS[name])
                 for name, value in cache.items()}
        logits_B1V = jnp.repeat(logits_B1V, samples_per_prompt, axis=0)
    B = P * samples_per_prompt
    K = min(sample_cfg.top_logprobs, model_cfg.vocab_size)
    state = _LoopState(
        step=jnp.zeros((), jnp.int32), cache=cache, token_B=jnp.zeros((B,), jnp.int32),
        done_B=jnp.zeros((B,), bool), tokens_BN=jnp.full((B, N), sample_cfg.pad_id, jnp.int32),
        logprobs_BN=jnp.zeros((B, N), jnp.float32), model_logprobs_BN=jnp.zeros((B, N), jnp.float32),
        mask_BN=jnp.zeros((B, N), jnp.int32), top_BNk=jnp.zeros((B, N, K), jnp.float32))
    state = _record(state, *sample_token(logits_B1V[:, -1], jax.random.fold_in(key, 0), sample_cfg),
                    sample_cfg)

    def cond(state: _LoopState):
        return (state.step < N) & ~jnp.all(state.done_B)

    def body(state: _LoopState):
        logits_BV, cache = model.decode_step(params, state.token_B, model_cfg, state.cache)
        sample = sample_token(logits_BV, jax.random.fold_in(key, state.step), sample_cfg)
        return _record(state._replace(cache=cache), *sample, sample_cfg)

    state = jax.lax.while_loop(cond, body, state)
    return SampleOutput(tokens=state.tokens_BN, logprobs=state.logprobs_BN,
                        model_logprobs=state.model_logprobs_BN, mask=state.mask_BN,
                        lengths=jnp.sum(state.mask_BN, axis=1), top_logprobs=state.top_BNk)


_generate_jit = jax.jit(_generate, static_argnames=("model_cfg", "sample_cfg", "samples_per_prompt"))

MIN_PROMPT_BUCKET = 16


def prompt_bucket(T: int) -> int:
    """The padded prompt length generate compiles for: max(16, 2^ceil(log2 T))."""
    return max(MIN_PROMPT_BUCKET, 1 << (int(T) - 1).bit_length())


def bucket_prompts(tokens_BT: jax.Array, mask_BT: jax.Array, pad_id: int) -> tuple[jax.Array, jax.Array]:
    """Left-pads left-padded prompts [B, T] to [B, prompt_bucket(T)] (tokens ``pad_id``, mask 0)."""
    extra = prompt_bucket(tokens_BT.shape[1]) - tokens_BT.shape[1]
    if extra == 0:
        return tokens_BT, mask_BT
    xp = np if isinstance(tokens_BT, np.ndarray) and isinstance(mask_BT, np.ndarray) else jnp
    return (xp.pad(tokens_BT, ((0, 0), (extra, 0)), constant_values=pad_id),
            xp.pad(mask_BT, ((0, 0), (extra, 0)), constant_values=0))


def _check_inputs(model_cfg, tokens_BT, mask_BT, sample_cfg):
    if not isinstance(sample_cfg, SampleConfig):
        raise TypeError(f"sample_cfg must be a SampleConfig, got {type(sample_cfg).__name__}")
    if tokens_BT.ndim != 2 or tokens_BT.shape[0] == 0 or tokens_BT.shape[1] == 0:
        raise ValueError(f"tokens_BT must be a non-empty [B, T] array, got shape {tokens_BT.shape}")
    if mask_BT.shape != tokens_BT.shape:
        raise ValueError(f"mask_BT shape {mask_BT.shape} differs from tokens_BT shape {tokens_BT.shape}")
    if not jnp.issubdtype(tokens_BT.dtype, jnp.integer):
        raise ValueError(f"tokens_BT must hold integer ids, got dtype {tokens_BT.dtype}")
    bad = [t for t in sample_cfg.stop_tokens if t >= model_cfg.vocab_size]
    if bad:
        raise ValueError(f"stop_tokens {bad} are outside the vocabulary [0, {model_cfg.vocab_size})")
    if isinstance(mask_BT, jax.core.Tracer):
        return  # values unknown under an outer jit; shapes were checked above
    if isinstance(mask_BT, jax.Array) and not mask_BT.is_fully_addressable:
        blocks = [np.asarray(s.data) for s in mask_BT.addressable_shards]  # rows on this process
    else:
        blocks = [np.asarray(mask_BT)]
    for mask in blocks:
        mask = mask.astype(bool)
        if not mask[:, -1].all():
            rows = np.flatnonzero(~mask[:, -1]).tolist()
            raise ValueError(f"rows {rows} have no real token at T-1: prompts must be left-padded "
                             "and non-empty (use pad_prompts)")
        if (np.diff(mask.astype(np.int8), axis=1) < 0).any():
            raise ValueError("mask_BT has a real token before a pad: prompts must be left-padded "
                             "(use pad_prompts)")


def generate(params: dict, model_cfg: transformer.Config, tokens_BT: jax.Array, mask_BT: jax.Array,
             key: jax.Array, sample_cfg: SampleConfig, samples_per_prompt: int = 1) -> SampleOutput:
    """Samples ``sample_cfg.max_new_tokens`` tokens after each left-padded prompt
    (``samples_per_prompt`` completions of each, from one prefill: module docstring).

    Args:
      params, model_cfg: a model of any family (:mod:`jaxlab.models`).
      tokens_BT: prompts left-padded to a common length T (see :func:`pad_prompts`).
      mask_BT: 1 for real prompt tokens, 0 for left padding.
      key: PRNG key; step i uses ``fold_in(key, i)`` (unused when greedy).
      sample_cfg: a :class:`SampleConfig` (static).
      samples_per_prompt: S >= 1 (static); the output has B * S rows, row b * S + s the
        s-th sample of prompt b.
    Returns:
      :class:`SampleOutput` with [B * S, N] tokens / logprobs / model_logprobs / mask, [B * S]
      lengths and [B * S, N, k] top_logprobs.

    Runs a jit-compiled function (``model_cfg`` and ``sample_cfg`` static) on prompts padded to
    ``prompt_bucket(T)`` (one compile per bucket, batch size and configs); callable inside an
    outer ``jax.jit``. Shapes are checked always, the left-padding of ``mask_BT`` only when its
    values are concrete.
    """
    _check_inputs(model_cfg, tokens_BT, mask_BT, sample_cfg)
    if isinstance(samples_per_prompt, bool) or not isinstance(samples_per_prompt, (int, np.integer)) \
            or samples_per_prompt < 1:
        raise ValueError(f"samples_per_prompt must be an int >= 1, got {samples_per_prompt!r}")
    tokens_BT, mask_BT = bucket_prompts(tokens_BT, mask_BT, sample_cfg.pad_id)
    return _generate_jit(params, model_cfg, tokens_BT, mask_BT, key, sample_cfg, int(samples_per_prompt))
