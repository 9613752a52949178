"""Per-problem probes of a policy: token means per group, probe entropy against the uniform
distribution's log V, and per-problem correctness against solve_rates."""

import math

import jax
import numpy as np
import pytest

from jaxlab import tasks as tasks_lib
from jaxlab.models import transformer
from jaxlab.rl.probes import masked_row_means, probe_entropy, problem_correct
from jaxlab.rl.rollout import default_sample_config, solve_rates

CFG = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=2,
                         head_dim=16, mlp_dim=64)


def test_masked_row_means_hand_values():
    x_BW = np.array([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0], [5.0, 9.0, 9.0], [9.0, 9.0, 9.0]])
    m_BW = np.array([[1, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0]])
    # group 0: (1 + 2 + 3) / 3; group 1: 5 / 1 (its second row has no token)
    np.testing.assert_allclose(masked_row_means(x_BW, m_BW, 2), [2.0, 5.0])
    np.testing.assert_allclose(masked_row_means(x_BW, np.zeros_like(m_BW), 2), [0.0, 0.0])
    with pytest.raises(ValueError, match="multiple"):
        masked_row_means(x_BW, m_BW, 3)


PROMPTS = ["1+2=", "33+4=", "7+70="]
SAMPLE = default_sample_config(3, 1.0)


@pytest.mark.slow
def test_probe_entropy_of_a_uniform_policy_is_log_v():
    """Zero weights give zero logits: q is uniform over V tokens at every position, so the
    entropy of every probe is log V."""
    params = jax.tree.map(np.zeros_like, transformer.init(CFG, jax.random.key(0)))
    h_P = probe_entropy(params, CFG, PROMPTS, jax.random.key(1), SAMPLE, n_samples=2)
    assert h_P.shape == (3,)
    np.testing.assert_allclose(h_P, math.log(CFG.vocab_size), rtol=1e-5)


def test_probe_entropy_is_deterministic_and_below_log_v():
    params = transformer.init(CFG, jax.random.key(0))
    a = probe_entropy(params, CFG, PROMPTS, jax.random.key(3), SAMPLE, n_samples=2)
    b = probe_entropy(params, CFG, PROMPTS, jax.random.key(3), SAMPLE, n_samples=2)
    np.testing.assert_array_equal(a, b)  # one key, the same samples: common random numbers
    c = probe_entropy(params, CFG, PROMPTS, jax.random.key(4), SAMPLE, n_samples=2)
    assert not np.array_equal(a, c)
    assert np.all((a > 0) & (a < math.log(CFG.vocab_size)))
    with pytest.raises(ValueError, match="temperature"):
        probe_entropy(params, CFG, PROMPTS, jax.random.key(3), default_sample_config(3, 0.0))


def test_problem_correct_agrees_with_solve_rates():
    examples = tasks_lib.get("arithmetic", train_difficulty=(1, 1), ops="+").splits(0, 12, 0, 0)["train"]
    params = transformer.init(CFG, jax.random.key(0))
    greedy = default_sample_config(4, 0.0)
    c_PN = problem_correct(params, CFG, examples, jax.random.key(0), greedy)
    assert c_PN.shape == (12, 1) and set(np.unique(c_PN)) <= {0.0, 1.0}
    rates = solve_rates(params, CFG, examples, key=jax.random.key(0), sample_cfg=greedy)
    assert c_PN.mean() == pytest.approx(rates["pass@1"])
