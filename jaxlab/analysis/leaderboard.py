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

Rank agreement (:func:`ranking_agreement`): how well the fitted scores order the models, as
Kendall's tau between fitted and true skill, when battles are not spread evenly (a few models
are sampled ``boost`` times as often as the rest, as proprietary models are on public arenas)
and when models are deprecated: the arena runs in two phases, skills drift by N(0, drift^2)
between them (the prompt mix changes), and the deprecated models play in the first phase
only. The ranking is scored against the second phase's (current) skills.
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


def kendall_tau(a, b) -> float:
    """Kendall's tau-a of two score vectors: (concordant - discordant pairs) / (n choose 2),
    a pair (i, j) concordant when sign(a_i - a_j) = sign(b_i - b_j) != 0."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"kendall_tau needs two 1-D arrays of one length >= 2, got {a.shape} and {b.shape}")
    i, j = np.triu_indices(a.size, k=1)
    return float(np.sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])) / i.size)


def _battle_pairs(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """[n, 2] pairs of distinct models, each side drawn with probability proportional to ``weights``."""
    p = weights / weights.sum()
    a = rng.choice(weights.size, size=n, p=p)
    b = rng.choice(weights.size, size=n, p=p)
    clash = a == b
    while clash.any():  # redraw the second side of self-pairs
        b[clash] = rng.choice(weights.size, size=int(clash.sum()), p=p)
        clash = a == b
    return np.stack([a, b], 1)


def ranking_agreement(seed: int, *, n_models: int = 20, battles: int = 4000, boosted_fraction: float = 0.0,
                      boost: float = 5.0, deprecated_fraction: float = 0.0, drift: float = 0.0) -> float:
    """Kendall's tau between the fitted Bradley-Terry scores and the current true skills
    (module docstring). ``battles`` are split evenly between the two phases; in each, a pair is
    drawn with probability proportional to the models' weights (``boost`` for the first
    ``boosted_fraction`` of the models, 1 for the rest; deprecated models weigh 0 in the second
    phase). With no boost, deprecation or drift this measures the fit's own noise."""
    if not 0.0 <= boosted_fraction <= 1.0 or not 0.0 <= deprecated_fraction < 1.0:
        raise ValueError(f"boosted_fraction must be in [0, 1] and deprecated_fraction in [0, 1), got "
                         f"{boosted_fraction} and {deprecated_fraction}")
    if n_models < 3 or battles < 2:
        raise ValueError(f"need n_models >= 3 and battles >= 2, got {n_models} and {battles}")
    rng = np.random.default_rng(seed)
    skill_1 = rng.normal(0.0, 1.0, n_models)
    skill_2 = skill_1 + rng.normal(0.0, drift, n_models) if drift > 0 else skill_1
    order = rng.permutation(n_models)  # which models are boosted / deprecated: unrelated to skill
    weights = np.ones(n_models)
    weights[order[:int(round(boosted_fraction * n_models))]] = boost
    late = weights.copy()
    n_deprecated = int(round(deprecated_fraction * n_models))
    late[order[n_models - n_deprecated:]] = 0.0
    if np.count_nonzero(late) < 2:
        raise ValueError("fewer than two models are left after deprecation")
    w1, l1 = simulate_battles(rng, skill_1, _battle_pairs(rng, weights, battles // 2))
    w2, l2 = simulate_battles(rng, skill_2, _battle_pairs(rng, late, battles - battles // 2))
    theta = fit_bradley_terry(np.concatenate([w1, w2]), np.concatenate([l1, l2]), n_models)
    return kendall_tau(theta, skill_2)
