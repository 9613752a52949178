"""Logits processors: hand-computed examples, a numpy reference and hypothesis invariants."""

import chex
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxlab.samplers import (
    SampleConfig,
    apply_temperature,
    min_p_filter,
    process_logits,
    top_k_filter,
    top_k_mask,
    top_p_filter,
    top_p_mask,
)

# probs 0.4, 0.3, 0.2, 0.1 in a shuffled order (token ids 2, 0, 3, 1 by decreasing prob)
PROBS_V = np.array([0.3, 0.1, 0.4, 0.2])
LOGITS_1V = jnp.log(jnp.asarray(PROBS_V, jnp.float32))[None]


def kept(logits_1V):
    return set(np.flatnonzero(np.isfinite(np.asarray(logits_1V)[0])).tolist())


def softmax64(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------- temperature


def test_temperature_scales_logits_and_sharpens():
    logits_BV = jax.random.normal(jax.random.PRNGKey(0), (3, 10))
    out = apply_temperature(logits_BV, 0.5)
    chex.assert_trees_all_close(out, logits_BV * 2.0, rtol=1e-6)
    chex.assert_trees_all_close(apply_temperature(logits_BV, 1.0), logits_BV)
    # p_t(v) proportional to p(v)^(1/t)
    p_t = softmax64(logits_BV) ** 2
    np.testing.assert_allclose(jax.nn.softmax(out), p_t / p_t.sum(-1, keepdims=True), rtol=1e-5)
    # lower temperature puts more mass on the argmax
    assert np.all(np.max(jax.nn.softmax(out), -1) > np.max(jax.nn.softmax(logits_BV), -1))
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            apply_temperature(logits_BV, bad)


# ---------------------------------------------------------------- top-k


def test_top_k_keeps_exactly_k_largest_and_renormalises():
    logits_BV = jax.random.normal(jax.random.PRNGKey(1), (5, 17))
    for k in (1, 3, 16):
        out_BV = top_k_filter(logits_BV, k)
        keep_BV = np.isfinite(np.asarray(out_BV))
        np.testing.assert_array_equal(keep_BV.sum(-1), k)
        largest_Bk = np.argsort(-np.asarray(logits_BV), axis=-1)[:, :k]
        for b in range(5):
            assert set(np.flatnonzero(keep_BV[b])) == set(largest_Bk[b])
        # kept logits unchanged; renormalised mass p_v / sum_kept p
        np.testing.assert_array_equal(np.asarray(out_BV)[keep_BV], np.asarray(logits_BV)[keep_BV])
        p_BV = softmax64(logits_BV)
        expect_BV = np.where(keep_BV, p_BV, 0.0) / np.where(keep_BV, p_BV, 0.0).sum(-1, keepdims=True)
        np.testing.assert_allclose(jax.nn.softmax(out_BV), expect_BV, rtol=1e-5, atol=1e-7)


def test_top_k_ties_break_to_lower_id_and_off_values():
    logits_1V = jnp.array([[0.0, 2.0, 1.0, 2.0, 2.0]])
    assert kept(top_k_filter(logits_1V, 2)) == {1, 3}
    assert kept(top_k_filter(logits_1V, 4)) == {0, 1, 2, 3, 4} - {0}
    assert top_k_mask(logits_1V, 0).all() and top_k_mask(logits_1V, 5).all()
    assert top_k_mask(logits_1V, 99).all()
    with pytest.raises(ValueError, match="top_k"):
        top_k_mask(logits_1V, -1)


# ---------------------------------------------------------------- top-p


@pytest.mark.parametrize("p, expect", [
    (1e-6, {2}),            # the top token always survives
    (0.35, {2}),            # 0.4 >= 0.35
    (0.6, {2, 0}),          # 0.4 < 0.6 <= 0.7
    (0.85, {2, 0, 3}),      # 0.7 < 0.85 <= 0.9
    (0.95, {2, 0, 3, 1}),
    (1.0, {2, 0, 3, 1}),
])
def test_top_p_minimal_nucleus_hand_example(p, expect):
    assert kept(top_p_filter(LOGITS_1V, p)) == expect
    out = top_p_filter(LOGITS_1V, p)
    np.testing.assert_allclose(
        np.exp(jax.nn.log_softmax(out))[0, sorted(expect)],
        PROBS_V[sorted(expect)] / PROBS_V[sorted(expect)].sum(), rtol=1e-5)


def test_top_p_rejects_out_of_range():
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="top_p"):
            top_p_filter(LOGITS_1V, bad)


_top_p_mask_jit = jax.jit(top_p_mask)  # p traced: one compile for every example
# (no subnormal logits: XLA on CPU flushes them to zero, numpy does not)
V_MAX = 40


@settings(max_examples=60, deadline=None)
@given(logits_V=hnp.arrays(np.float32, st.integers(2, V_MAX),
                           elements=st.floats(-8, 8, width=32, allow_subnormal=False)),
       p=st.floats(0.01, 1.0))
def test_top_p_nucleus_is_minimal(logits_V, p):
    V = logits_V.size
    # pad to one shape with -inf logits (already-filtered tokens), which must never be kept
    padded_1V = np.full((1, V_MAX), -np.inf, np.float32)
    padded_1V[0, :V] = logits_V
    keep_all_V = np.asarray(_top_p_mask_jit(jnp.asarray(padded_1V), jnp.float32(p)))[0]
    assert not keep_all_V[V:].any()
    keep_V = keep_all_V[:V]
    probs_V = softmax64(logits_V)
    mass = probs_V[keep_V].sum()
    # float32 arithmetic inside the filter: allow 1e-5 of rounding at the boundary
    assert mass >= p - 1e-5
    assert mass - probs_V[keep_V].min() < p + 1e-5
    # the kept set is a set of highest-probability tokens
    if not keep_V.all():
        assert probs_V[keep_V].min() >= probs_V[~keep_V].max() - 1e-7
    assert keep_V[np.argmax(logits_V)]


# ---------------------------------------------------------------- min-p


@pytest.mark.parametrize("min_p, expect", [
    (0.0, {0, 1, 2, 3}),
    (0.2, {2, 0, 3, 1}),    # threshold 0.2 * 0.4 = 0.08: 0.1 survives
    (0.3, {2, 0, 3}),       # threshold 0.12: drops 0.1
    (0.6, {2, 0}),          # threshold 0.24
    (0.9, {2}),             # threshold 0.36
    (1.0, {2}),
])
def test_min_p_hand_example(min_p, expect):
    assert kept(min_p_filter(LOGITS_1V, min_p)) == expect


# ---------------------------------------------------------------- process_logits


def reference_process(logits_BV, cfg):
    """A plain-numpy, row-by-row statement of the processed distribution (float64)."""
    out = []
    for row in np.asarray(logits_BV, np.float64):
        V = row.size
        if cfg.temperature == 0:
            lp = np.full(V, -np.inf)
            lp[np.argmax(row)] = 0.0
            out.append(lp)
            continue
        x = row / cfg.temperature
        order = sorted(range(V), key=lambda v: (-x[v], v))
        keep = np.ones(V, bool)
        if 0 < cfg.top_k < V:
            keep[:] = False
            keep[order[:cfg.top_k]] = True
        p = np.where(keep, np.exp(x - x.max()), 0.0)
        p /= p.sum()
        mass, nucleus = 0.0, np.zeros(V, bool)
        for v in order:
            if keep[v] and mass < cfg.top_p:
                nucleus[v] = True
                mass += p[v]
        keep &= nucleus
        p = np.where(keep, p, 0.0) / np.where(keep, p, 0.0).sum()
        keep &= p >= cfg.min_p * p.max()
        z = np.where(keep, x, -np.inf)
        out.append(z - np.log(np.sum(np.exp(z[keep] - z[keep].max()))) - z[keep].max())
    return np.stack(out)


def test_process_logits_order_top_k_then_top_p():
    # top-k 2 renormalises (0.4, 0.3) to (4/7, 3/7); top-p 0.5 then keeps only token 2.
    # (top-p on the raw distribution would keep both: mass before token 0 is 0.4 < 0.5.)
    lp = process_logits(LOGITS_1V, SampleConfig(top_k=2, top_p=0.5))
    assert kept(lp) == {2}
    np.testing.assert_allclose(lp[0, 2], 0.0, atol=1e-6)
    lp = process_logits(LOGITS_1V, SampleConfig(top_k=3, top_p=0.6))
    np.testing.assert_allclose(np.exp(lp[0, [2, 0]]), [4 / 7, 3 / 7], rtol=1e-5)


@pytest.mark.parametrize("cfg", [
    SampleConfig(),
    SampleConfig(temperature=0.0, top_k=3),
    SampleConfig(temperature=0.7, top_k=5),
    SampleConfig(temperature=1.3, top_p=0.8),
    SampleConfig(temperature=0.5, min_p=0.1),
    SampleConfig(temperature=2.0, top_k=10, top_p=0.7, min_p=0.05),
])
def test_process_logits_matches_numpy_reference(cfg):
    logits_BV = 2.0 * jax.random.normal(jax.random.PRNGKey(3), (6, 24))
    lp_BV = jax.jit(process_logits, static_argnums=1)(logits_BV, cfg)
    chex.assert_shape(lp_BV, (6, 24))
    chex.assert_type(lp_BV, jnp.float32)
    ref_BV = reference_process(logits_BV, cfg)
    np.testing.assert_array_equal(np.isfinite(lp_BV), np.isfinite(ref_BV))
    finite = np.isfinite(ref_BV)
    np.testing.assert_allclose(np.asarray(lp_BV)[finite], ref_BV[finite], atol=1e-5)
    np.testing.assert_allclose(np.exp(lp_BV).sum(-1), 1.0, atol=1e-5)
