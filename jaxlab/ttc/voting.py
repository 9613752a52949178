"""Votes over sampled answers: majority (self-consistency), confidence-weighted, filtered.

An answer's key is whatever identifies equal answers (for tasks, ``jaxlab.evals.scoring.
answer_key``: the parsed answer); None is no vote (a malformed answer). With weights w_i
(1 for plain majority):

    V(a) = sum_{i: key_i = a} w_i          winner = argmax_a V(a) (ties: all tied answers)

Filtered voting (DeepConf, Fu et al. 2025) first keeps the ``keep`` fraction of samples with
the highest confidence, then votes with their confidences as weights.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def weighted_vote(keys: Sequence[Hashable | None], weights: Sequence[float] | None = None) -> dict:
    """``{"winners": [keys tied at the top], "tally": {key: V(key)}, "share": V(winner) / sum V}``
    (module docstring). No vote at all gives winners [] and share 0."""
    if weights is None:
        weights = [1.0] * len(keys)
    if len(weights) != len(keys):
        raise ValueError(f"{len(keys)} answers but {len(weights)} weights")
    if any(not np.isfinite(w) or w < 0 for w in weights):
        raise ValueError("vote weights must be finite and >= 0")
    tally: dict = {}
    for key, w in zip(keys, weights):
        if key is not None:
            tally[key] = tally.get(key, 0.0) + float(w)
    if not tally:
        return {"winners": [], "tally": {}, "share": 0.0}
    top = max(tally.values())
    winners = [k for k, v in tally.items() if v == top]
    total = sum(tally.values())
    return {"winners": winners, "tally": tally, "share": top / total if total > 0 else 0.0}


def filter_confident(confidences: Sequence[float], keep: float) -> np.ndarray:
    """Indices of the ``keep`` fraction (0 < keep <= 1, at least one) of samples with the
    highest confidence, in sample order; ties at the cut are kept in sample order."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    c = np.asarray(confidences, np.float64)
    n = max(1, int(np.ceil(keep * c.size)))
    order = np.argsort(-c, kind="stable")[:n]
    return np.sort(order)


def filtered_vote(keys: Sequence[Hashable | None], confidences: Sequence[float], keep: float = 0.1) -> dict:
    """DeepConf's vote: the top ``keep`` fraction by confidence, weighted by confidence."""
    idx = filter_confident(confidences, keep)
    return weighted_vote([keys[i] for i in idx], [float(confidences[i]) for i in idx])
