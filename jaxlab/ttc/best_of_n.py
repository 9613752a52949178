"""Best-of-N selection by a verifier's scores, and its accuracy as a function of N.

Each of P problems has N candidate solutions with a verifier score s_pn (higher = more likely
correct) and a 0/1 label c_pn (whether the candidate is correct). Best-of-N picks the
candidate with the highest score:

    T_p   = {n : s_pn = max_m s_pm}                  (the tied top candidates)
    acc_p = (1 / |T_p|) sum_{n in T_p} c_pn           (a uniformly random tie-break, in
                                                       expectation; no tie: c_p,argmax)

Best-of-k for k <= N uses the first k candidates of each problem (samples are i.i.d., so
the first k are a random k of them). NumPy only.
"""

from __future__ import annotations

import numpy as np


def _check(scores_PN, correct_PN) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores_PN, np.float64)
    c = np.asarray(correct_PN, np.float64)
    if s.ndim != 2 or s.shape != c.shape or s.shape[1] == 0:
        raise ValueError(f"scores and labels need one shape [P, N] with N >= 1, got "
                         f"{np.shape(scores_PN)} and {np.shape(correct_PN)}")
    if not np.all(np.isfinite(s)):
        raise ValueError("best-of-N scores must be finite")
    return s, c


def best_of_n(scores_PN, correct_PN) -> np.ndarray:
    """acc_p of best-of-N selection per problem, [P] float64 (module docstring: the mean
    label of the candidates tied at the top score)."""
    s, c = _check(scores_PN, correct_PN)
    top_PN = s == s.max(axis=1, keepdims=True)
    return (top_PN * c).sum(axis=1) / top_PN.sum(axis=1)


def best_of_k_curve(scores_PN, correct_PN, ks) -> dict[int, float]:
    """{k: mean over problems of :func:`best_of_n` on the first k candidates} for each k in
    ``ks`` (1 <= k <= N)."""
    s, c = _check(scores_PN, correct_PN)
    out = {}
    for k in ks:
        if not 1 <= int(k) <= s.shape[1]:
            raise ValueError(f"k={k} must lie in [1, {s.shape[1]}]")
        out[int(k)] = float(best_of_n(s[:, :k], c[:, :k]).mean())
    return out
