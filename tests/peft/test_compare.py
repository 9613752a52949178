"""jaxlab.peft.compare: known answers of the matched FourierFT size, the trailing mean, the
split into train / validation / test, and the spread over a learning-rate sweep with its
bootstrap interval."""

import numpy as np
import pytest

from jaxlab import tasks
from jaxlab.peft.adapters import AdapterError, AdapterSpec
from jaxlab.peft.compare import (matching_frequencies, sweep_spread, sweep_spread_difference, trailing_mean_S,
                                 train_val_test, trainable_count)



@pytest.fixture(scope="module")
def params():
    """The kernels of a transformer with 2 layers, d_model 16, 2 heads x 8 (q, k, v, o are
    16 x 16) and an MLP of 24 (16 x 24 and 24 x 16)."""
    z = np.zeros
    attn = {"q": z((2, 16, 2, 8)), "k": z((2, 16, 2, 8)), "v": z((2, 16, 2, 8)), "o": z((2, 2, 8, 16))}
    mlp = {"gate": z((2, 16, 24)), "up": z((2, 16, 24)), "down": z((2, 24, 16))}
    return {"layers": {"attn": {k: {"kernel": v} for k, v in attn.items()},
                       "mlp": {k: {"kernel": v} for k, v in mlp.items()}}}


def test_matching_frequencies_equals_lora_count_on_square_kernels(params):
    lora = AdapterSpec(method="lora", targets="attn", rank=2)
    n = matching_frequencies(params, lora)
    assert n == 2 * (16 + 16)  # 8 matrices, each 2 x 32 LoRA parameters
    fourier = AdapterSpec(method="fourierft", targets="attn", n_frequencies=n)
    assert trainable_count(params, lora) == trainable_count(params, fourier) == 2 * 4 * 64
    # the MLP: 2 layers x (2 x 40 + 40) = 240 per rank over 6 matrices -> 40 each, the same count
    mlp = AdapterSpec(method="lora", targets="mlp", rank=1)
    assert matching_frequencies(params, mlp) == 40
    assert trainable_count(params, AdapterSpec(method="fourierft", targets="mlp", n_frequencies=40)) == 240
    with pytest.raises(AdapterError, match="LoRA spec"):
        matching_frequencies(params, AdapterSpec(method="singlora", targets="attn"))
    with pytest.raises(AdapterError, match="do not fit"):
        matching_frequencies(params, AdapterSpec(method="lora", targets="attn", rank=9))  # 288 > 16 x 16


def test_trailing_mean_known_answer():
    np.testing.assert_allclose(trailing_mean_S([4, 2, 6, 0], 2), [4, 3, 4, 3])
    np.testing.assert_allclose(trailing_mean_S([1, 2, 3], 10), [1, 1.5, 2])
    np.testing.assert_allclose(trailing_mean_S([5, 7], 1), [5, 7])
    with pytest.raises(ValueError, match="window"):
        trailing_mean_S([1.0], 0)


def test_train_val_test_are_disjoint_and_sized():
    task = tasks.get("count", train_difficulty=(4, 8))
    train, val, test = train_val_test(task, 3, 50, 10, 20)
    assert (len(train), len(val), len(test)) == (50, 10, 20)
    keys = [{task.equivalence_key(e) for e in split} for split in (train, val, test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


def test_sweep_spread_and_its_interval():
    # arm a: accuracy 1, 0.5, 0 over three rates (spread 1); arm b: 0.5 at every rate (spread 0)
    P = 40
    a = np.stack([np.ones(P), np.r_[np.ones(P // 2), np.zeros(P // 2)], np.zeros(P)])[None].repeat(3, axis=0)
    b = np.tile(np.r_[np.ones(P // 2), np.zeros(P // 2)], (3, 3, 1))
    assert sweep_spread(a) == 1.0 and sweep_spread(b) == 0.0
    d = sweep_spread_difference(a, b, n_boot=500)
    assert d["effect"] == 1.0 and d["spread_a"] == 1.0 and d["spread_b"] == 0.0
    assert 0.5 < d["low"] <= 1.0 <= d["high"] and (d["seeds"], d["problems"]) == (3, P)
    # swapped arms: the same interval, negated
    r = sweep_spread_difference(b, a, n_boot=500)
    assert r["effect"] == -1.0 and r["high"] < -0.5
    with pytest.raises(ValueError, match="one shape"):
        sweep_spread_difference(a, b[:, :2])
