"""Samplers: logits processors and a jit-compiled KV-cache generation loop.

``generate(params, model_cfg, tokens_BT, mask_BT, key, sample_cfg) -> SampleOutput`` samples
after left-padded prompts (``pad_prompts``), optionally several samples per prompt from one
prefill (``samples_per_prompt``) and the top-k log-probs of each step
(``SampleConfig.top_logprobs``); ``process_logits`` gives the log-probs of the processed
(temperature, top-k, top-p, min-p) distribution it draws from.
"""

from jaxlab.samplers.generate import (
    SampleConfig,
    SampleOutput,
    bucket_prompts,
    generate,
    pad_prompts,
    prompt_bucket,
    sample_token,
)
from jaxlab.samplers.processors import (
    apply_temperature,
    greedy_logprobs,
    min_p_filter,
    min_p_mask,
    process_logits,
    top_k_filter,
    top_k_mask,
    top_p_filter,
    top_p_mask,
)

__all__ = [
    "SampleConfig",
    "SampleOutput",
    "apply_temperature",
    "bucket_prompts",
    "generate",
    "greedy_logprobs",
    "min_p_filter",
    "min_p_mask",
    "pad_prompts",
    "process_logits",
    "prompt_bucket",
    "sample_token",
    "top_k_filter",
    "top_k_mask",
    "top_p_filter",
    "top_p_mask",
]
