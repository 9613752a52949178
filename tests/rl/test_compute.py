"""SFT and RL step compute and the compute-matched SFT step count, against hand values."""

import pytest

from jaxlab.rl.compute import matched_sft_steps, rl_step_flops, sft_step_flops


def test_step_flops():
    assert sft_step_flops(10.0, 4, 8) == 6 * 10 * 4 * 8
    assert rl_step_flops(10.0, 4, 8, 1) == 8 * 10 * 4 * 8
    assert rl_step_flops(10.0, 4, 8, 2) == (6 + 1) * 10 * 4 * 8
    with pytest.raises(ValueError):
        rl_step_flops(1.0, 1, 1, 0)


def test_matched_sft_steps():
    # 100 * (8 * 128 * 48) / (6 * 16 * 128) = 400
    assert matched_sft_steps(100, rows=128, width=48, ppo_epochs=1, batch_size=16, seq_len=128) == 400
    # with E = 2 the rollout is shared: 100 * 7 * 128 * 48 / (6 * 16 * 128) = 350
    assert matched_sft_steps(100, rows=128, width=48, ppo_epochs=2, batch_size=16, seq_len=128) == 350
    # rounded to a multiple of the evaluation points, and never below one multiple
    assert matched_sft_steps(100, rows=128, width=48, ppo_epochs=2, batch_size=16, seq_len=128,
                             multiple_of=4) == 352
    assert matched_sft_steps(1, rows=1, width=1, ppo_epochs=1, batch_size=64, seq_len=64, multiple_of=2) == 2
