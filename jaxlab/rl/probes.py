"""Per-problem measurements of a policy on a fixed set of prompts, for paired comparisons of
two trained arms (the same prompts, the same sampling keys):

    probe_entropy(...)      H_p: the policy's mean token entropy along its own samples, per prompt
    problem_correct(...)    c_pn: 1/0 correctness of each of n completions, per problem

Both are deterministic given ``key``: the same key gives two arms the same random numbers
(common random numbers), so their difference is not blurred by sampling noise alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from jaxlab.data.chat import encode_prompt
from jaxlab.data.tokenizer import BYTES, Tokenizer
from jaxlab.models import transformer
from jaxlab.rl.rollout import (build_rows, decode_response, policy_logprobs, sample_completions,
                               sampled_responses, score_responses)
from jaxlab.samplers import SampleConfig

_policy_logprobs = jax.jit(policy_logprobs, static_argnums=(2, 3))  # one compile per shape and config


def masked_row_means(values_BW: np.ndarray, mask_BW: np.ndarray, rows_per_group: int) -> np.ndarray:
    """Token mean per group of consecutive rows: for group p of rows b in [p n, (p + 1) n),

        out_p = sum_{b, w} m_bw x_bw / sum_{b, w} m_bw      (0 where the group has no token)

    ``values_BW``, ``mask_BW``: [B, W] with B = P * n (n = ``rows_per_group``); returns [P]."""
    x = np.asarray(values_BW, np.float64)
    m = np.asarray(mask_BW, np.float64)
    if x.shape != m.shape or x.ndim != 2 or x.shape[0] % rows_per_group:
        raise ValueError(f"need [B, W] values and mask of one shape with B a multiple of "
                         f"{rows_per_group}, got {x.shape} and {m.shape}")
    num_P = (x * m).reshape(-1, rows_per_group * x.shape[1]).sum(1)
    den_P = m.reshape(-1, rows_per_group * x.shape[1]).sum(1)
    return np.where(den_P > 0, num_P / np.maximum(den_P, 1.0), 0.0)


def probe_entropy(params: dict, model_cfg: transformer.Config, prompts: Sequence[str], key: jax.Array,
                  sample_cfg: SampleConfig, *, n_samples: int = 4, batch_size: int = 256,
                  tokenizer: Tokenizer = BYTES) -> np.ndarray:
    """The policy's entropy on each probe prompt x_p, float64 [P]:

        H_p = sum_{j, t} H(q(. | x_p, y_j,<t)) / sum_j |y_j|,   y_1 .. y_n ~ q(. | x_p)

    the entropy of the sampling distribution q (``sample_cfg``: temperature, filters) at each
    generated position (stop token included) of ``n_samples`` completions sampled from the
    policy itself, averaged over those tokens. Batches of ``batch_size`` rows, keys folded
    from ``key`` by batch offset."""
    if sample_cfg.greedy:
        raise ValueError("probe entropy needs a sampling temperature > 0")
    encoded = [encode_prompt(p, tokenizer) for p in prompts]
    rows = [e for e in encoded for _ in range(n_samples)]
    width = -(-(max(len(e) for e in encoded) + sample_cfg.max_new_tokens - 1) // 8) * 8
    batch_size = max(n_samples, batch_size - batch_size % n_samples)  # whole prompts per batch
    out_P = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        out = sample_completions(params, model_cfg, chunk, jax.random.fold_in(key, start), sample_cfg)
        batch = build_rows(chunk, *sampled_responses(out), width, tokenizer)
        _, entropy_BW = _policy_logprobs(params, {k: jax.numpy.asarray(v) for k, v in batch.items()},
                                 model_cfg, sample_cfg)
        out_P.append(masked_row_means(np.asarray(entropy_BW), batch["mask"], n_samples))
    return np.concatenate(out_P)


def problem_correct(params: dict, model_cfg: transformer.Config, examples: Sequence, key: jax.Array,
                    sample_cfg: SampleConfig, *, n_samples: int = 1, batch_size: int = 256,
                    tokenizer: Tokenizer = BYTES) -> np.ndarray:
    """Correctness of ``n_samples`` completions of each problem by the task's exact verifier,
    float32 [P, n] of 1/0 (greedy when ``sample_cfg`` has temperature 0; then the n are equal)."""
    prompts = [encode_prompt(ex.prompt, tokenizer) for ex in examples for _ in range(n_samples)]
    flat = [ex for ex in examples for _ in range(n_samples)]
    correct = []
    for start in range(0, len(prompts), batch_size):
        out = sample_completions(params, model_cfg, prompts[start:start + batch_size],
                                 jax.random.fold_in(key, start), sample_cfg)
        texts = [decode_response(t, m, tokenizer) for t, m in zip(out["tokens"], out["mask"])]
        correct.append(score_responses(flat[start:start + batch_size], texts)[1])
    return np.concatenate(correct).reshape(len(examples), n_samples)
