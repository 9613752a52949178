"""Reinforcement learning on verifiable tasks: rollouts, reward shaping, dynamic sampling,
Reflect-Retry-Reward, a pass-rate curriculum and the policy-update loop (see ``loop``)."""

from jaxlab.rl.curriculum import PassRateCurriculum
from jaxlab.rl.loop import RLConfig, RolloutSource, normalize_rl_sums, rl_loss_sums, row_width, train_rl
from jaxlab.rl.rollout import (build_rows, decode_response, default_sample_config, pass_at_k,
                               policy_logprobs, sample_completions, sampled_responses,
                               score_responses, solve_rates, well_formed)
from jaxlab.rl.shaping import informative_groups, soft_overlong_penalty

__all__ = ["PassRateCurriculum", "RLConfig", "RolloutSource", "build_rows", "decode_response",
           "default_sample_config", "informative_groups", "normalize_rl_sums", "pass_at_k",
           "policy_logprobs", "rl_loss_sums", "row_width", "sample_completions", "sampled_responses",
           "score_responses", "soft_overlong_penalty", "solve_rates", "train_rl", "well_formed"]
