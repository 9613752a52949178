"""The BLT experiments' harness (jaxlab.train.byte_lm): seeded windows, masked bits per byte
checked by hand, and clear errors."""

import math

import jax
import numpy as np
import pytest

from jaxlab.data.corpus import DataError
from jaxlab.losses.lm import token_nll
from jaxlab.models import transformer
from jaxlab.train import byte_lm

TINY = transformer.Config(vocab_size=264, d_model=16, n_layers=1, n_heads=2, n_kv_heads=2, head_dim=8, mlp_dim=32)


def test_comparison_windows_follow_their_seeds():
    kw = dict(eval_seed=7, steps=3, batch_size=2, seq_len=8, eval_windows=4)
    a, b, c = (byte_lm.comparison_windows(seed=s, **kw) for s in (0, 0, 1))
    assert a.batches_NBT.shape == (3, 2, 9) and a.val_WT.shape == (4, 9)
    assert (a.batches_NBT == b.batches_NBT).all() and (a.batches_NBT != c.batches_NBT).any()
    assert (a.val_WT == c.val_WT).all()  # the validation windows depend on eval_seed alone
    with pytest.raises(DataError, match="too few"):
        byte_lm.random_windows(np.arange(5), 1, 5, np.random.default_rng(0))


def test_masked_bits_per_byte_by_hand():
    params = transformer.init(TINY, jax.random.key(0))
    windows = np.random.default_rng(0).integers(0, 256, (3, 9)).astype(np.int32)
    mask = np.zeros((3, 8), np.float32)
    mask[0, [1, 4]] = 1.0
    mask[1] = 1.0  # row 2: no scored target
    none = byte_lm.starts_fn("none")
    got = byte_lm.window_bpb("transformer", TINY, params, none, windows, 2, mask)
    nll = np.asarray(token_nll(transformer.apply(params, windows[:, :-1], TINY), windows[:, 1:])[0])
    np.testing.assert_allclose(got[:2], [nll[0, [1, 4]].mean() / math.log(2), nll[1].mean() / math.log(2)],
                               rtol=1e-5)
    assert np.isnan(got[2])
    np.testing.assert_allclose(byte_lm.window_bpb("transformer", TINY, params, none, windows, 3),
                               nll.mean(axis=1) / math.log(2), rtol=1e-5)
    with pytest.raises(ValueError, match="mask must be"):
        byte_lm.window_bpb("transformer", TINY, params, none, windows, 2, mask[:, :4])
    with pytest.raises(ValueError, match="kind must be"):
        byte_lm.window_bpb("mamba", TINY, params, none, windows, 2)


def test_starts_fn_rules_and_errors():
    rows = np.zeros((2, 9), np.int32)
    assert np.asarray(byte_lm.starts_fn("static", k=3)(rows)).tolist() == [[1, 0, 0, 1, 0, 0, 1, 0]] * 2
    assert byte_lm.starts_fn("none")(rows) is None
    with pytest.raises(ValueError, match="k >= 1"):
        byte_lm.starts_fn("static")
    with pytest.raises(ValueError, match="entropy_params"):
        byte_lm.starts_fn("entropy", theta=1.0)
    with pytest.raises(ValueError, match="patches must be"):
        byte_lm.starts_fn("space")
