"""Reward shaping and group filtering of DAPO: overlong handling and dynamic sampling.

Overlong (L_max = the generation limit N, L_cache = the buffer):

    "mask"  truncated completions (N tokens and no stop token) leave the loss (mask 0)
    "soft"  R_len(|y|) = 0                                  |y| <= L_max - L_cache
                       = ((L_max - L_cache) - |y|) / L_cache  L_max - L_cache < |y| <= L_max
                       = -1                                  |y| > L_max
            added to the reward (times a coefficient), so the penalty grows linearly over
            the last L_cache tokens before the limit.

Dynamic sampling keeps the groups whose rewards differ (std > 0): a group of equal rewards
has advantage 0 for every sample and only dilutes the batch; the loop samples more prompts
until the batch holds enough informative groups or a bound on sampling rounds is reached.
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
