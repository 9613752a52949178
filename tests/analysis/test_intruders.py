"""jaxlab.analysis.intruders: known answers of the two intruder-dimension definitions."""

import numpy as np
import pytest

from jaxlab.analysis import intruders


def _orthogonal(rng, n):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q


def _planted(n=48, m=48, k=10, spike=None, seed=0):
    """W0 = U diag(s) V^T with known U, V and distinct singular values; the spike direction u
    (v) is spread evenly over the bottom n - k left (right) singular vectors of W0, so it is
    orthogonal to W0's top-k space and its |cos| with every W0 singular vector is 1/sqrt(n - k)."""
    rng = np.random.default_rng(seed)
    u0, v0 = _orthogonal(rng, n), _orthogonal(rng, m)
    s = np.linspace(10.0, 1.0, min(n, m))
    w0 = (u0[:, :len(s)] * s) @ v0[:, :len(s)].T
    u = u0[:, k:].sum(1) / np.sqrt(n - k)
    v = v0[:, k:].sum(1) / np.sqrt(m - k)
    w = w0 if spike is None else w0 + spike * np.outer(u, v)
    return w0, w, u, n - k


def test_unchanged_matrix_has_no_intruders_and_loses_nothing():
    w0, w, _, _ = _planted()
    sims = intruders.matrix_similarities(w0, w, k=10)
    np.testing.assert_allclose(sims["intruder_K"], 1.0, atol=1e-9)
    np.testing.assert_allclose(sims["lost_K"], 1.0, atol=1e-9)
    for eps in (0.1, 0.5, 0.9, 0.99):
        assert intruders.count_below(sims["intruder_K"], eps) == 0
        assert intruders.count_below(sims["lost_K"], eps) == 0


def test_planted_rank_one_spike_is_exactly_one_intruder():
    w0, w, u, rest = _planted(spike=30.0)  # above W0's largest singular value: u ranks first
    sims = intruders.matrix_similarities(w0, w, k=10)
    # the spike is (nearly: W0's bottom block tilts it a little) the top singular vector of W,
    # and its best match in W0 is near 1/sqrt(n - k) = 0.16
    top, _ = intruders.singular_vectors(w)
    assert abs(top[:, 0] @ u) > 0.99
    assert sims["intruder_K"][0] < 0.3 and sims["intruder_K"][0] == pytest.approx(1 / np.sqrt(rest), abs=0.1)
    np.testing.assert_allclose(sims["intruder_K"][1:], 1.0, atol=1e-6)  # W0's top 9 are intact
    for eps in (0.3, 0.5, 0.9):
        assert intruders.count_below(sims["intruder_K"], eps) == 1
    # U0 is a basis of R^48, so every unit vector has a |cos| >= 1/sqrt(48) = 0.144 with one of it
    assert sims["intruder_K"].min() >= 1 / np.sqrt(48) - 1e-12
    assert intruders.count_below(sims["intruder_K"], 0.14) == 0
    # the other definition: the spike pushes W0's 10th vector out of the top 10 of W, but no
    # pre-trained direction is lost: each top-10 vector of W0 is still a singular vector of W
    assert intruders.count_below(sims["lost_K"], 0.5) == 0


def test_lost_definition_counts_a_removed_direction():
    rng = np.random.default_rng(1)
    n = 32
    u0, v0 = _orthogonal(rng, n), _orthogonal(rng, n)
    s = np.linspace(8.0, 1.0, n)
    w0 = (u0 * s) @ v0.T
    # remove W0's top direction and put a rotated copy in its place: the rotation mixes u0_1
    # evenly over all other left singular vectors (a Householder reflection)
    h = u0[:, 1:].sum(1) / np.sqrt(n - 1)
    r = (u0[:, 0] - h) / np.linalg.norm(u0[:, 0] - h)
    reflect = np.eye(n) - 2 * np.outer(r, r)   # maps u0_1 to h, h to u0_1
    w = reflect @ w0
    sims = intruders.matrix_similarities(w0, w, k=5)
    assert intruders.count_below(sims["lost_K"], 0.5) == 1 and sims["lost_K"][0] < 0.5
    assert intruders.count_below(sims["intruder_K"], 0.5) == 1  # and h is the intruder


def test_right_side_and_validation():
    w0, w, _, _ = _planted(n=40, m=24, spike=30.0, k=8)
    assert intruders.count_below(intruders.matrix_similarities(w0, w, k=8, side="right")["intruder_K"], 0.5) == 1
    with pytest.raises(ValueError, match="side"):
        intruders.singular_vectors(w0, side="middle")
    with pytest.raises(ValueError, match="one shape"):
        intruders.matrix_similarities(w0, w0[:, :3])
    with pytest.raises(ValueError, match="epsilon"):
        intruders.count_below([0.5], 1.5)
    with pytest.raises(ValueError, match="definition"):
        intruders.counts_per_matrix({}, "new", 0.5)


def test_model_level_counts_name_each_layer_and_sum():
    rng = np.random.default_rng(0)
    # the attention kernels of a 2-layer model (d_model 32, 2 heads of 16): [L, d, H, hd], o [L, H, hd, d]
    attn = {m: {"kernel": rng.normal(size=(2, 32, 2, 16)) / 6} for m in "qkv"}
    attn["o"] = {"kernel": rng.normal(size=(2, 2, 16, 32)) / 6}
    p0 = {"embed": {"embedding": rng.normal(size=(64, 32))}, "layers": {"attn": attn}}
    q = np.array(attn["q"]["kernel"])
    u = rng.normal(size=32)
    u /= np.linalg.norm(u)
    q[1] += 50.0 * np.einsum("n,hd->nhd", u, np.ones((2, 16)) / np.sqrt(32))  # a spike in layer 1 only
    p1 = {**p0, "layers": {"attn": {**attn, "q": {"kernel": q}}}}
    per = intruders.model_similarities(p0, p1, targets="attn", k=4)
    assert sorted(per) == [f"layers/attn/{m}[{i}]" for m in "koqv" for i in range(2)]
    counts = intruders.counts_per_matrix(per, "intruder", 0.6)
    assert counts["layers/attn/q[1]"] == 1 and sum(counts.values()) == 1
    np.testing.assert_array_equal(intruders.total_counts(per, "intruder", [0.0, 0.6]), [0, 1])
