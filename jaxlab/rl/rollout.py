"""Rollouts: G sampled completions per prompt, scored by the task verifiers, laid out as
training rows with the log-probs they were sampled with.

Every function takes the tokenizer (:class:`jaxlab.data.tokenizer.Tokenizer`; default:
bytes): prompts are encoded with its chat template, completions decoded by it and stopped at
its ``eos_ids``, rows padded with its ``pad_id``.

Row layout (W columns, one completion per row, right padding). With the prompt tokens
``p = encode_prompt(prompt)`` (length P; bytes: [BOS] + prompt bytes) and the n generated tokens ``y`` (the stop token
included), the row's stream is ``s = p + y`` and, as in the LM pipeline,

    inputs_W   = s[:W]               (padded with PAD)
    targets_W  = s[1:W + 1]          (the token each position predicts)
    mask_W     = 1 at columns P - 1 .. P + n - 2, the targets that are generated tokens
    old_logp_W = the sampler's log q(y_j) at the column of y_j
    positions  = 0 .. W - 1,  segment_ids = 1 on real tokens, 0 on padding

so :func:`policy_logprobs` recomputes ``log q(targets)`` under the same processed
distribution q (temperature, top-k, top-p, min-p) that the sampler drew from; for the params
that sampled it equals ``old_logp`` (up to float rounding).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import tasks as tasks_lib
from jaxlab.data.chat import encode_prompt
from jaxlab.data.tokenizer import BYTES, Tokenizer
from jaxlab.models import transformer
from jaxlab.nn.distributions import categorical_entropy
from jaxlab.train import sharding as shd
from jaxlab.train.batch import apply_batch
from jaxlab.samplers import SampleConfig, bucket_prompts, generate, pad_prompts, process_logits


def decode_response(tokens_N: np.ndarray, mask_N: np.ndarray, tokenizer: Tokenizer = BYTES) -> str:
    """The text of one completion: its generated tokens (where ``mask_N``) up to the first stop
    id (``tokenizer.eos_ids``), decoded by the tokenizer (special ids dropped; bytes: invalid
    UTF-8 becomes U+FFFD)."""
    ids_N = np.asarray(tokens_N)[np.asarray(mask_N) > 0]
    return tokenizer.decode(ids_N, stop_at_eos=True)


def sample_completions(params: dict, model_cfg: transformer.Config, prompts: Sequence[np.ndarray],
                       key: jax.Array, sample_cfg: SampleConfig, *,
                       batch_size: int | None = None, mesh=None) -> dict[str, np.ndarray]:
    """Samples one completion per prompt (repeat a prompt G times for a group). Returns host
    arrays: ``tokens``, ``logprobs`` (as sampled), ``model_logprobs``, ``mask`` [B, N] and
    ``lengths``, ``truncated`` [B] (the row hit N tokens without a stop token).

    ``batch_size``: sample chunk c (rows c * batch_size ...) with ``fold_in(key, c)``, every
    chunk padded to ``batch_size`` rows (copies of its first prompt, dropped from the output),
    so any number of prompts runs one compiled program per prompt-length bucket. None: one
    call on all prompts with ``key``.

    ``mesh``: the rows are sharded over the mesh's batch axes (``data`` x ``fsdp``), so each
    device, and each process of a multi-process run, samples its share of them in one SPMD
    program with ``key`` (random bits do not depend on the sharding); the rows are padded to a
    multiple of the batch devices with copies of the first prompt (dropped). Every process
    passes the same prompts and gets every row back."""
    prompts = list(prompts)
    if mesh is not None:
        if batch_size is not None:
            raise ValueError("give batch_size or mesh, not both")
        return _sample_on_mesh(params, model_cfg, prompts, key, sample_cfg, mesh)
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not prompts:
            raise ValueError("sample_completions needs at least one prompt, got none")
        chunks = []
        for c, start in enumerate(range(0, len(prompts), batch_size)):
            part = prompts[start:start + batch_size]
            n = len(part)
            out = sample_completions(params, model_cfg, part + [part[0]] * (batch_size - n),
                                     jax.random.fold_in(key, c), sample_cfg)
            chunks.append({k: v[:n] for k, v in out.items()})
        return {k: np.concatenate([ch[k] for ch in chunks]) for k in chunks[0]}
    tokens_BT, mask_BT = pad_prompts(prompts, sample_cfg.pad_id)
    out = jax.device_get(generate(params, model_cfg, jnp.asarray(tokens_BT), jnp.asarray(mask_BT),
                                  key, sample_cfg))
    return _host_output(out, sample_cfg)


def _sample_on_mesh(params, model_cfg, prompts, key, sample_cfg, mesh) -> dict[str, np.ndarray]:
    from jax.experimental import multihost_utils

    tokens_BT, mask_BT = bucket_prompts(*pad_prompts(prompts, sample_cfg.pad_id), sample_cfg.pad_id)
    B, d = len(prompts), shd.batch_divisor(mesh)
    fill = -B % d
    if fill:
        tokens_BT = np.concatenate([tokens_BT, np.repeat(tokens_BT[:1], fill, axis=0)])
        mask_BT = np.concatenate([mask_BT, np.repeat(mask_BT[:1], fill, axis=0)])
    sharding = shd.batch_sharding(mesh)
    tokens, mask = (jax.make_array_from_callback(x.shape, sharding, lambda idx, x=x: x[idx])
                    for x in (tokens_BT, mask_BT))
    out = generate(params, model_cfg, tokens, mask, key, sample_cfg)
    out = jax.tree.map(lambda x: np.asarray(x) if x.is_fully_addressable
                       else multihost_utils.process_allgather(x, tiled=True), out)
    return {k: v[:B] for k, v in _host_output(out, sample_cfg).items()}


def _host_output(out, sample_cfg: SampleConfig) -> dict[str, np.ndarray]:
    """:func:`sample_completions`' dict of a host :class:`SampleOutput`."""
    mask_BN = np.asarray(out.mask)
    tokens_BN = np.asarray(out.tokens)
    N = sample_cfg.max_new_tokens
    stopped_B = np.isin(tokens_BN, np.asarray(sample_cfg.stop_tokens, np.int32)) & (mask_BN > 0)
    lengths_B = np.asarray(out.lengths)
    return {"tokens": tokens_BN, "logprobs": np.asarray(out.logprobs),
            "model_logprobs": np.asarray(out.model_logprobs), "mask": mask_BN,
            "lengths": lengths_B, "truncated": (lengths_B >= N) & ~stopped_B.any(axis=1)}


def _task(example):
    meta = example.meta if isinstance(example, tasks_lib.Example) else example
    return tasks_lib.get(meta["task"]), meta


def score_responses(examples: Sequence, responses: Sequence[str], *, format_coef: float = 0.0,
                    partial: bool = False):
    """Rewards ``r = s + format_coef * well_formed`` of each response against its task
    example (an :class:`jaxlab.tasks.Example` or meta), where s is the exact verifier's 1/0
    or, with ``partial``, the task's partial credit ``task.reward`` in [0, 1] (doc_extract:
    field F1; a task without partial credit: its 1/0 verify). Neither raises on the response.
    Returns (rewards_B float32, correct_B float32); ``correct`` is always the exact 1/0."""
    correct = np.zeros(len(responses), np.float32)
    credit = np.zeros(len(responses), np.float32)
    for i, (ex, text) in enumerate(zip(examples, responses)):
        task, meta = _task(ex)
        correct[i] = task.verify(meta, text)
        if partial:
            credit[i] = task.reward(meta, text)
    s = (credit if partial else correct).copy()
    if format_coef:
        s = s + np.float32(format_coef) * well_formed(examples, responses)
    return s, correct


def well_formed(examples: Sequence, responses: Sequence[str]) -> np.ndarray:
    """1.0 where the response holds a well-formed answer for its example's task (right or
    wrong; ``task.format_reward``), float32 [B]."""
    return np.array([_task(ex)[0].format_reward(text) for ex, text in zip(examples, responses)], np.float32)


def build_rows(prompts: Sequence[np.ndarray], responses: Sequence[np.ndarray],
               response_masks: Sequence[np.ndarray], response_logp: Sequence[np.ndarray],
               width: int, tokenizer: Tokenizer = BYTES) -> dict[str, np.ndarray]:
    """Training rows of prompt + completion (module docstring layout), W = ``width`` columns.

    ``responses[b]`` are the n_b completion tokens of row b (stop token included, no padding),
    ``response_masks[b]`` which of them the loss sees (e.g. only a reflection) and
    ``response_logp[b]`` their sampled log-probs. Raises ValueError when a row does not fit
    (P + n - 1 > W)."""
    B = len(prompts)
    pad = tokenizer.pad_id
    rows = {"inputs": np.full((B, width), pad, np.int32), "targets": np.full((B, width), pad, np.int32),
            "positions": np.broadcast_to(np.arange(width, dtype=np.int32), (B, width)).copy(),
            "segment_ids": np.zeros((B, width), np.int32), "mask": np.zeros((B, width), np.float32),
            "old_logp": np.zeros((B, width), np.float32)}
    for b in range(B):
        p = np.asarray(prompts[b], np.int32)
        y = np.asarray(responses[b], np.int32)
        n = len(y)
        s = np.concatenate([p, y])
        if len(s) - 1 > width:
            raise ValueError(f"row {b}: prompt ({len(p)}) + completion ({n}) needs {len(s) - 1} "
                             f"columns, more than width={width}")
        rows["inputs"][b, :len(s) - 1] = s[:-1]
        rows["targets"][b, :len(s) - 1] = s[1:]
        rows["segment_ids"][b, :len(s) - 1] = 1
        rows["mask"][b, len(p) - 1:len(p) - 1 + n] = np.asarray(response_masks[b], np.float32)
        rows["old_logp"][b, len(p) - 1:len(p) - 1 + n] = np.asarray(response_logp[b], np.float32)
    return rows


def sampled_responses(out: dict) -> tuple[list, list, list]:
    """(tokens, masks, logprobs) per row of :func:`sample_completions` output, unpadded."""
    lengths = out["lengths"]
    return ([out["tokens"][b, :n] for b, n in enumerate(lengths)],
            [np.ones(n, np.float32) for n in lengths],
            [out["logprobs"][b, :n] for b, n in enumerate(lengths)])


def policy_logprobs(params: dict, batch: dict, model_cfg: transformer.Config,
                    sample_cfg: SampleConfig) -> tuple[jax.Array, jax.Array]:
    """(logp_BW, entropy_BW): ``log q(targets)`` and the entropy of q at every column, where
    q = process_logits(logits, sample_cfg) is the distribution the sampler drew from
    (temperature 1 and no filters: the raw model; temperature T: log_softmax(logits / T))."""
    if sample_cfg.greedy:
        raise ValueError("policy log-probs need a sampling temperature > 0 (greedy has no density)")
    logits_BWV = apply_batch(params, batch, model_cfg)
    B, W, V = logits_BWV.shape
    logq_BWV = process_logits(logits_BWV.reshape(B * W, V), sample_cfg).reshape(B, W, V)
    logp_BW = jnp.take_along_axis(logq_BWV, batch["targets"][..., None], axis=-1)[..., 0]
    return logp_BW, categorical_entropy(logq_BWV)  # filtered tokens: -inf log-prob, zero probability


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: ``1 - C(n - c, k) / C(n, k)``."""
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def solve_rates(params: dict, model_cfg: transformer.Config, examples: Sequence, *,
                key: jax.Array, sample_cfg: SampleConfig, n_samples: int = 1, k: int = 1,
                batch_size: int = 256, tokenizer: Tokenizer = BYTES) -> dict[str, float]:
    """Evaluates ``examples``: ``n_samples`` completions each (greedy when the temperature is
    0), verified exactly. Returns ``pass@1`` (mean correctness), ``pass@k`` (unbiased, k <=
    n_samples) and ``length`` (mean completion tokens)."""
    prompts = [encode_prompt(ex.prompt, tokenizer) for ex in examples for _ in range(n_samples)]
    flat = [ex for ex in examples for _ in range(n_samples)]
    correct, lengths = [], []
    for start in range(0, len(prompts), batch_size):
        out = sample_completions(params, model_cfg, prompts[start:start + batch_size],
                                 jax.random.fold_in(key, start), sample_cfg)
        texts = [decode_response(t, m, tokenizer) for t, m in zip(out["tokens"], out["mask"])]
        correct.append(score_responses(flat[start:start + batch_size], texts)[1])
        lengths.append(out["lengths"])
    c = np.concatenate(correct).reshape(len(examples), n_samples)
    return {"pass@1": float(c.mean()), f"pass@{k}": float(np.mean([pass_at_k(n_samples, int(x), k)
                                                                   for x in c.sum(1)])),
            "length": float(np.concatenate(lengths).mean())}


def default_sample_config(max_new_tokens: int, temperature: float = 1.0,
                          tokenizer: Tokenizer = BYTES) -> SampleConfig:
    """Sampling for task models: stop at any of the tokenizer's ``eos_ids``, pad with its
    ``pad_id``."""
    return SampleConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                        stop_tokens=tuple(int(i) for i in tokenizer.eos_ids), pad_id=int(tokenizer.pad_id))
