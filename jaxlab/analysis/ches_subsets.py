"""Score-quantile training subsets and their comparison (Razin et al. 2024, "Unintentional
Unalignment", sec. 5: DPO trained separately on the pairs with the highest and the lowest CHES
scores, :mod:`jaxlab.analysis.displacement`). NumPy only.

    quantile_subsets(scores_P, fraction, seed)    indices of the top, bottom and a random subset
    two_sample_nested_bootstrap(a_S, b_S)         difference of two arms' means over seeds, when
                                                  the arms hold *different* items in each seed

The bootstrap is the two-sample sibling of :func:`jaxlab.stats.paired_bootstrap_interval`: in
each seed s, arm A was measured on items a_s (n_a(s) values) and arm B on other items b_s
(n_b(s) values); the seed is shared by both arms (one reference model, one pool of pairs), so
seeds are resampled together and the items of each arm separately.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_BOOTSTRAP = 2000
ARMS = ("top", "bottom", "random")


def quantile_subsets(scores_P, fraction: float, seed: int) -> dict[str, np.ndarray]:
    """The three arms of a score-quantile experiment over P items, each of m = round(fraction P)
    item indices (sorted ascending):

        top     the m items with the highest scores
        bottom  the m items with the lowest scores
        random  m items drawn without replacement from all P (np.random.default_rng(seed)),
                the control of the same size (it may share items with top and bottom)

    Ties are broken by index (a stable sort: of equal scores the earlier item ranks higher in
    top and lower in bottom). fraction must be in (0, 1/2] with 1 <= m <= P / 2, so that top and
    bottom are disjoint."""
    s_P = np.asarray(scores_P, np.float64).reshape(-1)
    if not np.all(np.isfinite(s_P)):
        raise ValueError("quantile_subsets got a non-finite score")
    if not 0.0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5] (top and bottom disjoint), got {fraction}")
    m = round(fraction * s_P.size)
    if m < 1:
        raise ValueError(f"fraction {fraction} of {s_P.size} items selects no item")
    if 2 * m > s_P.size:
        raise ValueError(f"fraction {fraction} of {s_P.size} items selects {m}: top and bottom overlap")
    descending = np.argsort(-s_P, kind="stable")
    ascending = np.argsort(s_P, kind="stable")
    rng = np.random.default_rng(seed)
    return {"top": np.sort(descending[:m]), "bottom": np.sort(ascending[:m]),
            "random": np.sort(rng.choice(s_P.size, size=m, replace=False))}


def two_sample_nested_bootstrap(a_S: Sequence, b_S: Sequence, confidence: float = 0.95, *,
                                n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict:
    """Mean difference of two arms over S seeds with a nested percentile bootstrap interval.

    ``a_S[s]``, ``b_S[s]``: the values of arm A and arm B in seed s (1-D, any lengths; the two
    arms' items differ, so nothing is paired within a seed). The effect is

        effect = 1/S sum_s (mean(a_s) - mean(b_s))

    Each of ``n_boot`` replicates draws S seeds with replacement and, for each drawn seed (a
    fresh draw each time a seed recurs), n_a(s) values of a_s and n_b(s) values of b_s with
    replacement (independently), and takes 1/S sum over the drawn seeds of (mean a* - mean b*);
    (low, high) are the alpha/2 and 1 - alpha/2 quantiles of the replicates (alpha = 1 -
    confidence; NumPy's linear quantile), widened if needed to hold the effect.
    Deterministic for ``seed``. Returns ``{"effect", "low", "high", "seeds", "sizes_a",
    "sizes_b"}``."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be an int >= 1, got {n_boot!r}")
    a_S = [np.asarray(a, np.float64).reshape(-1) for a in a_S]
    b_S = [np.asarray(b, np.float64).reshape(-1) for b in b_S]
    if len(a_S) != len(b_S) or not a_S:
        raise ValueError(f"need the same number (>= 1) of seeds in both arms, got {len(a_S)} and {len(b_S)}")
    if any(x.size == 0 for x in a_S + b_S):
        raise ValueError("every seed needs at least one value in each arm")
    if not all(np.all(np.isfinite(x)) for x in a_S + b_S):
        raise ValueError("two_sample_nested_bootstrap got a non-finite value")
    S = len(a_S)
    rng = np.random.default_rng(seed)
    seeds_RJ = rng.integers(0, S, size=(int(n_boot), S))  # replicate r's j-th drawn seed

    def drawn_means_RJ(values_S):
        # [R, J]: the mean of a fresh resample of the values of the seed drawn in slot (r, j)
        out = np.empty(seeds_RJ.shape)
        for s, x in enumerate(values_S):
            means_RJ = x[rng.integers(0, x.size, size=(*seeds_RJ.shape, x.size))].mean(axis=-1)
            out = np.where(seeds_RJ == s, means_RJ, out)
        return out

    means_R = (drawn_means_RJ(a_S) - drawn_means_RJ(b_S)).mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means_R, [alpha / 2.0, 1.0 - alpha / 2.0])
    effect = float(np.mean([a.mean() - b.mean() for a, b in zip(a_S, b_S)]))
    # a percentile interval of a skewed replicate distribution can miss the point estimate;
    # it is widened to hold it (the verdict needs low <= effect <= high)
    return {"effect": effect, "low": float(min(low, effect)), "high": float(max(high, effect)),
            "seeds": S, "sizes_a": [int(a.size) for a in a_S], "sizes_b": [int(b.size) for b in b_S]}
