"""GenRM objective and p(Yes) scores (jaxlab.losses.verifier)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.data import chat
from jaxlab.data.tokenizer import VOCAB_SIZE
from jaxlab.losses import verifier
from jaxlab.losses.lm import cross_entropy, sequence_logprobs

LN2, LN3 = np.log(2.0), np.log(3.0)
(YES_ID, *_), (NO_ID, *_) = chat.verdict_ids()  # bytes: "Y", "N"


def test_verdict_ids_and_whether_the_first_token_decides():
    yes, no = chat.verdict_ids()
    assert yes == tuple(b"Yes") and no == tuple(b"No")
    assert verifier.first_token_decides(yes, no)
    assert not verifier.first_token_decides((5, 7), (5, 9))  # e.g. " Y" + "es" vs " Y" + "o"
    with pytest.raises(ValueError, match="at least one token"):
        verifier.first_token_decides((), (3,))
    mask = jnp.array([[0, 1, 1, 1, 1, 0], [1, 0, 1, 1, 0, 0]], jnp.float32)
    np.testing.assert_array_equal(verifier.verdict_word_mask(mask, 2),
                                  [[0, 1, 1, 0, 0, 0], [1, 0, 1, 0, 0, 0]])


def test_p_yes_over_vocab_and_over_yes_no_hand_computed():
    # Byte vocab (259): z_Y = ln 3, z_N = 0, every other logit 0 -> exp sum = 3 + 258.
    logits = jnp.zeros((VOCAB_SIZE,)).at[YES_ID].set(LN3)
    np.testing.assert_allclose(verifier.p_yes(logits, YES_ID, NO_ID), 3 / 261, rtol=1e-6)
    np.testing.assert_allclose(verifier.p_yes(logits, YES_ID, NO_ID, over="yes_no"), 3 / 4, rtol=1e-6)
    # Leading axes are kept: [B, K, V] -> [B, K].
    batch = jnp.stack([logits, jnp.zeros((VOCAB_SIZE,))])[:, None, :]
    np.testing.assert_allclose(verifier.p_yes(batch, YES_ID, NO_ID, over="yes_no"), [[0.75], [0.5]], rtol=1e-6)
    with pytest.raises(ValueError, match="over"):
        verifier.p_yes(logits, YES_ID, NO_ID, over="softmax")


def test_p_yes_from_whole_word_logprobs():
    # log p("Yes") = ln 0.3, log p("No") = ln 0.1: vocab 0.3, two-way 0.3 / 0.4 = 0.75.
    np.testing.assert_allclose(verifier.p_yes_from_logprobs(np.log(0.3), np.log(0.1)), 0.3, rtol=1e-6)
    np.testing.assert_allclose(verifier.p_yes_from_logprobs(np.log(0.3), np.log(0.1), over="yes_no"),
                               0.75, rtol=1e-6)


def test_p_yes_mean_over_rationales_with_mask():
    p = jnp.array([[0.2, 0.4, 0.9], [0.5, 0.1, 0.3]])
    np.testing.assert_allclose(verifier.p_yes_mean(p), [0.5, 0.3], rtol=1e-6)
    # Row 0 drops its third rationale: (0.2 + 0.4) / 2; row 1 has none left -> 0.
    mask = jnp.array([[1, 1, 0], [0, 0, 0]])
    np.testing.assert_allclose(verifier.p_yes_mean(p, mask), [0.3, 0.0], rtol=1e-6)


def test_verdict_position_of_a_verification_row_reads_the_first_verdict_byte():
    rec = chat.verification_record("2+2=", "4", True)
    assert rec == {"prompt": "2+2=4\nIs the answer correct? ", "response": "Yes"}
    rows = chat.pad_rows([chat.encode_record(rec),
                          chat.encode_record(chat.verification_record("2+2=", "5", False))], 40)
    idx = verifier.first_target_index(rows["mask"])
    n_prompt = len(rec["prompt"])
    np.testing.assert_array_equal(idx, [n_prompt, n_prompt])
    np.testing.assert_array_equal(rows["targets"][[0, 1], idx], [ord("Y"), ord("N")])
    # logits_at picks that position: one-hot logits saying "Y" at idx of row 0 only.
    logits = jnp.zeros((2, 40, VOCAB_SIZE)).at[0, n_prompt, YES_ID].set(50.0)
    p = verifier.p_yes(verifier.logits_at(logits, idx), YES_ID, NO_ID, over="yes_no")
    np.testing.assert_allclose(p, [1.0, 0.5], rtol=1e-6)


def test_genrm_objective_hand_computed():
    # Uniform logits over 2: nll ln 2 per token. One row, targets 0 0 0 1 with logits making
    # token 3 cost ln 4 ([0, -ln 3] -> p(1) = 1/4). Verify mask on tokens 0, 1 (mean ln 2);
    # correct mask on tokens 2, 3 (mean (ln 2 + ln 4) / 2 = 1.5 ln 2). lam = 0.5:
    # L = ln 2 + 0.5 * 1.5 ln 2 = 1.75 ln 2.
    logits = jnp.array([[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, -LN3]]])
    targets = jnp.array([[0, 0, 0, 1]])
    verify = jnp.array([[1.0, 1.0, 0.0, 0.0]])
    correct = jnp.array([[0.0, 0.0, 1.0, 1.0]])
    loss, m = verifier.genrm_loss(logits, targets, verify, correct, lam=0.5)
    np.testing.assert_allclose(loss, 1.75 * LN2, rtol=1e-6)
    np.testing.assert_allclose([m["verify_nll"], m["correct_nll"]], [LN2, 1.5 * LN2], rtol=1e-6)
    assert float(m["verify_count"]) == 2.0 and float(m["correct_count"]) == 2.0
    # lam = 0 is SFT on the verification targets alone.
    np.testing.assert_allclose(verifier.genrm_loss(logits, targets, verify, correct, lam=0.0)[0],
                               cross_entropy(logits, targets, verify)[0], rtol=1e-6)
    with pytest.raises(ValueError, match="lam"):
        verifier.genrm_loss(logits, targets, verify, correct, lam=-1.0)


def test_genrm_micro_batch_shares_with_step_counts_add_up_to_the_step_objective():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(4, 5, 7)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 7, (4, 5)))
    verify = jnp.asarray([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 1, 0, 0, 0]],
                         jnp.float32)
    correct = jnp.asarray([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 1, 1]],
                          jnp.float32)
    lam = 0.7

    def full(z):
        return verifier.genrm_loss(z, targets, verify, correct, lam=lam)[0]

    def shares(z):
        counts = (jnp.sum(verify), jnp.sum(correct))
        return sum(verifier.genrm_objective(
            verifier.genrm_sums(z[sl], targets[sl], verify[sl], correct[sl]), lam=lam,
            counts=counts)[0] for sl in (slice(0, 1), slice(1, 3), slice(3, 4)))

    def totals(z):  # sums added, combined once
        parts = [verifier.genrm_sums(z[sl], targets[sl], verify[sl], correct[sl])
                 for sl in (slice(0, 2), slice(2, 4))]
        return verifier.genrm_objective(jax.tree.map(lambda *xs: sum(xs), *parts), lam=lam)[0]

    for f in (shares, totals):
        np.testing.assert_allclose(jax.jit(f)(logits), jax.jit(full)(logits), rtol=1e-6)
        np.testing.assert_allclose(jax.jit(jax.grad(f))(logits), jax.jit(jax.grad(full))(logits),
                                   rtol=1e-5, atol=1e-8)


def test_whole_word_score_from_teacher_forced_rows():
    # Two rows "Q? Yes" and "Q? No" scored with sequence_logprobs over the verdict (+ EOS not
    # counted here: mask only the word bytes). Uniform logits over V: log p(word) = -n ln V.
    rows = chat.pad_rows([chat.encode_example("Q? ", "Yes"), chat.encode_example("Q? ", "No")], 8)
    word_mask = verifier.verdict_word_mask(rows["mask"], 3) * (rows["targets"] < 256)
    logp, count = sequence_logprobs(jnp.zeros((2, 8, VOCAB_SIZE)), rows["targets"], word_mask)
    np.testing.assert_array_equal(count, [3, 2])
    p = verifier.p_yes_from_logprobs(logp[0], logp[1], over="yes_no")
    # p(Yes) / (p(Yes) + p(No)) = V^-3 / (V^-3 + V^-2) = 1 / (1 + V).
    np.testing.assert_allclose(p, 1 / (1 + VOCAB_SIZE), rtol=1e-5)
