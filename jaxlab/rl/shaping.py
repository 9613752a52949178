"""Reward shaping and group filtering of DAPO: overlong handling and dynamic sampling.

Overlong (L_max = the generation limit N, L_cache = the buffer):

    "mask"  truncated completions (N tokens and no stop token) leave the loss (mask 0)
    "soft"  R_len(|y|) = 0                                  |y| <= L_max - L_cache
                       = ((L_max - L_cache) - |y|) / L_cache  L_max - L_cache < |y| <= L_max
                       = -1                                  |y| > L_max
            added to the reward (times a coefficient), so the penalty grows linearly over
            the last L_cache tokens before the limit.

Dynamic sampling (DAPO's constraint 0 < |{o_i : is_equivalent(a, o_i)}| < G) keeps the groups
whose answers are neither all correct nor all wrong: a group every sample of which solves the
problem, or none, teaches nothing about the task. The filter is on correctness, not on the
reward: with a format reward (r = correct + c * well_formed) a group of wrong answers can have
unequal rewards, and filtering on std(r) > 0 would keep it. The loop samples more prompts until
the batch holds enough mixed groups or a bound on sampling rounds is reached. Under a
partial-credit reward (``rl.reward="partial"``: s in [0, 1], e.g. field F1) the loop keeps the
groups whose s varies (``informative_groups(s)``), the same rule for 0/1 scores.

    mixed_correctness_groups(correct_BG)   0 < sum_g correct_bg < G     (the DAPO filter)
    informative_groups(rewards_BG)         max_g r_bg > min_g r_bg      (std(r) > 0: A != 0)
"""

from __future__ import annotations

import numpy as np

OVERLONG = ("none", "mask", "soft")


def soft_overlong_penalty(lengths_B, max_len: int, buffer: int) -> np.ndarray:
    """DAPO's soft overlong punishment R_len (module docstring), float32 [B] in [-1, 0]."""
    if not 0 < buffer <= max_len:
        raise ValueError(f"overlong buffer={buffer} must be in (0, max_len={max_len}]")
    lengths_B = np.asarray(lengths_B, np.float32)
    start = max_len - buffer
    penalty = np.where(lengths_B <= start, 0.0, (start - lengths_B) / buffer)
    return np.where(lengths_B > max_len, -1.0, penalty).astype(np.float32)


def informative_groups(rewards_BG) -> np.ndarray:
    """Bool [B]: groups whose rewards are not all equal (std > 0)."""
    rewards_BG = np.asarray(rewards_BG)
    return rewards_BG.max(axis=1) > rewards_BG.min(axis=1)


def mixed_correctness_groups(correct_BG) -> np.ndarray:
    """Bool [B]: groups with at least one correct and at least one wrong sample,
    ``0 < sum_g c_bg < G`` for correctness c in {0, 1} (DAPO's dynamic-sampling filter)."""
    correct_BG = np.asarray(correct_BG) > 0
    if correct_BG.ndim != 2:
        raise ValueError(f"correct_BG must be [groups, samples], got shape {correct_BG.shape}")
    return correct_BG.any(axis=1) & ~correct_BG.all(axis=1)
