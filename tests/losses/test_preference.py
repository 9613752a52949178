"""DPO, IPO, SimPO, APO-zero/down (jaxlab.losses.preference): hand-computed values, invariants,
and the stacked and packed pair layouts under a tiny transformer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from jaxlab.data import chat
from jaxlab.losses import preference as pref
from jaxlab.losses.lm import normalize_sums
from jaxlab.models import transformer

LN3 = np.log(3.0)
SUMS = {"dpo": pref.dpo_sums, "ipo": pref.ipo_sums, "apo_zero": pref.apo_zero_sums,
        "apo_down": pref.apo_down_sums}


def pairs(chosen, rejected, chosen_count=None, rejected_count=None):
    chosen = jnp.asarray(chosen, jnp.float32)
    ones = jnp.ones_like(chosen)
    return {"chosen": chosen, "rejected": jnp.asarray(rejected, jnp.float32),
            "chosen_count": ones if chosen_count is None else jnp.asarray(chosen_count, jnp.float32),
            "rejected_count": ones if rejected_count is None else jnp.asarray(rejected_count, jnp.float32)}


def random_pairs(seed, n):
    rng = np.random.default_rng(seed)
    ref = pairs(rng.normal(-20, 5, n), rng.normal(-20, 5, n))
    counts = rng.integers(1, 9, (2, n))
    policy = pairs(ref["chosen"] + rng.normal(0, 3, n), ref["rejected"] + rng.normal(0, 3, n),
                   counts[0], counts[1])
    return policy, ref


# ---------------------------------------------------------------- hand-computed values

@given(seed=st.integers(0, 100), beta=st.floats(0.01, 5.0), ls=st.floats(0.0, 0.5))
def test_dpo_is_log2_when_policy_equals_reference(seed, beta, ls):
    policy, _ = random_pairs(seed, 3)
    loss, m = pref.dpo_loss(policy, policy, beta=beta, label_smoothing=ls)
    np.testing.assert_allclose(loss, np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose([m["margins"], m["chosen_rewards"], m["accuracy"]], 0.0, atol=0)


def test_dpo_hand_computed_with_label_smoothing_and_metrics():
    # beta = 0.5. Pair 0: r+ = ln 3, r- = -ln 3 -> beta Delta = ln 3, sigma = 3/4.
    # Pair 1: r+ = -ln 3, r- = ln 3 -> beta Delta = -ln 3, sigma = 1/4.
    ref = pairs([-4.0, -4.0], [-6.0, -6.0])
    policy = pairs([-4.0 + LN3, -4.0 - LN3], [-6.0 - LN3, -6.0 + LN3])
    loss, m = pref.dpo_loss(policy, ref, beta=0.5)
    # -ln(3/4) = ln(4/3) and -ln(1/4) = ln 4, mean over 2 pairs.
    np.testing.assert_allclose(loss, (np.log(4 / 3) + np.log(4.0)) / 2, rtol=1e-6)
    # Label smoothing 0.2: -(0.8 ln sigma(z) + 0.2 ln sigma(-z)) per pair.
    loss_ls, _ = pref.dpo_loss(policy, ref, beta=0.5, label_smoothing=0.2)
    pair0 = 0.8 * np.log(4 / 3) + 0.2 * np.log(4.0)
    pair1 = 0.8 * np.log(4.0) + 0.2 * np.log(4 / 3)
    np.testing.assert_allclose(loss_ls, (pair0 + pair1) / 2, rtol=1e-6)
    # Rewards beta r: pair 0 (0.5 ln 3, -0.5 ln 3), pair 1 the reverse -> means 0;
    # margins ln 3 and -ln 3 -> 0; accuracy 1/2; policy log-probs averaged.
    np.testing.assert_allclose([m["chosen_rewards"], m["rejected_rewards"], m["margins"]], 0.0,
                               atol=1e-6)
    np.testing.assert_allclose(m["accuracy"], 0.5)
    np.testing.assert_allclose(m["chosen_logps"], -4.0, rtol=1e-6)
    np.testing.assert_allclose(m["rejected_logps"], -6.0, rtol=1e-6)
    assert float(m["count"]) == 2.0
    _, m0 = pref.dpo_loss(jax.tree.map(lambda x: x[:1], policy), jax.tree.map(lambda x: x[:1], ref),
                          beta=0.5)
    np.testing.assert_allclose([m0["chosen_rewards"], m0["rejected_rewards"], m0["margins"]],
                               [0.5 * LN3, -0.5 * LN3, LN3], rtol=1e-6)


def test_ipo_uses_per_token_averaged_log_ratios():
    # beta = 0.25 -> target 1 / (2 beta) = 2. r+ = 6 over 3 tokens -> 2; r- = -2 over 4 -> -0.5.
    # Delta_avg = 2.5 -> (2.5 - 2)^2 = 0.25. Rewards beta * avg: 0.5 and -0.125.
    ref = pairs([-10.0], [-10.0])
    policy = pairs([-4.0], [-12.0], [3], [4])
    loss, m = pref.ipo_loss(policy, ref, beta=0.25)
    np.testing.assert_allclose(loss, 0.25, rtol=1e-6)
    np.testing.assert_allclose([m["chosen_rewards"], m["rejected_rewards"]], [0.5, -0.125], rtol=1e-6)
    # At policy == reference: (0 - 2)^2 = 4.
    np.testing.assert_allclose(pref.ipo_loss(ref, ref, beta=0.25)[0], 4.0, rtol=1e-6)


def test_simpo_length_normalised_with_margin_and_no_reference():
    # log pi(y+) = -3 over 3 tokens (avg -1), log pi(y-) = -8 over 4 (avg -2).
    # beta = 2, gamma = 2 - ln 3: z = 2 * (-1 + 2) - (2 - ln 3) = ln 3 -> -ln(3/4) = ln(4/3).
    policy = pairs([-3.0], [-8.0], [3], [4])
    loss, m = pref.simpo_loss(policy, beta=2.0, gamma=2.0 - LN3)
    np.testing.assert_allclose(loss, np.log(4 / 3), rtol=1e-6)
    np.testing.assert_allclose([m["chosen_rewards"], m["rejected_rewards"], m["margins"]],
                               [-2.0, -4.0, 2.0], rtol=1e-6)
    assert float(m["accuracy"]) == 1.0
    # Default beta 2, gamma 1: z = 2 - 1 = 1 -> log(1 + e^-1).
    np.testing.assert_allclose(pref.simpo_loss(policy)[0], np.log1p(np.exp(-1.0)), rtol=1e-6)


def test_apo_zero_and_apo_down_hand_computed():
    # beta = 1, r+ = ln 3, r- = -ln 3: sigma(r+) = 3/4, sigma(r-) = 1/4, sigma(Delta) = 9/10.
    ref = pairs([-5.0], [-5.0])
    policy = pairs([-5.0 + LN3], [-5.0 - LN3])
    zero, _ = pref.apo_zero_loss(policy, ref, beta=1.0)
    down, _ = pref.apo_down_loss(policy, ref, beta=1.0)
    np.testing.assert_allclose(zero, 1 - 0.75 + 0.25, rtol=1e-6)
    np.testing.assert_allclose(down, 0.75 + 1 - 0.9, rtol=1e-6)
    # At policy == reference both are 1 - 1/2 + 1/2 = 1/2 + 1 - 1/2 = 1.
    for fn in (pref.apo_zero_loss, pref.apo_down_loss):
        np.testing.assert_allclose(fn(ref, ref, beta=0.3)[0], 1.0, rtol=1e-6)


def test_apo_gradients_point_as_the_paper_says():
    # APO-zero raises log pi(y+) and lowers log pi(y-). APO-down, once the margin has opened
    # (r+ = 0, r- = -2): d loss / d r+ = sigma'(0) - sigma'(2) > 0, so descent lowers log pi(y+),
    # and d loss / d r- = sigma'(2) > 0 lowers log pi(y-) as well.
    ref = pairs([0.0], [0.0])

    def grads(fn, chosen, rejected):
        return jax.grad(lambda c, r: fn(pairs(c, r), ref, beta=1.0)[0], argnums=(0, 1))(
            jnp.array([chosen]), jnp.array([rejected]))

    g_c, g_r = grads(pref.apo_zero_loss, 0.0, 0.0)
    assert float(g_c[0]) < 0 < float(g_r[0])
    g_c, g_r = grads(pref.apo_down_loss, 0.0, -2.0)
    assert float(g_c[0]) > 0 and float(g_r[0]) > 0


# ---------------------------------------------------------------- invariants

@pytest.mark.parametrize("name", ["dpo", "ipo", "simpo", "apo_zero", "apo_down"])
def test_padding_pairs_are_excluded(name):
    policy, ref = random_pairs(1, 3)
    # A padding pair: no response tokens, junk log-probs.
    pad = pairs([-1e4], [7.0], [0], [0])
    padded_policy = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), policy, pad)
    padded_ref = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), ref, pairs([3.0], [-2e3]))
    ref_arg, padded_ref_arg = (None, None) if name == "simpo" else (ref, padded_ref)
    a = normalize_sums(pref.preference_sums(name, policy, ref_arg))
    b = normalize_sums(pref.preference_sums(name, padded_policy, padded_ref_arg))
    for k in pref.METRIC_KEYS:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, err_msg=k)
    g = jax.grad(lambda p: pref.preference_sums(name, p, padded_ref_arg)["loss"])(padded_policy)
    assert np.isfinite(g["chosen"]).all() and float(g["chosen"][-1]) == 0.0


@pytest.mark.parametrize("name", ["dpo", "ipo", "simpo", "apo_zero", "apo_down"])
def test_micro_batch_sums_equal_the_large_batch(name):
    policy, ref = random_pairs(2, 6)
    ref_arg = None if name == "simpo" else ref

    def full(p):
        s = pref.preference_sums(name, p, ref_arg)
        return s["loss"] / s["count"]

    def accumulated(p):
        parts = [pref.preference_sums(name, jax.tree.map(lambda x: x[sl], p),
                                      None if ref_arg is None else jax.tree.map(lambda x: x[sl], ref))
                 for sl in (slice(0, 1), slice(1, 4), slice(4, 6))]
        total = jax.tree.map(lambda *xs: sum(xs), *parts)
        return total["loss"] / total["count"]

    np.testing.assert_allclose(jax.jit(accumulated)(policy), jax.jit(full)(policy), rtol=1e-6)
    ga, gf = jax.jit(jax.grad(accumulated))(policy), jax.jit(jax.grad(full))(policy)
    np.testing.assert_allclose(ga["chosen"], gf["chosen"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(ga["rejected"], gf["rejected"], rtol=1e-5, atol=1e-8)


def test_pair_logprobs_split_stacked_rows():
    # Rows 0, 1: chosen of pairs 0, 1; rows 2, 3: their rejected. Logits [0, ln 3] everywhere:
    # target 1 -> log(3/4), target 0 -> log(1/4).
    logits = jnp.broadcast_to(jnp.array([0.0, LN3]), (4, 3, 2))
    targets = jnp.array([[1, 1, 1], [0, 1, 1], [0, 0, 0], [1, 0, 1]])
    mask = jnp.array([[0, 1, 1], [0, 0, 1], [1, 1, 1], [0, 1, 0]])
    p = pref.pair_logprobs(logits, targets, mask)
    l3, l1 = np.log(0.75), np.log(0.25)
    np.testing.assert_allclose(p["chosen"], [2 * l3, l3], rtol=1e-6)
    np.testing.assert_allclose(p["rejected"], [3 * l1, l1], rtol=1e-6)
    np.testing.assert_array_equal(p["chosen_count"], [2, 1])
    np.testing.assert_array_equal(p["rejected_count"], [3, 1])
    with pytest.raises(ValueError, match="even"):
        pref.pair_logprobs(logits[:3], targets[:3], mask[:3])


@given(seed=st.integers(0, 30))
def test_masked_prompt_and_padding_logits_do_not_change_dpo(seed):
    rng = np.random.default_rng(seed)
    T, V = 6, 5
    logits = rng.normal(size=(4, T, V)).astype(np.float32)
    ref_logits = rng.normal(size=(4, T, V)).astype(np.float32)
    targets = rng.integers(0, V, (4, T))
    mask = np.zeros((4, T), np.float32)
    for row, (start, stop) in enumerate([(2, 5), (1, 6), (3, 4), (2, 6)]):
        mask[row, start:stop] = 1.0  # prompt before, padding after
    junk = np.where(mask[..., None] > 0, logits, rng.normal(size=logits.shape) * 100)
    a = _dpo_from_logits(logits, ref_logits, targets, mask)
    b = _dpo_from_logits(junk.astype(np.float32), ref_logits, targets, mask)
    np.testing.assert_allclose(a, b, rtol=1e-6)


@jax.jit
def _dpo_from_logits(logits, ref_logits, targets, mask):
    return pref.dpo_loss(pref.pair_logprobs(logits, targets, mask),
                         pref.pair_logprobs(ref_logits, targets, mask), beta=0.3)[0]


# ---------------------------------------------------------------- argument checks

def test_bad_arguments_are_refused_with_clear_errors():
    p = pairs([0.0], [0.0])
    with pytest.raises(ValueError, match="beta"):
        pref.dpo_sums(p, p, beta=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        pref.dpo_sums(p, p, label_smoothing=0.7)
    with pytest.raises(ValueError, match="chosen_count"):
        pref.dpo_sums({"chosen": p["chosen"], "rejected": p["rejected"]}, p)
    with pytest.raises(ValueError, match="needs reference"):
        pref.preference_sums("dpo", p, None)
    with pytest.raises(ValueError, match="no reference"):
        pref.preference_sums("simpo", p, p)
    with pytest.raises(ValueError, match="loss_type"):
        pref.preference_sums("kto", p, p)
    with pytest.raises(ValueError, match="pairs_per_row"):
        pref.packed_pair_logprobs(jnp.zeros((1, 2, 3)), jnp.zeros((1, 2), jnp.int32),
                                  jnp.ones((1, 2)), jnp.ones((1, 2), jnp.int32), 0)
    with pytest.raises(ValueError, match="'chosen' and 'rejected'"):
        pref.stack_pairs({"chosen": {}})


# ---------------------------------------------------------------- layouts under a model

TINY = transformer.Config(vocab_size=259, d_model=16, n_layers=1, n_heads=2, n_kv_heads=2,
                          head_dim=8, mlp_dim=32)


def random_params(cfg, seed):
    """A params tree of ``cfg``'s shapes filled with N(0, 0.3^2) draws (no init compile)."""
    shapes = jax.eval_shape(transformer.init, cfg, jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape), s.dtype), shapes)
RECORDS = [{"prompt": "1+2=", "chosen": "3", "rejected": "4"},
           {"prompt": "10+5=", "chosen": "15", "rejected": "105"},
           {"prompt": "7+", "chosen": "0=7", "rejected": "1=9"},
           {"prompt": "", "chosen": "ok", "rejected": ""},
           {"prompt": "99+1=", "chosen": "100", "rejected": "10"}]


@jax.jit
def _pairs_of_rows(params, rows):
    logits = transformer.apply(params, rows["inputs"], TINY, positions_BT=rows["positions"],
                               segment_ids_BT=rows["segment_ids"])
    return pref.pair_logprobs(logits, rows["targets"], rows["mask"])


@jax.jit
def _pairs_of_packed(params, rows):
    logits = transformer.apply(params, rows["inputs"], TINY, positions_BT=rows["positions"],
                               segment_ids_BT=rows["segment_ids"])
    return pref.packed_pair_logprobs(logits, rows["targets"], rows["mask"], rows["segment_ids"], 2)


def test_stacked_and_packed_layouts_give_the_same_losses_under_a_model():
    policy_params = random_params(TINY, 0)
    ref_params = random_params(TINY, 1)
    stacked = chat.preference_batch(RECORDS, seq_len=12)
    rows = pref.stack_pairs(stacked)
    assert rows["inputs"].shape == (10, 12)
    np.testing.assert_array_equal(rows["inputs"][:5], stacked["chosen"]["inputs"])
    policy = _pairs_of_rows(policy_params, rows)
    reference = _pairs_of_rows(ref_params, rows)

    packed = list(chat.preference_dataset(RECORDS, seq_len=24, batch_size=2, pairs_per_row=2,
                                          shuffle=False, repeat=False))
    merge = lambda ds: jax.tree.map(lambda *xs: jnp.concatenate(xs), *ds)  # noqa: E731
    packed_policy = merge([_pairs_of_packed(policy_params, b) for b in packed])
    packed_reference = merge([_pairs_of_packed(ref_params, b) for b in packed])
    assert float(jnp.sum(packed_policy["chosen_count"] > 0)) == 5  # 5 pairs, the rest padding

    # The same five pairs (in another order): compare the sorted per-pair values, then losses.
    def by_pair(d):
        valid = np.asarray(d["chosen_count"]) > 0
        keys = ("chosen", "rejected", "chosen_count", "rejected_count")
        return np.stack(sorted(zip(*[np.asarray(d[k])[valid] for k in keys])))

    np.testing.assert_allclose(by_pair(packed_policy), by_pair(policy), rtol=1e-5, atol=1e-5)
    for name in ("dpo", "ipo", "simpo", "apo_zero", "apo_down"):
        ref_a, ref_b = (None, None) if name == "simpo" else (reference, packed_reference)
        a = normalize_sums(pref.preference_sums(name, policy, ref_a))
        b = normalize_sums(pref.preference_sums(name, packed_policy, ref_b))
        for k in ("loss", "chosen_rewards", "margins", "accuracy", "count"):
            np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6, err_msg=f"{name} {k}")
