"""Analysis functions with known answers: angular distances of planted residual streams,
RankMe and alpha-ReQ of a planted spectrum, L-Mul against its formula and float8, Bradley-Terry
recovery and private-testing inflation, and planted under-trained unembedding rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.analysis import geometry, layers, leaderboard, lmul, tokens


def test_angular_distance_finds_the_layers_that_change_nothing():
    rng = np.random.default_rng(0)
    B, D = 8, 16
    xs = [rng.standard_normal((B, D))]
    for l in range(6):  # layers 3 and 4 barely change the stream
        step = 0.01 if l in (3, 4) else 1.0
        xs.append(xs[-1] + step * rng.standard_normal((B, D)))
    d = layers.angular_distance_matrix(np.stack(xs))
    assert d.shape == (6, 6) and np.isnan(d[5, 1]) and not np.isnan(d[0, 5])
    assert layers.block_to_drop(d, 2) == 3 and layers.block_to_drop(d, 1) in (3, 4)
    # orthogonal streams are at distance 1/2, opposite ones at 1
    pair = np.stack([np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([[-1.0, 0.0]])])
    dd = layers.angular_distance_matrix(pair)
    assert dd[0, 0] == pytest.approx(0.5) and dd[0, 1] == pytest.approx(1.0)
    params = {"layers": {"w": jnp.arange(6.0)[:, None]}, "embed": jnp.ones(2)}
    assert layers.drop_layers(params, 3, 2)["layers"]["w"][:, 0].tolist() == [0.0, 1.0, 2.0, 5.0]
    with pytest.raises(ValueError, match="cannot drop"):
        layers.drop_layers(params, 5, 2)


def test_rankme_and_alpha_req_of_a_planted_spectrum():
    rng = np.random.default_rng(1)
    N, D, alpha = 4000, 64, 1.5
    q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    z = rng.standard_normal((N, D)) * np.arange(1, D + 1) ** (-alpha / 2) @ q.T
    assert geometry.alpha_req(z, 1, 32) == pytest.approx(alpha, abs=0.1)
    iso = rng.standard_normal((N, D))
    assert geometry.rankme(iso) == pytest.approx(D, rel=0.05)  # equal singular values: rank D
    assert geometry.rankme(np.outer(rng.standard_normal(N), rng.standard_normal(D))) == pytest.approx(1.0, abs=0.01)
    assert geometry.rankme(z) < geometry.rankme(iso)


def test_lmul_matches_its_formula_and_the_papers_precision_ordering():
    # 1.5 x 1.25 with 3 mantissa bits: (1 + 0.5 + 0.25 + 2^-3) 2^0 = 1.875 (exact: 1.875 too)
    assert float(lmul.lmul(1.5, 1.25, 3)) == pytest.approx(1.875)
    # 1.75 x 1.75: exact 3.0625; L-Mul (1 + 0.75 + 0.75 + 0.125) = 2.625 -> 2.625 x 2^0
    assert float(lmul.lmul(1.75, 1.75, 3)) == pytest.approx(2.625)
    assert float(lmul.lmul(-3.0, 0.5, 4)) == pytest.approx(-(1 + 0.5 + 0 + 2 ** -3) * 2 ** 0)
    assert float(lmul.lmul(0.0, 7.0, 3)) == 0.0
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(20000), rng.standard_normal(20000)
    err = {k: float(np.mean(v)) for k, v in lmul.relative_errors(x, y).items()}
    assert err["lmul_m3"] < err["fp8_e5m2"]  # 3-bit L-Mul is more precise than e5m2
    assert err["lmul_m5"] < err["lmul_m3"]


def test_bradley_terry_recovers_skills_and_private_testing_inflates():
    rng = np.random.default_rng(3)
    skill = np.array([0.0, 0.5, 1.0, 2.0])
    a = rng.integers(0, 4, 6000)
    b = (a + rng.integers(1, 4, a.size)) % 4
    w, l = leaderboard.simulate_battles(rng, skill, np.stack([a, b], 1))
    theta = leaderboard.fit_bradley_terry(w, l, 4)
    np.testing.assert_allclose(theta - theta[0], skill, atol=0.12)
    one = np.mean([leaderboard.private_testing_inflation(s, 1, battles_per_model=100) for s in range(6)])
    many = np.mean([leaderboard.private_testing_inflation(s, 10, battles_per_model=100) for s in range(6)])
    assert many > one + 20  # Elo points: the best of 10 identical variants is lucky


def test_planted_undertrained_rows_are_found():
    rng = np.random.default_rng(4)
    V, D = 400, 32
    u = rng.standard_normal((V, D))
    untrained = np.arange(380, 400)
    shared = rng.standard_normal(D)
    u[untrained] = shared + 0.05 * rng.standard_normal((20, D))
    reference = untrained[:5]
    flagged = tokens.undertrained_candidates(u, reference, percentile=95.0)
    precision, recall = tokens.precision_recall(flagged, untrained[5:])
    assert precision == 1.0 and recall == 1.0
    with pytest.raises(ValueError, match="reference"):
        tokens.undertrained_scores(u, [])


def test_kendall_tau_counts_concordant_pairs():
    assert leaderboard.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert leaderboard.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # one discordant pair out of six: (2 vs 3) swapped
    assert leaderboard.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="one length"):
        leaderboard.kendall_tau([1, 2], [1, 2, 3])


def test_ranking_agreement_falls_with_deprecation_under_drift():
    even = np.mean([leaderboard.ranking_agreement(s, n_models=12, battles=3000) for s in range(3)])
    drifted = np.mean([leaderboard.ranking_agreement(s, n_models=12, battles=3000, deprecated_fraction=0.5,
                                                     drift=1.0) for s in range(3)])
    assert even > 0.8  # plenty of battles: the fit orders the models
    assert drifted < even - 0.1  # half the models keep their first-phase scores while skills moved
    with pytest.raises(ValueError, match="deprecated_fraction"):
        leaderboard.ranking_agreement(0, deprecated_fraction=1.0)


def test_unreachable_byte_tokens_are_the_lone_high_bytes():
    from jaxlab.data import ByteTokenizer

    np.testing.assert_array_equal(tokens.unreachable_ids(ByteTokenizer()), np.arange(128, 256))


@pytest.mark.slow
def test_repeat_probabilities_match_one_unpadded_forward_pass():
    import jax

    from jaxlab.data import ByteTokenizer
    from jaxlab.models import transformer

    tok = ByteTokenizer()
    cfg = transformer.Config(vocab_size=259, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, mlp_dim=64)
    params = transformer.init(cfg, jax.random.key(0))
    ids = [65, 200, 7]
    got = tokens.repeat_probabilities(params, cfg, tok, ids, batch_size=4)  # 6 prompts over two batches
    rows = tokens.repeat_rows(tok, ids)
    assert rows[1][1].tolist() == [tok.bos_id, 200, 32, 200, 32, 200, 32]
    apply = jax.jit(transformer.apply, static_argnums=2)
    for t, per_token, p in zip(ids, rows, got):
        direct = [float(jax.nn.softmax(apply(params, r[None], cfg)[0, -1])[t]) for r in per_token]
        assert p == pytest.approx(max(direct), rel=1e-4)
