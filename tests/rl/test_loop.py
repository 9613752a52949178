import jax
import numpy as np
import pytest

from jaxlab import tasks as tasks_lib
from jaxlab.models import transformer
from jaxlab.rl import RLConfig, train_rl
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig, make_mesh

CFG = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=2,
                         head_dim=16, mlp_dim=64)


def test_ppo_epochs_reuse_the_rollout_and_go_off_policy(tmp_path):
    examples = tasks_lib.get("arithmetic", train_difficulty=(1, 1), ops="+").splits(0, 16, 0, 0)["train"]
    rl = RLConfig(prompts_per_step=4, group_size=2, ppo_epochs=2, max_new_tokens=4, pass_k=2,
                  eps_low=0.2, eps_high=0.28, overlong="mask",
                  loop=LoopConfig(steps=4, log_every=1, eval_every=10, checkpoint_every=2))
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


def test_rollout_rows_carry_their_own_reward(monkeypatch):
    """Each row's advantage is the group advantage of the reward of the text in that row's
    loss mask (a stub verifier rewards completions whose first byte is even)."""
    from jaxlab.losses.policy import grpo_advantages
    from jaxlab.rl import loop as loop_lib

    def stub_score(examples, texts, *, format_coef=0.0):
        del examples, format_coef
        correct = np.array([float(bool(t) and ord(t[0]) % 2 == 0) for t in texts], np.float32)
        return correct, correct

    monkeypatch.setattr(loop_lib, "score_responses", stub_score)
    examples = tasks_lib.get("arithmetic", train_difficulty=(1, 2), ops="+").splits(0, 16, 0, 0)["train"]
    rl = RLConfig(prompts_per_step=4, group_size=4, max_new_tokens=6, temperature=2.0)
    source = loop_lib.RolloutSource(examples, model_cfg=CFG, rl=rl)
    batch, _ = source.sample_batch(transformer.init(CFG, jax.random.key(0)), 0)
    texts = []
    for b in range(rl.rows):
        on = batch["mask"][b] > 0
        texts.append(loop_lib.decode_response(batch["targets"][b][on], np.ones(int(on.sum()))))
        # the loss mask starts at the column whose input is the prompt's last byte
        prompt = bytes(t for t in batch["inputs"][b][:np.argmax(on) + 1] if t < 256).decode()
        assert prompt in {ex.prompt for ex in examples}
    rewards = stub_score(None, texts)[0].reshape(rl.prompts_per_step, rl.group_size)
    assert 0 < rewards.mean() < 1
    np.testing.assert_allclose(batch["advantages"], np.asarray(grpo_advantages(rewards)).reshape(-1), atol=1e-6)


def test_one_update_raises_the_rewarded_completion():
    """An on-policy SGD step on the clipped loss raises log pi of the completion with A > 0
    and lowers the one with A < 0 (the sign of the surrogate)."""
    from jaxlab.data.chat import encode_prompt
    from jaxlab.rl import build_rows, normalize_rl_sums, policy_logprobs, rl_loss_sums

    params = transformer.init(CFG, jax.random.key(0))
    prompt = encode_prompt("12+34=")
    completions = [np.array([52, 54, 258]), np.array([52, 55, 258])]  # "46" and "47", then EOS
    rl = RLConfig()
    rows = build_rows([prompt, prompt], completions, [np.ones(3), np.ones(3)], [np.zeros(3), np.zeros(3)], 16)
    logp0 = np.asarray(policy_logprobs(params, rows, CFG, rl.sample_config())[0])
    rows["old_logp"] = np.where(rows["mask"] > 0, logp0, 0.0).astype(np.float32)
    rows["advantages"] = np.array([1.0, -1.0], np.float32)

    def loss(p):
        return normalize_rl_sums(rl_loss_sums(p, rows, jax.random.key(0), model_cfg=CFG, rl=rl))["loss"]

    grads = jax.grad(loss)(params)
    stepped = jax.tree.map(lambda p, g: p - 1e-2 * g, params, grads)
    logp1 = np.asarray(policy_logprobs(stepped, rows, CFG, rl.sample_config())[0])
    seq_change = ((logp1 - logp0) * rows["mask"]).sum(axis=1)
    assert seq_change[0] > 0 > seq_change[1]
