import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, strategies as st

from jaxlab.losses.lm import cross_entropy, cross_entropy_sums, normalize_sums


def test_hand_computed_cross_entropy_and_z_loss():
    # Two positions, vocab 3. logsumexp([0, ln 2, ln 3]) = ln 6; logsumexp([0, 0, 0]) = ln 3.
    logits = jnp.array([[[0.0, np.log(2.0), np.log(3.0)], [0.0, 0.0, 0.0]]])
    targets = jnp.array([[2, 0]])
    loss, m = cross_entropy(logits, targets)
    nll = [np.log(6.0) - np.log(3.0), np.log(3.0)]
    np.testing.assert_allclose(loss, np.mean(nll), rtol=1e-6)
    assert float(m["accuracy"]) == 1.0  # argmax is 2, and ties resolve to the first id (0)
    loss_z, m_z = cross_entropy(logits, targets, z_loss=1e-2)
    z = [np.log(6.0) ** 2, np.log(3.0) ** 2]
    np.testing.assert_allclose(m_z["z"], np.mean(z), rtol=1e-6)
    np.testing.assert_allclose(loss_z, np.mean(nll) + 1e-2 * np.mean(z), rtol=1e-6)


def test_accuracy_counts_argmax_hits():
    logits = jnp.array([[[0.0, 5.0], [3.0, 1.0], [0.0, 2.0]]])
    _, m = cross_entropy(logits, jnp.array([[1, 1, 1]]))
    np.testing.assert_allclose(m["accuracy"], 2 / 3, rtol=1e-6)


def test_mask_excludes_tokens_and_count_is_exact():
    logits = jax.random.normal(jax.random.key(0), (2, 4, 5))
    targets = jax.random.randint(jax.random.key(1), (2, 4), 0, 5)
    mask = jnp.array([[1, 1, 0, 0], [1, 0, 0, 0]])
    loss, m = cross_entropy(logits, targets, mask)
    sel_logits = jnp.concatenate([logits[0, :2], logits[1, :1]])[None]
    sel_targets = jnp.concatenate([targets[0, :2], targets[1, :1]])[None]
    ref, _ = cross_entropy(sel_logits, sel_targets)
    np.testing.assert_allclose(loss, ref, rtol=1e-6)
    assert float(m["count"]) == 3.0


@given(pad=st.integers(1, 6), seed=st.integers(0, 100))
def test_padding_does_not_change_the_loss(pad, seed):
    logits = jax.random.normal(jax.random.key(seed), (1, 5, 7)) * 3
    targets = jax.random.randint(jax.random.key(seed + 1), (1, 5), 0, 7)
    junk = jax.random.normal(jax.random.key(seed + 2), (1, pad, 7)) * 100
    padded_logits = jnp.concatenate([logits, junk], axis=1)
    padded_targets = jnp.concatenate([targets, jnp.zeros((1, pad), jnp.int32)], axis=1)
    mask = jnp.concatenate([jnp.ones((1, 5)), jnp.zeros((1, pad))], axis=1)
    a, _ = cross_entropy(logits, targets)
    b, _ = cross_entropy(padded_logits, padded_targets, mask)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_sums_add_across_micro_batches_to_the_large_batch_mean():
    logits = jax.random.normal(jax.random.key(3), (4, 6, 9))
    targets = jax.random.randint(jax.random.key(4), (4, 6), 0, 9)
    mask = (jax.random.uniform(jax.random.key(5), (4, 6)) > 0.4).astype(jnp.float32)
    full, _ = cross_entropy(logits, targets, mask, z_loss=1e-3)
    parts = [cross_entropy_sums(logits[i:i + 1], targets[i:i + 1], mask[i:i + 1], z_loss=1e-3)
             for i in range(4)]
    total = jax.tree.map(lambda *xs: sum(xs), *parts)
    np.testing.assert_allclose(normalize_sums(total)["loss"], full, rtol=1e-6)


def test_empty_mask_gives_zero_not_nan():
    loss, m = cross_entropy(jnp.zeros((1, 3, 4)), jnp.zeros((1, 3), jnp.int32), jnp.zeros((1, 3)))
    assert float(loss) == 0.0 and float(m["count"]) == 0.0


def test_distill_sums_split_into_kl_and_teacher_entropy():
    """loss = KL(p || q) + H(p) per token; the teacher gets no gradient; a student equal to the
    teacher has KL 0 and full agreement."""
    from jaxlab.losses.lm import distill_sums

    student = jax.random.normal(jax.random.key(0), (2, 3, 5))
    teacher = jax.random.normal(jax.random.key(1), (2, 3, 5))
    mask = jnp.asarray([[1, 1, 0], [1, 0, 1]])
    sums = distill_sums(student, teacher, mask)
    p = jax.nn.softmax(teacher, -1)
    h = -(p * jnp.log(p)).sum(-1)
    np.testing.assert_allclose(sums["loss"] - sums["kl"], float((h * mask).sum()), rtol=1e-5)
    assert float(sums["count"]) == 4
    g = jax.grad(lambda t: distill_sums(student, t, mask)["loss"])(teacher)
    assert float(jnp.abs(g).max()) == 0.0
    same = distill_sums(teacher, teacher, mask)
    assert abs(float(same["kl"])) < 1e-5 and float(same["agree"]) == 4
