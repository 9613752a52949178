"""The speculative acceptance rule: emitted tokens follow the target's distribution whatever
the draft (chi-square tests on a small vocabulary), greedy mode reproduces the target's argmax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.samplers.speculative import accept_draft

P = np.array([[0.5, 0.2, 0.2, 0.1], [0.1, 0.6, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]], np.float32)
Q = np.array([[0.1, 0.1, 0.4, 0.4], [0.7, 0.1, 0.1, 0.1]], np.float32)  # a poor draft


def chi_square_p(counts, probs):
    """Pearson's chi-square goodness-of-fit p-value (survival function of chi2 with k-1 dof,
    k = 4 here: closed form for 3 dof)."""
    n = counts.sum()
    stat = float(((counts - n * probs) ** 2 / (n * probs)).sum())
    from math import erfc, exp, pi, sqrt
    x = stat / 2
    return erfc(sqrt(x)) + 2 * sqrt(x / pi) * exp(-x)  # chi2 sf, 3 degrees of freedom


@pytest.fixture(scope="module")
def outcomes():
    """20,000 independent steps with gamma = 2: drafts sampled from Q, checked against P."""
    N = 20_000
    key = jax.random.key(0)
    k_draft, k_accept = jax.random.split(key)
    draft = jax.random.categorical(k_draft, jnp.log(jnp.asarray(Q))[None].repeat(N, 0), axis=-1)
    p = jnp.asarray(P)[None].repeat(N, 0)
    q = jnp.asarray(Q)[None].repeat(N, 0)
    n, nxt = jax.jit(accept_draft)(p, q, draft, k_accept)
    return np.asarray(draft), np.asarray(n), np.asarray(nxt)


def test_first_and_second_tokens_follow_the_target(outcomes):
    draft, n, nxt = outcomes
    first = np.where(n >= 1, draft[:, 0], nxt)
    assert chi_square_p(np.bincount(first, minlength=4), P[0]) > 1e-3
    # the second token exists when the first was accepted; given that, it follows P[1]
    second = np.where(n >= 2, draft[:, 1], nxt)[n >= 1]
    assert chi_square_p(np.bincount(second, minlength=4), P[1]) > 1e-3
    # acceptance rate of the first token is sum_v min(p, q)
    assert abs((n >= 1).mean() - np.minimum(P[0], Q[0]).sum()) < 0.01
    # a rule that always accepts would give the draft's distribution: the test can tell
    assert chi_square_p(np.bincount(draft[:, 0], minlength=4), P[0]) < 1e-6


def test_all_accepted_ends_with_the_bonus_token_from_the_last_distribution():
    p = jnp.asarray(np.stack([np.eye(4)[1], np.eye(4)[2], np.eye(4)[3]]))[None]  # certain target
    q = jnp.asarray(np.stack([np.eye(4)[1], np.eye(4)[2]]))[None]
    n, nxt = accept_draft(p, q, jnp.array([[1, 2]]), jax.random.key(1))
    assert int(n[0]) == 2 and int(nxt[0]) == 3
    # a draft token the target gives zero probability is always rejected, and the residual
    # never emits it
    n, nxt = accept_draft(p, jnp.asarray(np.stack([np.eye(4)[0], np.eye(4)[2]]))[None], jnp.array([[0, 2]]),
                          jax.random.key(2))
    assert int(n[0]) == 0 and int(nxt[0]) == 1


def test_greedy_mode_reproduces_the_target_argmax():
    p = jnp.asarray(P)[None].repeat(3, 0)
    q = jnp.asarray(Q)[None].repeat(3, 0)
    drafts = jnp.array([[0, 1], [0, 3], [2, 1]])
    n, nxt = accept_draft(p, q, drafts, jax.random.key(3), greedy=True)
    assert n.tolist() == [2, 1, 0] and nxt.tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="gamma"):
        accept_draft(p[:, :2], q, drafts, jax.random.key(3))
