import jax
import numpy as np
import pytest

from jaxlab import tasks as tasks_lib
from jaxlab.models import transformer
from jaxlab.rl import RLConfig, train_rl
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig, make_mesh

CFG = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=2,
                         head_dim=16, mlp_dim=64)


def test_ppo_epochs_reuse_the_rollout_and_go_off_policy(tmp_path):
    examples = tasks_lib.get("arithmetic", train_difficulty=(1, 1), ops="+").splits(0, 16, 0, 0)["train"]
    rl = RLConfig(steps=4, prompts_per_step=4, group_size=2, ppo_epochs=2, max_new_tokens=4, pass_k=2,
                  eps_low=0.2, eps_high=0.28, overlong="mask", checkpoint_every=2)
    mesh = make_mesh(MeshConfig(data=-1))  # 8 fake devices: 8 rows, one per device
    result = train_rl(tmp_path, examples, model_cfg=CFG, rl=rl, optim=OptimConfig(lr=0.05, warmup_steps=0),
                      mesh=mesh, init_params=transformer.init(CFG, jax.random.key(0)), progress=False)
    rec = {r["step"]: r for r in result.records if "train/ratio" in r}
    assert sorted(rec) == [1, 2, 3, 4]
    for step in (1, 3):  # first update of a rollout: on-policy, ratio 1 exactly, nothing clipped
        if rec[step]["train/tokens"] > 0:
            assert rec[step]["train/ratio"] == pytest.approx(1.0, abs=1e-5)
            assert rec[step]["train/approx_kl"] == pytest.approx(0.0, abs=1e-6)
        assert rec[step]["train/clip_low"] == rec[step]["train/clip_high"] == 0.0
    for step in (2, 4):  # the same rollout again: same host metrics, off-policy ratios
        assert rec[step]["train/reward"] == rec[step - 1]["train/reward"]
        assert rec[step]["train/tokens"] == rec[step - 1]["train/tokens"]
        if rec[step]["train/tokens"] > 0:
            assert rec[step]["train/approx_kl"] > 0
    # resuming the finished run returns at once with the same records
    again = train_rl(tmp_path, examples, model_cfg=CFG, rl=rl, optim=OptimConfig(lr=0.05, warmup_steps=0),
                     mesh=mesh, init_params=transformer.init(CFG, jax.random.key(0)), progress=False)
    assert again.train_wall_s is None and len(again.records) == len(result.records)


def test_config_errors_name_the_value():
    with pytest.raises(ValueError, match="advantage"):
        RLConfig(advantage="ppo")
    with pytest.raises(ValueError, match="group_size"):
        RLConfig(group_size=1)
    with pytest.raises(ValueError, match="overlong_buffer"):
        RLConfig(overlong="soft", overlong_buffer=99, max_new_tokens=8)
