"""Statistics for evaluations: intervals for a proportion and a mean over problems, and the
unbiased pass@k estimator. NumPy only (no JAX), so it serves reports and tests alike.

    wilson_interval(successes, n)            a proportion's interval (greedy accuracy)
    pass_at_k(n, c, k)                       1 - C(n - c, k) / C(n, k), per problem
    bootstrap_mean_interval(values_P)        percentile bootstrap of a mean over P problems
    pass_at_k_interval(n, c_P, k)            mean pass@k over problems with its bootstrap interval

Every interval is two-sided at ``confidence`` (default 0.95) and returned as ``(low, high)``.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

DEFAULT_BOOTSTRAP = 2000


def _check_confidence(confidence: float) -> float:
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a float in (0, 1), got {confidence!r}")
    return float(confidence)


def normal_quantile(confidence: float) -> float:
    """z = Phi^{-1}(1 - alpha / 2) with alpha = 1 - confidence (1.959964 for 0.95)."""
    alpha = 1.0 - _check_confidence(confidence)
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927).

    With p = successes / n and z = :func:`normal_quantile` (confidence):

        center = (p + z^2 / (2n)) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))
        (low, high) = (center - half, center + half)

    Unlike the normal (Wald) interval it stays inside [0, 1] and is not empty at p = 0 or 1;
    8 of 10 at 95% gives (0.4902, 0.9433). Raises ValueError unless 0 <= successes <= n, n >= 1.
    """
    for name, value in (("successes", successes), ("n", n)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need n >= 1 and 0 <= successes <= n, got successes={successes}, n={n}")
    z = normal_quantile(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def pass_at_k(n, c, k: int) -> np.ndarray:
    """The unbiased pass@k estimate of each problem (Chen et al. 2021, "Evaluating Large
    Language Models Trained on Code"), from n samples of which c are correct:

        pass@k = 1 - C(n - c, k) / C(n, k)
               = 1 - prod_{i = n - c + 1}^{n} (1 - k / i)      (stable form; 1 when n - c < k)

    the probability that k samples drawn without replacement from the n hold a correct one.
    ``n`` and ``c`` are ints or arrays of the same shape [P]; returns float64 of that shape.
    Raises ValueError unless 1 <= k <= n and 0 <= c <= n."""
    n_P, c_P = np.broadcast_arrays(np.asarray(n), np.asarray(c))
    if not (np.issubdtype(n_P.dtype, np.integer) and np.issubdtype(c_P.dtype, np.integer)):
        raise ValueError(f"n and c must be integers, got dtypes {n_P.dtype} and {c_P.dtype}")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if n_P.size and (np.any(n_P < k) or np.any(c_P < 0) or np.any(c_P > n_P)):
        raise ValueError(f"pass@{k} needs n >= k and 0 <= c <= n for every problem "
                         f"(n in [{n_P.min()}, {n_P.max()}], c in [{c_P.min()}, {c_P.max()}])")
    out = np.empty(n_P.shape, np.float64)
    for idx in np.ndindex(n_P.shape):
        ni, ci = int(n_P[idx]), int(c_P[idx])
        if ni - ci < k:
            out[idx] = 1.0
        else:
            out[idx] = 1.0 - float(np.prod(1.0 - k / np.arange(ni - ci + 1, ni + 1, dtype=np.float64)))
    return out


def bootstrap_mean_interval(values_P, confidence: float = 0.95, *, n_boot: int = DEFAULT_BOOTSTRAP,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-problem values x_1..x_P.

    Draw ``n_boot`` resamples of P problems with replacement (indices from
    ``np.random.default_rng(seed)``), take each resample's mean m_b, and return the
    alpha/2 and 1 - alpha/2 quantiles of {m_b} (alpha = 1 - confidence; NumPy's linear
    quantile). Deterministic for a seed. Raises ValueError on an empty or non-finite input."""
    _check_confidence(confidence)
    x_P = np.asarray(values_P, dtype=np.float64).reshape(-1)
    if x_P.size == 0:
        raise ValueError("bootstrap_mean_interval needs at least one value, got none")
    if not np.all(np.isfinite(x_P)):
        raise ValueError("bootstrap_mean_interval got a non-finite value")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be an int >= 1, got {n_boot!r}")
    rng = np.random.default_rng(seed)
    idx_RP = rng.integers(0, x_P.size, size=(int(n_boot), x_P.size))
    means_R = x_P[idx_RP].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means_R, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def pass_at_k_interval(n, c_P, k: int, confidence: float = 0.95, *, n_boot: int = DEFAULT_BOOTSTRAP,
                       seed: int = 0) -> dict:
    """Mean pass@k over P problems, ``{"k", "value", "low", "high"}``: value = mean of
    :func:`pass_at_k` (n, c_p, k) over problems, (low, high) = :func:`bootstrap_mean_interval`
    of those per-problem estimates (the interval covers the choice of problems; the estimator
    already averages over which k of the n samples are drawn)."""
    per_problem_P = pass_at_k(n, c_P, k)
    low, high = bootstrap_mean_interval(per_problem_P, confidence, n_boot=n_boot, seed=seed)
    return {"k": int(k), "value": float(per_problem_P.mean()), "low": low, "high": high}
