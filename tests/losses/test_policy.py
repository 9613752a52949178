import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxlab.losses.policy import (
    AGGREGATIONS,
    dr_grpo_advantages,
    grpo_advantages,
    kl_penalized_rewards,
    kl_penalty,
    normalize_policy_sums,
    policy_loss,
    policy_loss_sums,
    rloo_advantages,
)

LN2 = np.log(2.0)


# --- advantages -------------------------------------------------------------------------------

def test_grpo_advantages_hand_computed():
    # Row 0: mean 0.5, Bessel std sqrt((4 * 0.25) / 3) = sqrt(1/3); A = +-0.5 / (sqrt(1/3) + eps).
    # Row 1: equal rewards -> exactly 0 (zero-std group).
    adv = grpo_advantages(jnp.array([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]]), eps=1e-6)
    a = 0.5 / (np.sqrt(1 / 3) + 1e-6)
    np.testing.assert_allclose(adv, [[a, -a, -a, a], [0, 0, 0, 0]], rtol=1e-6)
    assert np.all(np.asarray(adv[1]) == 0.0)


def test_dr_grpo_advantages_hand_computed():
    # mean 1/3: A = r - 1/3, no std division.
    adv = dr_grpo_advantages(jnp.array([[1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(adv, [[2 / 3, -1 / 3, -1 / 3]], rtol=1e-6)


def test_rloo_advantages_hand_computed():
    # A_i = r_i - mean of the others: 1 - (0 + 0)/2 = 1, 0 - (1 + 0)/2 = -0.5.
    adv = rloo_advantages(jnp.array([[1.0, 0.0, 0.0], [3.0, 1.0, 2.0]]))
    np.testing.assert_allclose(adv, [[1.0, -0.5, -0.5], [3 - 1.5, 1 - 2.5, 2 - 2.0]], rtol=1e-6)


def test_group_id_form_handles_unequal_and_singleton_groups():
    rewards = jnp.array([1.0, 0.0, 5.0, 2.0, 4.0])
    ids = jnp.array([0, 0, 1, 2, 2])  # groups {1, 0}, {5} (singleton), {2, 4}
    # Bessel std: of {1, 0} sqrt(0.5), of {2, 4} sqrt(2); both give A = +-1 / sqrt(2)
    h = 1 / np.sqrt(2)
    np.testing.assert_allclose(grpo_advantages(rewards, ids, eps=0.0), [h, -h, 0.0, -h, h], rtol=1e-6)
    np.testing.assert_allclose(dr_grpo_advantages(rewards, ids), [0.5, -0.5, 0.0, -1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(rloo_advantages(rewards, ids), [1.0, -1.0, 0.0, -2.0, 2.0], rtol=1e-6)


@pytest.mark.parametrize("fn", [grpo_advantages, dr_grpo_advantages, rloo_advantages])
def test_singleton_and_zero_std_groups_give_exact_zeros(fn):
    # 0.1 is inexact in binary: the group mean differs from 0.1 by rounding, yet A must be 0.
    for rewards in ([[3.0]], [[0.1, 0.1, 0.1]], [[0.0, 0.0]]):
        adv = np.asarray(fn(jnp.array(rewards)))
        assert np.all(adv == 0.0) and np.all(np.isfinite(adv)), (fn.__name__, rewards, adv)


@pytest.mark.parametrize("fn", [grpo_advantages, dr_grpo_advantages, rloo_advantages])
def test_group_id_form_equals_the_matrix_form(fn):
    rewards_BG = jax.random.uniform(jax.random.key(0), (3, 5))
    flat = fn(rewards_BG.reshape(-1), jnp.repeat(jnp.arange(3), 5), num_groups=3)
    np.testing.assert_allclose(flat.reshape(3, 5), fn(rewards_BG), rtol=1e-6)
    # advantages sum to 0 within each group (all three estimators centre the rewards)
    np.testing.assert_allclose(np.asarray(fn(rewards_BG)).sum(-1), 0.0, atol=1e-5)


def test_advantage_input_errors():
    with pytest.raises(ValueError, match=r"\[B, G\]"):
        grpo_advantages(jnp.ones(4))
    with pytest.raises(ValueError, match="integers"):
        grpo_advantages(jnp.ones(4), jnp.zeros(4))
    with pytest.raises(ValueError, match=r"\[N\]"):
        rloo_advantages(jnp.ones(4), jnp.zeros(3, jnp.int32))
    with pytest.raises(ValueError, match=r"group_ids must lie in \[0, num_groups=2\), got \[0, 2\]"):
        dr_grpo_advantages(jnp.ones(3), jnp.array([0, 1, 2]), num_groups=2)
    # under jit the ids cannot be checked, and the result matches the eager one
    ids = jnp.array([0, 0, 1])
    np.testing.assert_allclose(jax.jit(grpo_advantages)(jnp.array([1.0, 0.0, 2.0]), ids),
                               grpo_advantages(jnp.array([1.0, 0.0, 2.0]), ids), rtol=1e-6)


# --- KL and entropy -------------------------------------------------------------------------

def test_kl_estimators_hand_computed():
    # pi = 0.5, pi_ref = 0.25: d = ln 2; k1 = ln 2, k2 = ln2^2 / 2, k3 = 1/2 - 1 + ln 2.
    logp, ref = jnp.log(jnp.array([0.5, 0.3])), jnp.log(jnp.array([0.25, 0.3]))
    np.testing.assert_allclose(kl_penalty(logp, ref, "k1"), [LN2, 0.0], atol=1e-6)
    np.testing.assert_allclose(kl_penalty(logp, ref, "k2"), [LN2 ** 2 / 2, 0.0], atol=1e-6)
    np.testing.assert_allclose(kl_penalty(logp, ref, "k3"), [0.5 - 1 + LN2, 0.0], atol=1e-6)
    # k2 and k3 are never negative; k1 is where pi < pi_ref
    assert float(kl_penalty(ref[:1], logp[:1], "k1")[0]) < 0
    assert float(kl_penalty(ref[:1], logp[:1], "k3")[0]) > 0
    with pytest.raises(ValueError, match="'k1', 'k2', 'k3'"):
        kl_penalty(logp, ref, "k4")


def test_k1_and_k3_are_unbiased_for_the_exact_kl():
    # E_{y ~ p}[k(log p(y) - log q(y))] over a categorical: k1 and k3 both give KL(p || q).
    p = jnp.array([0.5, 0.3, 0.2])
    q = jnp.array([0.2, 0.2, 0.6])
    exact = float(jnp.sum(p * jnp.log(p / q)))
    for kind in ("k1", "k3"):
        np.testing.assert_allclose(jnp.sum(p * kl_penalty(jnp.log(p), jnp.log(q), kind)), exact, rtol=1e-6)
    # k2 is biased: p = (0.9, 0.1), q = (0.1, 0.9): KL = 0.8 ln 9 but E[k2] = (ln 9)^2 / 2
    p, q = jnp.array([0.9, 0.1]), jnp.array([0.1, 0.9])
    np.testing.assert_allclose(jnp.sum(p * kl_penalty(jnp.log(p), jnp.log(q), "k1")), 0.8 * np.log(9), rtol=1e-6)
    np.testing.assert_allclose(jnp.sum(p * kl_penalty(jnp.log(p), jnp.log(q), "k2")), np.log(9) ** 2 / 2,
                               rtol=1e-6)


def test_kl_penalized_rewards_sequence_and_token_levels():
    logp = jnp.log(jnp.array([[0.5, 0.5, 0.9], [0.5, 0.9, 0.9]]))
    ref = jnp.log(jnp.array([[0.25, 0.5, 0.1], [0.25, 0.9, 0.9]]))
    mask = jnp.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    rewards = jnp.array([1.0, 0.0])
    # k1 per token: row 0: [ln 2, 0, masked]; row 1: [ln 2, 0, 0]; coef 0.5
    seq = kl_penalized_rewards(rewards, logp, ref, mask, kl_coef=0.5)
    np.testing.assert_allclose(seq, [1.0 - 0.5 * LN2, -0.5 * LN2], rtol=1e-6)
    tok = kl_penalized_rewards(rewards, logp, ref, mask, kl_coef=0.5, level="token")
    np.testing.assert_allclose(tok, [[-0.5 * LN2, 1.0, 0.0], [-0.5 * LN2, 0.0, 0.0]], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(tok.sum(-1), seq, rtol=1e-6)
    # an empty row: sequence reward unchanged, token rewards all zero
    empty = kl_penalized_rewards(rewards, logp, ref, jnp.zeros_like(mask), kl_coef=0.5, level="token")
    assert np.all(np.asarray(empty) == 0.0)
    # the penalty is a constant of the update
    g = jax.grad(lambda lp: kl_penalized_rewards(rewards, lp, ref, mask, kl_coef=0.5).sum())(logp)
    assert np.all(np.asarray(g) == 0.0)


# --- the clipped surrogate --------------------------------------------------------------------

# Ratios rho = [1.0, 1.5, 0.5, 1.1] in both rows; row 0 has A = +1 (4 tokens), row 1 A = -2 with
# its last token masked. eps_low 0.2, eps_high 0.28 (DAPO clip-higher): clip range [0.8, 1.28].
RATIOS = np.array([1.0, 1.5, 0.5, 1.1])
OLD = jnp.log(jnp.full((2, 4), 0.5))
LOGP = OLD + jnp.log(jnp.array([RATIOS, RATIOS]))
ADV = jnp.array([1.0, -2.0])
MASK = jnp.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
CLIP = dict(eps_low=0.2, eps_high=0.28)
# Row 0: -min(rho, clip(rho)) = -[1.0, 1.28, 0.5, 1.1], sum -3.88 over 4 tokens.
# Row 1: 2 max(rho, clip(rho)) = [2.0, 3.0, 1.6, (2.2 masked)], sum 6.6 over 3 tokens.
ROW_SUMS, ROW_TOKENS = np.array([-3.88, 6.6]), np.array([4.0, 3.0])


@pytest.mark.parametrize("aggregation, expected", [
    ("token-mean", (-3.88 + 6.6) / 7),                     # every token weighs the same
    ("seq-mean-token-mean", (-3.88 / 4 + 6.6 / 3) / 2),    # every sequence weighs the same
    ("seq-sum-max-length", (-3.88 + 6.6) / (2 * 5)),       # Dr. GRPO with max_len 5
])
def test_clipped_surrogate_hand_computed(aggregation, expected):
    loss, m = policy_loss(LOGP, OLD, ADV, MASK, aggregation=aggregation, max_len=5, **CLIP)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(m["pg_loss"], expected, rtol=1e-5)
    # clip_high: row 0 token 1 (A > 0, rho 1.5 > 1.28); clip_low: row 1 token 2 (A < 0, rho 0.5 < 0.8)
    np.testing.assert_allclose([m["clip_high"], m["clip_low"], m["clip_dual"]], [1 / 7, 1 / 7, 0.0], rtol=1e-6)
    np.testing.assert_allclose(m["ratio"], (RATIOS.sum() + RATIOS[:3].sum()) / 7, rtol=1e-6)
    assert (float(m["tokens"]), float(m["sequences"])) == (7.0, 2.0)


def test_gradient_is_zero_where_the_clip_is_active():
    grad = jax.grad(lambda lp: policy_loss(lp, OLD, ADV, MASK, **CLIP)[0])(LOGP)
    # d(-rho A)/d logp = -rho A on unclipped tokens, 0 on clipped and masked ones; / 7 tokens.
    expected = np.array([[-1.0, 0.0, -0.5, -1.1],   # rho 1.5 > 1.28 with A > 0: clipped
                         [2.0, 3.0, 0.0, 0.0]]) / 7  # rho 0.5 < 0.8 with A < 0: clipped; last masked
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_dual_clip_caps_the_loss_of_negative_advantages():
    # A = -1 and rho = 5: plain clip gives max(5, 1.2) * 1 = 5 (gradient 5); dual clip c = 3 caps it
    # at 3 with no gradient. A positive advantage is untouched by the dual clip.
    old = jnp.zeros((2, 1))
    logp = jnp.full((2, 1), np.log(5.0))
    adv, mask = jnp.array([-1.0, 1.0]), jnp.ones((2, 1))

    def loss(lp, dual):
        return policy_loss(lp, old, adv, mask, aggregation="seq-mean-token-mean", dual_clip=dual)[0]

    # row 1: A = +1, rho 5 -> -min(5, 1.2) = -1.2 (clipped, no gradient)
    np.testing.assert_allclose(loss(logp, None), (5.0 - 1.2) / 2, rtol=1e-5)
    np.testing.assert_allclose(loss(logp, 3.0), (3.0 - 1.2) / 2, rtol=1e-5)
    np.testing.assert_allclose(jax.grad(loss)(logp, None), [[5.0 / 2], [0.0]], rtol=1e-5)
    np.testing.assert_allclose(jax.grad(loss)(logp, 3.0), [[0.0], [0.0]], atol=1e-7)
    _, m = policy_loss(logp, old, adv, mask, dual_clip=3.0)
    np.testing.assert_allclose(m["clip_dual"], 0.5)


def test_sequence_ratio_hand_computed_and_equal_to_token_ratio_for_one_token():
    # log ratios [0.2, -0.4]: sequence ratio exp(-0.1), inside [0.8, 1.2]; A = 1 -> loss -exp(-0.1),
    # gradient -exp(-0.1) / 2 on each token (d rho / d logp_t = rho / |o|).
    old = jnp.zeros((1, 2))
    logp = jnp.array([[0.2, -0.4]])
    fn = functools.partial(policy_loss, old_logp_BT=old, advantages=jnp.ones(1), mask_BT=jnp.ones((1, 2)),
                           ratio_level="sequence", aggregation="seq-mean-token-mean")
    loss, m = fn(logp)
    np.testing.assert_allclose(loss, -np.exp(-0.1), rtol=1e-6)
    np.testing.assert_allclose(m["ratio"], np.exp(-0.1), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda lp: fn(lp)[0])(logp), [[-np.exp(-0.1) / 2] * 2], rtol=1e-5)
    # one token per sequence (the rest masked): sequence ratio == token ratio, values and gradients
    key1, key2 = jax.random.split(jax.random.key(1))
    logp1 = jax.random.normal(key1, (4, 3)) * 0.5
    old1 = jax.random.normal(key2, (4, 3)) * 0.5
    mask1 = jnp.zeros((4, 3)).at[jnp.arange(4), jnp.array([0, 2, 1, 0])].set(1.0)
    adv1 = jnp.array([1.0, -1.0, 0.5, -2.0])

    def at_level(lp, level):
        return policy_loss(lp, old1, adv1, mask1, ratio_level=level, dual_clip=2.0)[0]

    np.testing.assert_allclose(at_level(logp1, "sequence"), at_level(logp1, "token"), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(at_level)(logp1, "sequence"), jax.grad(at_level)(logp1, "token"),
                               rtol=1e-5, atol=1e-7)


def test_kl_in_loss_and_in_reward():
    # rho = 1 (logp == old), A = 0: the loss is kl_coef * KL alone. pi = 0.5 vs pi_ref = 0.25 on both
    # tokens of row 0, pi == pi_ref on row 1: token-mean k1 = (2 ln 2 + 0) / 4.
    logp = jnp.log(jnp.full((2, 2), 0.5))
    ref = jnp.log(jnp.array([[0.25, 0.25], [0.5, 0.5]]))
    kw = dict(ref_logp_BT=ref, kl_coef=0.1, kl_kind="k1")
    loss, m = policy_loss(logp, logp, jnp.zeros(2), jnp.ones((2, 2)), **kw)
    np.testing.assert_allclose(loss, 0.1 * 2 * LN2 / 4, rtol=1e-6)
    np.testing.assert_allclose(m["kl"], 2 * LN2 / 4, rtol=1e-6)
    np.testing.assert_allclose(m["pg_loss"], 0.0, atol=1e-7)
    # kl_in="reward": the loss leaves KL out (it is in the rewards), the metric still reports it
    loss_r, m_r = policy_loss(logp, logp, jnp.zeros(2), jnp.ones((2, 2)), kl_in="reward", **kw)
    np.testing.assert_allclose(loss_r, 0.0, atol=1e-7)
    np.testing.assert_allclose(m_r["kl"], m["kl"], rtol=1e-6)
    # k3 in the loss: gradient of kl_coef * (exp(-d) - 1 + d) w.r.t. logp is kl_coef * (1 - exp(-d)) / 4
    g = jax.grad(lambda lp: policy_loss(lp, logp, jnp.zeros(2), jnp.ones((2, 2)),
                                        ref_logp_BT=ref, kl_coef=0.1, kl_kind="k3")[0])(logp)
    np.testing.assert_allclose(g, [[0.1 * 0.5 / 4] * 2, [0.0, 0.0]], rtol=1e-5, atol=1e-8)


def test_entropy_bonus_and_approx_kl_metric():
    # rho = 1, A = 0: loss = -entropy_coef * mean H over masked tokens = -0.01 * (1 + 2) / 2.
    z = jnp.zeros((1, 3))
    ent = jnp.array([[1.0, 2.0, 100.0]])
    mask = jnp.array([[1.0, 1.0, 0.0]])
    loss, m = policy_loss(z, z, jnp.zeros(1), mask, entropy_BT=ent, entropy_coef=0.01)
    np.testing.assert_allclose(loss, -0.01 * 1.5, rtol=1e-6)
    np.testing.assert_allclose(m["entropy"], 1.5, rtol=1e-6)
    # approx_kl: k3 of KL(pi_old || pi) = exp(d) - 1 - d with d = logp - old = ln 2 -> 1 - ln 2
    _, m = policy_loss(jnp.full((1, 1), LN2), jnp.zeros((1, 1)), jnp.zeros(1), jnp.ones((1, 1)))
    np.testing.assert_allclose(m["approx_kl"], 1 - LN2, rtol=1e-6)


def test_per_token_advantages_broadcast_like_sequence_advantages():
    key = jax.random.key(7)
    logp, old = jax.random.normal(key, (3, 4)) * 0.3, jnp.zeros((3, 4))
    adv = jnp.array([1.0, -0.5, 2.0])
    mask = jnp.ones((3, 4))
    a, _ = policy_loss(logp, old, adv, mask)
    b, _ = policy_loss(logp, old, jnp.broadcast_to(adv[:, None], (3, 4)), mask)
    np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("ratio_level", ["token", "sequence"])
def test_empty_mask_gives_zero_loss_and_no_nan(aggregation, ratio_level):
    # garbage (inf, nan) at masked positions must not leak into the loss, metrics or gradients
    logp = jnp.array([[-jnp.inf, jnp.nan, 0.3]])
    old = jnp.array([[jnp.nan, -jnp.inf, 0.1]])

    def fn(lp):
        return policy_loss(lp, old, jnp.ones(1), jnp.zeros((1, 3)), aggregation=aggregation, max_len=3,
                           ratio_level=ratio_level, ref_logp_BT=old, kl_coef=0.1,
                           entropy_BT=jnp.full((1, 3), jnp.nan), entropy_coef=0.1)

    loss, m = fn(logp)
    assert float(loss) == 0.0
    assert all(np.isfinite(v) and float(v) == 0.0 for v in m.values()), m
    assert np.all(np.asarray(jax.grad(lambda lp: fn(lp)[0])(logp)) == 0.0)


def _random_batch(seed, B=6, T=5):
    keys = jax.random.split(jax.random.key(seed), 6)
    old = jax.random.normal(keys[0], (B, T)) * 0.5 - 1.0
    logp = old + jax.random.normal(keys[1], (B, T)) * 0.3
    ref = old + jax.random.normal(keys[2], (B, T)) * 0.3
    mask = (jax.random.uniform(keys[3], (B, T)) > 0.35).astype(jnp.float32)
    mask = mask.at[0].set(1.0).at[2].set(0.0)  # a full row and an empty row
    adv = jax.random.normal(keys[4], (B,))
    ent = jax.random.uniform(keys[5], (B, T)) * 2
    return logp, old, ref, mask, adv, ent


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("ratio_level", ["token", "sequence"])
def test_accumulated_micro_batches_equal_the_large_batch(aggregation, ratio_level):
    logp, old, ref, mask, adv, ent = _random_batch(0)
    kw = dict(eps_low=0.2, eps_high=0.28, dual_clip=3.0, aggregation=aggregation, max_len=8,
              ratio_level=ratio_level, kl_coef=0.05, kl_kind="k3", entropy_coef=0.01)
    # uneven split: row 0 and rows 1-5 (the two micro-batches have different token counts)
    parts = (slice(0, 1), slice(1, 6))

    def full(lp):
        return policy_loss(lp, old, adv, mask, ref_logp_BT=ref, entropy_BT=ent, **kw)

    def accumulated(lp):
        sums = [policy_loss_sums(lp[s], old[s], adv[s], mask[s], ref_logp_BT=ref[s], entropy_BT=ent[s], **kw)
                for s in parts]
        return normalize_policy_sums(jax.tree.map(jnp.add, *sums))

    (loss_f, m_f), g_f = jax.jit(jax.value_and_grad(full, has_aux=True))(logp)
    (loss_a, m_a), g_a = jax.jit(jax.value_and_grad(accumulated, has_aux=True))(logp)
    np.testing.assert_allclose(loss_a, loss_f, rtol=1e-6)
    for k in m_f:
        np.testing.assert_allclose(m_a[k], m_f[k], rtol=1e-6, atol=1e-7, err_msg=k)
    np.testing.assert_allclose(g_a, g_f, rtol=1e-5, atol=1e-7)
    assert np.any(np.asarray(g_f) != 0.0)


def test_mean_of_micro_batch_means_is_not_the_token_mean():
    # The test above can fail: averaging per-micro-batch normalised losses is the classic bug.
    logp, old, ref, mask, adv, _ = _random_batch(0)
    full, _ = policy_loss(logp, old, adv, mask)
    halves = [policy_loss(logp[s], old[s], adv[s], mask[s])[0] for s in (slice(0, 1), slice(1, 6))]
    assert abs(float(np.mean(halves)) - float(full)) > 1e-3


def test_shard_map_psum_of_sums_equals_the_unsharded_loss():
    mesh = jax.make_mesh((8,), ("data",))
    logp, old, ref, mask, adv, ent = _random_batch(3, B=8)
    kw = dict(aggregation="seq-mean-token-mean", kl_coef=0.1)

    def per_device(lp, o, a, m, r):
        sums = policy_loss_sums(lp, o, a, m, ref_logp_BT=r, **kw)
        return jax.lax.psum(sums, "data")

    sharded = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=P("data"), out_specs=P()))
    args = jax.device_put((logp, old, adv, mask, ref), NamedSharding(mesh, P("data")))
    loss_s, m_s = normalize_policy_sums(sharded(*args))
    loss, m = policy_loss(logp, old, adv, mask, ref_logp_BT=ref, **kw)
    np.testing.assert_allclose(loss_s, loss, rtol=1e-6)
    np.testing.assert_allclose(m_s["kl"], m["kl"], rtol=1e-6)


def test_padding_columns_do_not_change_the_loss():
    logp, old, ref, mask, adv, _ = _random_batch(5)
    pad = jnp.full((6, 3), 7.0)
    for aggregation in AGGREGATIONS:
        a, _ = policy_loss(logp, old, adv, mask, aggregation=aggregation, max_len=10)
        b, _ = policy_loss(jnp.concatenate([logp, pad], 1), jnp.concatenate([old, -pad], 1), adv,
                           jnp.concatenate([mask, jnp.zeros((6, 3))], 1), aggregation=aggregation, max_len=10)
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_jit_matches_eager():
    logp, old, ref, mask, adv, ent = _random_batch(2)
    fn = functools.partial(policy_loss, aggregation="seq-sum-max-length", max_len=5, dual_clip=2.0,
                           ref_logp_BT=ref, kl_coef=0.1)
    np.testing.assert_allclose(jax.jit(fn)(logp, old, adv, mask)[0], fn(logp, old, adv, mask)[0], rtol=1e-6)


def test_bad_arguments_name_the_value_and_the_choices():
    args = (LOGP, OLD, ADV, MASK)
    with pytest.raises(ValueError, match="aggregation='mean' is not one of 'token-mean'"):
        policy_loss(*args, aggregation="mean")
    with pytest.raises(ValueError, match="ratio_level"):
        policy_loss(*args, ratio_level="seq")
    with pytest.raises(ValueError, match="kl_in"):
        policy_loss(*args, kl_in="both")
    with pytest.raises(ValueError, match="eps_low=1.0"):
        policy_loss(*args, eps_low=1.0)
    with pytest.raises(ValueError, match="dual_clip=1.0"):
        policy_loss(*args, dual_clip=1.0)
    with pytest.raises(ValueError, match="max_len"):
        policy_loss(*args, aggregation="seq-sum-max-length")
    with pytest.raises(ValueError, match="ref_logp_BT"):
        policy_loss(*args, kl_coef=0.1)
    with pytest.raises(ValueError, match="entropy_BT"):
        policy_loss(*args, entropy_coef=0.1)
    with pytest.raises(ValueError, match="mask_BT must have shape"):
        policy_loss(LOGP, OLD, ADV, MASK[:, :3])
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(LOGP, OLD, jnp.ones(3), MASK)
