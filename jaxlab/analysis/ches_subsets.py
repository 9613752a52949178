"""Score-quantile training subsets and their comparison (Razin et al. 2024, "Unintentional
Unalignment", sec. 5: DPO trained separately on the pairs with the highest and the lowest CHES
scores, :mod:`jaxlab.analysis.displacement`). NumPy only.

    quantile_subsets(scores_P, fraction, seed)    indices of the top, bottom and a random subset

The arms hold different pairs, so they are compared with
:func:`jaxlab.stats.two_sample_nested_bootstrap`.
"""

from __future__ import annotations

import numpy as np

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
