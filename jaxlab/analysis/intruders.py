"""Intruder dimensions: singular vectors a fine-tune brings in (or loses), after Shuttleworth
et al. 2024, "LoRA vs Full Fine-tuning: An Illusion of Equivalence" (arXiv 2410.21228).

With the SVDs W0 = U0 S0 V0^T (pre-trained) and W = U S V^T (fine-tuned), singular vectors
ordered by decreasing singular value, the similarity of a unit vector y to a basis X is

    sim(y, X) = max_i |cos(y, x_i)| = max_i |<y, x_i>|

Two definitions are counted, each over the top ``k`` singular vectors and a threshold epsilon:

    intruders (the paper's)   #{ j <= k : sim(u_j, U0) < epsilon }
        a high-ranking singular vector of the fine-tuned W that is dissimilar to every
        singular vector of W0: a new direction the fine-tune brought in.
    lost (a review's reading) #{ i <= k : sim(u0_i, U) < epsilon }
        a high-ranking singular vector of W0 that no singular vector of W resembles: a
        pre-trained direction the fine-tune removed.

Both compare against *all* singular vectors of the other matrix (the full thin SVD), so for a
square full-rank W0 the reference is an orthonormal basis and sim >= 1/sqrt(n) always. The
left singular vectors (columns of U, the input side of a kernel read as [n_in, n_out]) are the
default, as in the paper; ``side="right"`` uses the columns of V.

    sims = matrix_similarities(w0_NM, w_NM, k=10)       # {"intruder_K": .., "lost_K": ..}
    count_below(sims["intruder_K"], 0.5)                  # intruders at epsilon = 0.5
    per_matrix = model_similarities(params0, params, targets="all", k=10)
    counts_E = total_counts(per_matrix, "intruder", epsilons)   # summed over the matrices

A kernel stacked over layers ([L, ...]) is L matrices, named ``layers/attn/q[0]`` etc.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFINITIONS = ("intruder", "lost")
SIDES = ("left", "right")


def singular_vectors(w_NM, side: str = "left") -> tuple[np.ndarray, np.ndarray]:
    """(vectors, s): the thin SVD's singular vectors of ``w_NM`` as unit columns ordered by
    decreasing singular value s (float64): U [n, min(n, m)] for ``side="left"``, V [m, min(n, m)]
    for "right"."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    w = np.asarray(w_NM, np.float64)
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"need a non-empty 2-D matrix, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("the matrix has a non-finite entry")
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    return (u if side == "left" else vt.T), s


def max_abs_cosine(queries_NK, reference_NR) -> np.ndarray:
    """[K]: for each unit column y_k of ``queries_NK``, max_r |<y_k, x_r>| over the unit columns
    of ``reference_NR`` (the cosine, both being unit vectors)."""
    q, r = np.asarray(queries_NK, np.float64), np.asarray(reference_NR, np.float64)
    if q.ndim != 2 or r.ndim != 2 or q.shape[0] != r.shape[0]:
        raise ValueError(f"need [n, K] queries and [n, R] references of one n, got {q.shape} and {r.shape}")
    return np.abs(q.T @ r).max(axis=1)


def matrix_similarities(w0_NM, w_NM, k: int = 10, side: str = "left") -> dict[str, np.ndarray]:
    """{"intruder_K": sim(u_j, U0) for the top-k singular vectors u_j of W,
    "lost_K": sim(u0_i, U) for the top-k singular vectors u0_i of W0} (module docstring).
    k is capped at min(n, m)."""
    w0, w = np.asarray(w0_NM), np.asarray(w_NM)
    if w0.shape != w.shape:
        raise ValueError(f"W0 and W must have one shape, got {w0.shape} and {w.shape}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    x0, _ = singular_vectors(w0, side)
    x, _ = singular_vectors(w, side)
    k = min(int(k), x.shape[1])
    return {"intruder_K": max_abs_cosine(x[:, :k], x0), "lost_K": max_abs_cosine(x0[:, :k], x)}


def count_below(sim_K, epsilon: float) -> int:
    """#{ j : sim_j < epsilon }: the intruder (or lost) count of one matrix at ``epsilon``."""
    if not 0.0 <= float(epsilon) <= 1.0:
        raise ValueError(f"epsilon must be a cosine threshold in [0, 1], got {epsilon}")
    return int(np.sum(np.asarray(sim_K) < epsilon))


def kernel_matrices(params: dict, targets: str = "all") -> dict[str, np.ndarray]:
    """{name: [n, m] float64} of every kernel ``targets`` selects (the adapter targets of
    :mod:`jaxlab.peft.adapters`: "attn", "qv", "mlp", "all" or a regular expression), each read
    as a matrix [n_in, n_out]; a kernel stacked over layers gives ``path[l]`` for each layer l."""
    from jaxlab.peft.adapters import AdapterSpec, _layout, targeted

    out = {}
    for path, w in sorted(targeted(params, AdapterSpec(targets=targets)).items()):
        lead, n, m = _layout(path, w)
        w = np.asarray(w, np.float64)
        if lead:
            for i, w_nm in enumerate(w.reshape(-1, n, m)):
                out[f"{path}[{i}]"] = w_nm
        else:
            out[path] = w.reshape(n, m)
    return out


def model_similarities(params0: dict, params: dict, *, targets: str = "all", k: int = 10,
                       side: str = "left") -> dict[str, dict[str, np.ndarray]]:
    """{matrix name: :func:`matrix_similarities`} over the kernels ``targets`` selects in both
    the pre-trained ``params0`` and the fine-tuned ``params``."""
    m0, m1 = kernel_matrices(params0, targets), kernel_matrices(params, targets)
    if m0.keys() != m1.keys():
        raise ValueError(f"the two models have different kernels: {sorted(m0.keys() ^ m1.keys())}")
    return {name: matrix_similarities(m0[name], m1[name], k, side) for name in m0}


def counts_per_matrix(per_matrix: dict, definition: str, epsilon: float) -> dict[str, int]:
    """{matrix name: count} of ``definition`` ("intruder" or "lost") at ``epsilon``."""
    if definition not in DEFINITIONS:
        raise ValueError(f"definition must be one of {DEFINITIONS}, got {definition!r}")
    return {name: count_below(s[f"{definition}_K"], epsilon) for name, s in per_matrix.items()}


def total_counts(per_matrix: dict, definition: str, epsilons: Sequence[float]) -> np.ndarray:
    """int [E]: the count of ``definition`` summed over every matrix, at each epsilon (the
    threshold sweep)."""
    return np.array([sum(counts_per_matrix(per_matrix, definition, e).values()) for e in epsilons], np.int64)
