"""CHES scores (jaxlab.analysis.displacement) on hand-built hidden states and under a model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.analysis import displacement as disp
from jaxlab.data import chat
from jaxlab.data.tokenizer import EOS_ID
from jaxlab.losses import preference as pref
from jaxlab.models import transformer

NAN = np.nan


def hand_built():
    """Two pairs, D = 2, T = 5. Prompt and padding positions hold junk (incl. NaN and inf).

    Pair 0: chosen mask [0, 1, 1, 0, 0] sums [1, 0] + [1, 2] = h+ = [2, 2];
            rejected mask [0, 0, 1, 1, 1] sums [1, 0] + [0, 1] + [2, -1] = h- = [3, 0].
    Pair 1: rejected = chosen (mask [1, 1, 0, 0, 0]): h+ = h- = [1, 3] + [2, -1] = [3, 2].
    """
    chosen = np.array([
        [[9, 9], [1, 0], [1, 2], [NAN, 5], [np.inf, 0]],
        [[1, 3], [2, -1], [NAN, NAN], [7, 7], [0, 0]],
    ], np.float32)
    chosen_mask = np.array([[0, 1, 1, 0, 0], [1, 1, 0, 0, 0]], np.float32)
    rejected = np.array([
        [[-5, 4], [8, 8], [1, 0], [0, 1], [2, -1]],
        [[1, 3], [2, -1], [3, 3], [NAN, 1], [0, 0]],
    ], np.float32)
    rejected_mask = np.array([[0, 0, 1, 1, 1], [1, 1, 0, 0, 0]], np.float32)
    return chosen, chosen_mask, rejected, rejected_mask


def test_ches_hand_built():
    c, cm, r, rm = hand_built()
    h, n = disp.response_hidden_sums(c, cm)
    np.testing.assert_array_equal(h, [[2, 2], [3, 2]])
    np.testing.assert_array_equal(n, [2, 2])
    # Pair 0: <[2, 2], [3, 0]> - ||[2, 2]||^2 = 6 - 8 = -2. Pair 1: <h, h> - ||h||^2 = 0.
    np.testing.assert_allclose(disp.pair_ches(c, cm, r, rm), [-2.0, 0.0], atol=1e-6)


def test_length_normalised_ches_hand_built():
    c, cm, r, rm = hand_built()
    # Pair 0: |y+| = 2, |y-| = 3: <[2, 2], [3, 0]> / 6 - ||[2, 2]||^2 / 4 = 1 - 2 = -1.
    # Pair 1: identical responses of equal length: 0.
    np.testing.assert_allclose(disp.pair_ches(c, cm, r, rm, length_normalized=True), [-1.0, 0.0],
                               atol=1e-6)
    with pytest.raises(ValueError, match="both"):
        disp.ches_scores(jnp.ones((1, 2)), jnp.ones((1, 2)), jnp.ones(1), None)


def test_summed_positions_run_from_the_last_prompt_token_to_the_second_to_last_token():
    rec = {"prompt": "ab", "chosen": "xyz", "rejected": "q"}
    batch = chat.preference_batch([rec], seq_len=8)
    for half, response in (("chosen", "xyz"), ("rejected", "q")):
        rows = batch[half]
        at = np.flatnonzero(rows["mask"][0])
        # inputs = [BOS, a, b, <response>], targets = [a, b, <response>, EOS]: the summed
        # positions are input index 2 (the last prompt byte) .. the last response byte, one
        # per response token incl. EOS, i.e. every stream position but the last.
        np.testing.assert_array_equal(at, np.arange(2, 2 + len(response) + 1))
        assert rows["inputs"][0, at[0]] == ord("b")
        assert rows["inputs"][0, at[-1]] == ord(response[-1])
        assert rows["targets"][0, at[-1]] == EOS_ID


TINY = transformer.Config(vocab_size=259, d_model=16, n_layers=2, n_heads=2, n_kv_heads=2,
                          head_dim=8, mlp_dim=32)


def random_params(cfg, seed):
    """A params tree of ``cfg``'s shapes filled with N(0, 0.3^2) draws (no init compile)."""
    shapes = jax.eval_shape(transformer.init, cfg, jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape), s.dtype), shapes)


def test_model_ches_reads_the_unembedding_inputs():
    params = random_params(TINY, 0)
    recs = [{"prompt": "1+1=", "chosen": "2", "rejected": "3"},
            {"prompt": "5+5=", "chosen": "10", "rejected": "10"}]
    batch = chat.preference_batch(recs, seq_len=10)
    rows = pref.stack_pairs(batch)

    @jax.jit
    def run(params, batch, rows):
        kw = dict(positions_BT=rows["positions"], segment_ids_BT=rows["segment_ids"])
        return (disp.unembedding_inputs(params, TINY, rows["inputs"], **kw),
                transformer.apply(params, rows["inputs"], TINY, **kw),
                disp.model_pair_ches(params, TINY, batch["chosen"], batch["rejected"]))

    h, logits, scores = run(params, batch, rows)
    # Tied embeddings: logits = h E^T, so h is what the unembedding reads.
    np.testing.assert_allclose(h @ params["embed"]["embedding"].T, logits, rtol=1e-4, atol=1e-4)
    expected = disp.pair_ches(h[:2], rows["mask"][:2], h[2:], rows["mask"][2:])
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert abs(float(scores[1])) < 1e-4  # pair 1 has identical responses: CHES = 0
