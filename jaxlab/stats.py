"""Statistics for evaluations: intervals for a proportion and a mean over problems, and the
unbiased pass@k estimator. NumPy only (no JAX), so it serves reports and tests alike.

    wilson_interval(successes, n)            a proportion's interval (greedy accuracy)
    pass_at_k(n, c, k)                       1 - C(n - c, k) / C(n, k), per problem
    bootstrap_mean_interval(values_P)        percentile bootstrap of a mean over P problems
    pass_at_k_interval(n, c_P, k)            mean pass@k over problems with its bootstrap interval

Claims (paired arms, seeds, three-way verdicts):

    binomial_two_sided_p(k, n)               exact binomial test
    mcnemar_exact(correct_a, correct_b)      paired accuracies: exact p-value, difference interval
    paired_bootstrap_interval(a_SP, b_SP)    mean paired difference over seeds and problems
    two_sample_nested_bootstrap(a_S, b_S)    difference of two arms' means over seeds, when the
                                             arms hold different items in each seed
    t_interval(values)                       a mean over a few seeds
    decide(effect, low, high, threshold=...) held / not held / inconclusive, as a Verdict

Every interval is two-sided at ``confidence`` (default 0.95) and returned as ``(low, high)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
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
    # the interval contains p; min / max keep that exact under rounding (p = 0 or 1 included)
    return max(0.0, min(p, center - half)), min(1.0, max(p, center + half))


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


# ---------------------------------------------------------------- claims: paired tests and verdicts

OUTCOMES = ("held", "not held", "inconclusive")


def binomial_two_sided_p(k: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test of k successes in n trials against success rate p:

        P = sum of P(X = i) over every i with P(X = i) <= P(X = k),  X ~ Binomial(n, p)

    (the "minimum likelihood" rule; for p = 1/2 it is 2 * P(X <= min(k, n - k)), capped at 1).
    n = 0 gives 1.0."""
    for name, value in (("k", k), ("n", n)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if n < 0 or not 0 <= k <= n or not 0 < p < 1:
        raise ValueError(f"need 0 <= k <= n and 0 < p < 1, got k={k}, n={n}, p={p}")
    if n == 0:
        return 1.0
    log_pmf = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
               + i * math.log(p) + (n - i) * math.log1p(-p) for i in range(n + 1)]
    # outcomes as likely as k within rounding (relative 1e-7) count as "as extreme"
    return min(1.0, sum(math.exp(v) for v in log_pmf if v <= log_pmf[k] + 1e-7))


def mcnemar_exact(correct_a, correct_b) -> dict:
    """McNemar's exact test of two paired accuracies (the same problems, two arms).

    With b = problems A solves and B does not, c = the reverse, the difference of accuracies
    is (b - c) / P and, under "A and B are equally accurate", b ~ Binomial(b + c, 1/2):

        p_value = :func:`binomial_two_sided_p` (b, b + c)

    The interval of the difference is Wald's for paired proportions, with the discordant
    shares f_b = b / P, f_c = c / P:  (f_b - f_c) +- z sqrt((f_b + f_c - (f_b - f_c)^2) / P).
    Returns ``{"b", "c", "n", "difference", "low", "high", "p_value"}``."""
    a_P = np.asarray(correct_a).astype(bool).reshape(-1)
    b_P = np.asarray(correct_b).astype(bool).reshape(-1)
    if a_P.shape != b_P.shape or a_P.size == 0:
        raise ValueError(f"paired accuracies need two non-empty arrays of one shape, got "
                         f"{a_P.shape} and {b_P.shape}")
    n = int(a_P.size)
    b, c = int(np.sum(a_P & ~b_P)), int(np.sum(~a_P & b_P))
    fb, fc = b / n, c / n
    diff = fb - fc
    half = normal_quantile(0.95) * math.sqrt(max(fb + fc - diff * diff, 0.0) / n)
    return {"b": b, "c": c, "n": n, "difference": diff, "low": diff - half, "high": diff + half,
            "p_value": binomial_two_sided_p(b, b + c)}


def paired_bootstrap_interval(a_SP, b_SP, confidence: float = 0.95, *, n_boot: int = DEFAULT_BOOTSTRAP,
                              seed: int = 0) -> dict:
    """The mean paired difference of two arms over seeds and test problems, with a nested
    percentile bootstrap interval.

    ``a_SP``, ``b_SP``: [S, P] per-seed, per-problem values of arm A and arm B (1/0 for
    accuracy, or any score), paired: entry (s, p) of both arms is problem p of seed s. With
    d = a - b, the effect is mean(d). Each replicate draws S seeds with replacement and,
    within each drawn seed, P problems with replacement, and takes the mean of those d;
    (low, high) are the alpha/2 and 1 - alpha/2 quantiles of the replicates. Both sources of
    variation (training seed, choice of test problems) are in the interval. A 1-D input is
    one seed. Returns ``{"effect", "low", "high", "seeds", "problems"}``."""
    _check_confidence(confidence)
    a = np.asarray(a_SP, dtype=np.float64)
    b = np.asarray(b_SP, dtype=np.float64)
    if a.ndim == 1 and b.ndim == 1:
        a, b = a[None], b[None]
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"paired values need two non-empty arrays of one shape [S, P], got "
                         f"{np.shape(a_SP)} and {np.shape(b_SP)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("paired_bootstrap_interval got a non-finite value")
    d_SP = a - b
    S, P = d_SP.shape
    rng = np.random.default_rng(seed)
    seeds_RS = rng.integers(0, S, size=(int(n_boot), S))
    probs_RSP = rng.integers(0, P, size=(int(n_boot), S, P))
    means_R = d_SP[seeds_RS[:, :, None], probs_RSP].mean(axis=(1, 2))
    alpha = 1.0 - confidence
    low, high = np.quantile(means_R, [alpha / 2.0, 1.0 - alpha / 2.0])
    return {"effect": float(d_SP.mean()), "low": float(low), "high": float(high), "seeds": S, "problems": P}


def two_sample_nested_bootstrap(a_S: Sequence, b_S: Sequence, confidence: float = 0.95, *,
                                n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict:
    """Mean difference of two arms over S seeds with a nested percentile bootstrap interval:
    the two-sample sibling of :func:`paired_bootstrap_interval`. The seed is shared by both arms
    (one model, one pool of items), so seeds are resampled together and each arm's items
    separately.

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
    _check_confidence(confidence)
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


def t_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Student's t interval of the mean of n >= 2 values (e.g. one number per seed):
    mean +- t_{n-1}(1 - alpha/2) * sd / sqrt(n), sd with n - 1 degrees of freedom."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size < 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"t_interval needs at least two finite values, got {x.size}")
    t = _t_quantile(1.0 - (1.0 - _check_confidence(confidence)) / 2.0, x.size - 1)
    half = t * float(x.std(ddof=1)) / math.sqrt(x.size)
    return float(x.mean()) - half, float(x.mean()) + half


def _t_quantile(q: float, dof: int) -> float:
    """The q quantile of Student's t with ``dof`` degrees of freedom, by bisection on its CDF
    (regularized incomplete beta via a continued fraction); accurate to 1e-10."""
    def cdf(t: float) -> float:
        x = dof / (dof + t * t)
        tail = 0.5 * _betainc(dof / 2.0, 0.5, x)
        return 1.0 - tail if t > 0 else tail
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if cdf(mid) < q else (lo, mid)
    return (lo + hi) / 2.0


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) (Lentz's continued fraction)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x)) / a
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
        c = 1.0 + num / c if abs(c) > 1e-300 else 1e-300
        f *= c * d
        if abs(1.0 - c * d) < 1e-15:
            break
    return front * (f - 1.0)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A claim's verdict: ``outcome`` in :data:`OUTCOMES`, the ``effect`` with its interval
    (``low``, ``high``), the ``threshold`` the claim puts it against (``direction``
    "greater": the claim is effect > threshold; "less": effect < threshold), the ``test`` used,
    and ``preconditions``: (name, passed, detail) triples checked before the verdict."""

    outcome: str
    effect: float
    low: float
    high: float
    threshold: float
    direction: str
    test: str
    preconditions: tuple = ()
    reason: str = ""

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self),
                "preconditions": [{"name": n, "passed": bool(p), "detail": d} for n, p, d in self.preconditions]}

    def sentence(self) -> str:
        side = ">" if self.direction == "greater" else "<"
        text = (f"effect {self.effect:+.4g}, 95% interval [{self.low:+.4g}, {self.high:+.4g}] "
                f"against the claim's {side} {self.threshold:g} ({self.test})")
        return f"{text}; {self.reason}" if self.reason else text


def decide(effect: float, low: float, high: float, *, threshold: float = 0.0,
           direction: str = "greater", test: str = "", preconditions=()) -> Verdict:
    """The three-way verdict on "effect > threshold" (``direction="greater"``; "less" flips it):

        held          the whole interval is on the claim's side:   low > threshold
        not held      the whole interval is on the other side:      high <= threshold
        inconclusive  the interval straddles the threshold, or a precondition failed

    ``preconditions``: (name, passed, detail) triples; the first failed one is the reason."""
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', got {direction!r}")
    if not (np.isfinite(effect) and np.isfinite(low) and np.isfinite(high)) or not low <= effect <= high:
        raise ValueError(f"need finite low <= effect <= high, got {low}, {effect}, {high}")
    pre = tuple((str(n), bool(p), str(d)) for n, p, d in preconditions)
    failed = [f"precondition '{n}' failed: {d}" for n, p, d in pre if not p]
    sign = 1.0 if direction == "greater" else -1.0
    lo, hi = sorted((sign * (low - threshold), sign * (high - threshold)))
    if failed:
        outcome, reason = "inconclusive", failed[0]
    elif lo > 0:
        outcome, reason = "held", ""
    elif hi <= 0:
        outcome, reason = "not held", ""
    else:
        outcome, reason = "inconclusive", "the interval contains the threshold"
    return Verdict(outcome, float(effect), float(low), float(high), float(threshold), direction, test,
                   pre, reason)


def all_parts(parts: dict[str, Verdict]) -> Verdict:
    """The verdict on a claim that is the conjunction of ``parts`` ({name: Verdict}, each on its
    own effect; the first is the headline):

        held          every part held
        not held      some part did not hold, and every precondition passed
        inconclusive  otherwise (a part is inconclusive, or a precondition of any part failed)

    The effect, interval, threshold and direction are the first part's; the preconditions are
    every part's (once per name); the test and the reason name each part's outcome."""
    if not parts:
        raise ValueError("all_parts needs at least one part")
    first = next(iter(parts.values()))
    pre = tuple({n: (n, p, d) for v in parts.values() for n, p, d in v.preconditions}.values())
    failed = [f"precondition '{n}' failed: {d}" for n, p, d in pre if not p]
    outcomes = [v.outcome for v in parts.values()]
    if failed:
        outcome = "inconclusive"
    elif all(o == "held" for o in outcomes):
        outcome = "held"
    elif "not held" in outcomes:
        outcome = "not held"
    else:
        outcome = "inconclusive"
    each = "; ".join(f"{name}: {v.outcome}, {v.effect:+.4g} [{v.low:+.4g}, {v.high:+.4g}]"
                     f" ({'>' if v.direction == 'greater' else '<'} {v.threshold:g})"
                     for name, v in parts.items())
    reason = f"{failed[0]}; {each}" if failed else each
    test = "; ".join(f"{name} by {v.test}" for name, v in parts.items())
    return dataclasses.replace(first, outcome=outcome, preconditions=pre, reason=reason, test=test)
