"""Arena leaderboards under private testing (Singh et al. 2025, "The Leaderboard Illusion"):
Bradley-Terry scores fitted to pairwise battles, and a simulation of a provider that tests N
variants privately and publishes only the best.

Bradley-Terry: model i beats model j with probability sigma(theta_i - theta_j). Given battles
(winner w_b, loser l_b), the fit minimises

    NLL(theta) = - sum_b log sigma(theta_{w_b} - theta_{l_b}) + (lambda / 2) |theta|^2

(the small ridge fixes the free additive constant and keeps unbeaten models finite).
Scores are reported on the Elo scale, 400 / ln 10 per unit of theta.

Private testing: N variants of one provider share its true skill plus N(0, spread^2) noise;
each plays ``battles_per_model`` battles against the public models; the variant with the best
fitted score is published. Inflation = its fitted score - its true skill, both measured
against the public models' mean (so the gauge cancels). With N = 1 it is zero on average; the
claim is that it grows with N.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

ELO_PER_UNIT = 400.0 / math.log(10.0)


def fit_bradley_terry(winners, losers, n_models: int, *, ridge: float = 1e-3, steps: int = 200) -> np.ndarray:
    """theta [n_models] minimising the ridge-penalised NLL (module docstring), by L-BFGS."""
    w = jnp.asarray(winners, jnp.int32)
    l = jnp.asarray(losers, jnp.int32)
    if w.shape != l.shape or w.ndim != 1:
        raise ValueError(f"winners and losers must be 1-D of one length, got {w.shape} and {l.shape}")
    return np.asarray(_fit(w, l, jnp.float32(ridge), n_models, steps))


@functools.partial(jax.jit, static_argnums=(3, 4))
def _fit(w, l, ridge, n_models: int, steps: int):
    def nll(theta):
        return -jnp.sum(jax.nn.log_sigmoid(theta[w] - theta[l])) + 0.5 * ridge * jnp.sum(theta ** 2)

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(nll)

    def body(carry, _):
        theta, state = carry
        value, grad = value_and_grad(theta, state=state)
        updates, state = opt.update(grad, state, theta, value=value, grad=grad, value_fn=nll)
        return (optax.apply_updates(theta, updates), state), None

    theta = jnp.zeros(n_models, jnp.float32)
    (theta, _), _ = jax.lax.scan(body, (theta, opt.init(theta)), None, length=steps)
    return theta


def simulate_battles(rng: np.random.Generator, skill: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(winners, losers) of battles between the model pairs [B, 2], drawn from the BT model."""
    i, j = pairs[:, 0], pairs[:, 1]
    p_i = 1.0 / (1.0 + np.exp(-(skill[i] - skill[j])))
    i_wins = rng.random(len(pairs)) < p_i
    return np.where(i_wins, i, j), np.where(i_wins, j, i)


def private_testing_inflation(seed: int, n_variants: int, *, n_public: int = 10, spread: float = 0.0,
                              battles_per_model: int = 200) -> float:
    """Elo inflation of the published best of ``n_variants`` private variants (module docstring)."""
    rng = np.random.default_rng(seed)
    public = rng.normal(0.0, 1.0, n_public)
    provider = rng.normal(0.0, 1.0)
    variants = provider + rng.normal(0.0, spread, n_variants) if spread > 0 else np.full(n_variants, provider)
    skill = np.concatenate([public, variants])
    pairs = []
    for v in range(n_public, n_public + n_variants):  # each variant plays the public models
        pairs.append(np.stack([np.full(battles_per_model, v), rng.integers(0, n_public, battles_per_model)], 1))
    a = rng.integers(0, n_public, battles_per_model * n_public)  # public models among themselves
    b = (a + rng.integers(1, n_public, a.size)) % n_public
    pairs.append(np.stack([a, b], 1))
    winners, losers = simulate_battles(rng, skill, np.concatenate(pairs))
    theta = fit_bradley_terry(winners, losers, len(skill))
    best = n_public + int(np.argmax(theta[n_public:]))
    fitted = theta[best] - theta[:n_public].mean()
    true = skill[best] - public.mean()
    return float(ELO_PER_UNIT * (fitted - true))
