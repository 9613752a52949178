"""jaxlab.peft.bitdelta: sign x scale reconstruction and the L2-optimal initial scale
(distillation of the scales on a tiny model: tests/experiments/test_bitdelta.py)."""

import numpy as np
import pytest

from jaxlab.peft import bitdelta


def test_sign_times_scale_rebuilds_a_known_matrix():
    # stacked q kernels [L=2, d=2, H=1, hd=2]: layer 0's delta is +-0.5 exactly, layer 1's +-1, 3
    base = {"layers": {"attn": {"q": {"kernel": np.zeros((2, 2, 1, 2), np.float32)}}}, "norm": {"scale": np.ones(2)}}
    d0 = np.array([[0.5, -0.5], [-0.5, 0.5]], np.float32)
    d1 = np.array([[1.0, -3.0], [3.0, 0.0]], np.float32)  # mean |d| = 7/4; the zero counts as +
    ft = {"layers": {"attn": {"q": {"kernel": np.stack([d0, d1])[:, :, None, :] + 0.0}}},
          "norm": {"scale": 2 * np.ones(2)}}
    signs, scales = bitdelta.compress(base, ft, targets="attn")
    assert list(signs) == ["layers/attn/q"] and signs["layers/attn/q"].dtype == np.int8
    np.testing.assert_array_equal(signs["layers/attn/q"][1, :, 0], [[1, -1], [1, 1]])
    np.testing.assert_allclose(scales["layers/attn/q"], [0.5, 1.75])
    rebuilt = bitdelta.apply(base, signs, scales)
    np.testing.assert_allclose(rebuilt["layers"]["attn"]["q"]["kernel"][0, :, 0], d0)  # exact: |d0| is constant
    np.testing.assert_allclose(rebuilt["layers"]["attn"]["q"]["kernel"][1, :, 0], [[1.75, -1.75], [1.75, 1.75]])
    np.testing.assert_array_equal(rebuilt["norm"]["scale"], base["norm"]["scale"])       # others: the base
    np.testing.assert_array_equal(bitdelta.apply(base, signs, scales, others=ft)["norm"]["scale"], 2.0)
    assert bitdelta.size_bits(signs, scales, scale_bits=16) == 8 + 2 * 16
    with pytest.raises(ValueError, match="scale shape"):
        bitdelta.apply(base, signs, {"layers/attn/q": np.ones(3, np.float32)})


def test_mean_abs_scale_minimises_the_l2_error():
    rng = np.random.default_rng(0)
    delta = rng.standard_t(3, size=(64, 48))  # heavy-tailed, like weight deltas
    alpha = float(bitdelta.matrix_scale(delta))
    assert alpha == pytest.approx(np.abs(delta).mean(), rel=1e-6)
    err = lambda a: float(np.sum((delta - a * bitdelta.sign_pm1(delta)) ** 2))  # noqa: E731
    grid = np.linspace(0.2 * alpha, 3 * alpha, 2001)
    assert abs(grid[np.argmin([err(a) for a in grid])] - alpha) <= grid[1] - grid[0]
    assert err(alpha) < min(err(0.99 * alpha), err(1.01 * alpha))
