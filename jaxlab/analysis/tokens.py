"""Under-trained tokens (Land and Bartolo 2024, "Fishing for Magikarp"): tokens the model never
saw in training have unembedding rows that moved only with the shared, input-independent
component, so once that component is removed they sit close together.

    c          = the first principal component of the unembedding U [V, D] (rows centred)
    U'         = U - (U c) c^T                       (c's direction removed from every row)
    u_ref      = mean of U'_i over reference tokens i in S (known unused: e.g. unreachable bytes)
    score_i    = cos(U'_i, u_ref)
    candidates = tokens whose score is at or above the ``percentile`` of all scores (the paper
                 flags the closest few percent), reference tokens excluded

Candidates are then verified by prompting: a real under-trained token gets near-zero
probability even when the model is asked to repeat it.
"""

from __future__ import annotations

import numpy as np


def undertrained_scores(unembed_VD, reference_ids) -> np.ndarray:
    """score_i [V] (module docstring)."""
    u = np.asarray(unembed_VD, np.float64)
    ref = np.asarray(reference_ids, np.int64)
    if u.ndim != 2 or ref.size == 0:
        raise ValueError(f"need an unembedding [V, D] and at least one reference token, got {u.shape}, {ref.size}")
    centred = u - u.mean(0, keepdims=True)
    c = np.linalg.svd(centred, full_matrices=False)[2][0]
    removed = u - np.outer(u @ c, c)
    ref_mean = removed[ref].mean(0)
    norms = np.linalg.norm(removed, axis=1) * np.linalg.norm(ref_mean)
    return removed @ ref_mean / np.maximum(norms, 1e-30)


def undertrained_candidates(unembed_VD, reference_ids, percentile: float = 98.0) -> np.ndarray:
    """Token ids whose score is at or above the ``percentile`` of all scores, best first,
    reference tokens excluded."""
    scores = undertrained_scores(unembed_VD, reference_ids)
    cut = np.percentile(scores, percentile)
    ids = np.flatnonzero(scores >= cut)
    ids = ids[~np.isin(ids, np.asarray(reference_ids))]
    return ids[np.argsort(-scores[ids], kind="stable")]


def precision_recall(flagged, truth) -> tuple[float, float]:
    """Precision and recall of flagged ids against the true under-trained ids."""
    flagged, truth = set(map(int, flagged)), set(map(int, truth))
    hits = len(flagged & truth)
    return (hits / len(flagged) if flagged else 0.0, hits / len(truth) if truth else 0.0)
