"""Representation geometry: effective rank (RankMe, Garrido et al. 2023) and eigenspectrum
decay (alpha-ReQ, Agrawal et al. 2022), as tracked over training by "Tracing the
Representation Geometry of Language Models".

For representations Z [N, D] with singular values s_1 >= ... >= s_r:

    RankMe(Z)  = exp( - sum_k p_k log p_k ),   p_k = s_k / sum_j s_j + eps
    alpha-ReQ  = the slope alpha of the least-squares fit  log lambda_k = c - alpha log k
                 over ranks k in [k_min, k_max], lambda_k the eigenvalues of the covariance of Z

A higher RankMe spreads the representation over more directions; a larger alpha concentrates
it in the top few.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def rankme(z_ND) -> float:
    """RankMe (module docstring): between 1 and min(N, D)."""
    s = np.linalg.svd(np.asarray(z_ND, np.float64), compute_uv=False)
    if s.sum() <= 0:
        raise ValueError("RankMe of an all-zero representation is undefined")
    p = s / s.sum() + EPS
    return float(np.exp(-(p * np.log(p)).sum()))


def eigenspectrum(z_ND) -> np.ndarray:
    """Eigenvalues of the covariance of Z (rows centred), largest first."""
    z = np.asarray(z_ND, np.float64)
    z = z - z.mean(0, keepdims=True)
    s = np.linalg.svd(z, compute_uv=False)
    return s ** 2 / max(z.shape[0] - 1, 1)


def alpha_req(z_ND, k_min: int = 1, k_max: int | None = None) -> float:
    """alpha-ReQ (module docstring), fitted over ranks k_min..k_max (1-based; default all
    non-zero eigenvalues)."""
    lam = eigenspectrum(z_ND)
    lam = lam[lam > lam[0] * 1e-12]
    k_max = lam.size if k_max is None else min(k_max, lam.size)
    if k_max - k_min < 1:
        raise ValueError(f"need at least two eigenvalues in ranks [{k_min}, {k_max}]")
    k = np.arange(k_min, k_max + 1)
    slope, _ = np.polyfit(np.log(k), np.log(lam[k_min - 1:k_max]), 1)
    return float(-slope)
