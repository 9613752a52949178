"""The DPO-family trainer: log 2 at the start, exact gradient accumulation, the two reference
modes agree, and training widens the chosen-vs-rejected margin."""

import functools
import math

import jax
import numpy as np
import pytest

from jaxlab.models import transformer
from jaxlab.train import sharding as shd
from jaxlab.train.dpo import (
    DPOConfig,
    PairSource,
    dpo_loss_sums,
    pair_rows,
    pair_sequence_logprobs,
    train_dpo,
    with_reference_logprobs,
)
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.step import accumulate_gradients

CFG = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                         head_dim=16, mlp_dim=64)
PAIRS = [{"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": str(a + b + 1)}
         for a in range(4) for b in range(4)]
SEQ = 16


def _params(seed):
    return transformer.init(CFG, jax.random.key(seed))


def _train_losses(result, key="train/loss"):
    return [r[key] for r in result.records if key in r]


def test_first_step_loss_is_log2_and_modes_agree(tmp_path):
    mesh = shd.make_mesh(shd.MeshConfig(data=2), jax.devices()[:2])
    params = _params(0)
    optim = OptimConfig(lr=1e-2, warmup_steps=0, weight_decay=0.0)
    runs = {}
    for mode in ("precomputed", "online"):
        dpo = DPOConfig(reference=mode, batch_size=8, seq_len=SEQ,
                        loop=LoopConfig(steps=1, log_every=1, eval_every=50, checkpoint_every=100))
        runs[mode] = train_dpo(tmp_path / mode, PAIRS, model_cfg=CFG, dpo=dpo, optim=optim,
                               mesh=mesh, init_params=params, progress=False)
    for run in runs.values():
        # policy == reference: every log-ratio is 0, l = -log sigma(0) = log 2, margins 0.
        np.testing.assert_allclose(run.records[0]["train/loss"], math.log(2.0), rtol=1e-6)
        assert abs(run.records[0]["train/margins"]) < 1e-6
    pre, onl = runs["precomputed"], runs["online"]
    for key in ("train/loss", "train/grad_norm", "train/chosen_logps", "train/rejected_logps"):
        np.testing.assert_allclose(pre.records[0][key], onl.records[0][key], rtol=1e-5, atol=1e-6)
    # (Params after one Adam step are not compared: Adam's first update is ~lr * sign(g), which
    # turns float noise in near-zero gradients into lr-sized differences.)


@pytest.mark.parametrize("loss_type", ["dpo", "simpo"])
def test_gradient_accumulation_equals_the_large_batch(loss_type):
    policy, reference = _params(1), _params(2)
    dpo = DPOConfig(loss_type=loss_type, beta=0.5, label_smoothing=0.1 if loss_type == "dpo" else 0.0)
    pairs = with_reference_logprobs(PAIRS[:8], reference, CFG, seq_len=SEQ, batch_size=8)
    batch = jax.tree.map(np.asarray, pair_rows(pairs, SEQ))
    fn = functools.partial(dpo_loss_sums, model_cfg=CFG, loss_type=loss_type, **dpo.hparams())
    key = jax.random.key(0)
    accumulate = jax.jit(accumulate_gradients, static_argnums=(0, 4))
    g1, s1 = accumulate(fn, policy, batch, key, 1)
    g4, s4 = accumulate(fn, policy, batch, key, 4)
    assert float(s1["count"]) == 8.0 and float(s1["loss"]) > 0
    for k in s1:
        np.testing.assert_allclose(s4[k], s1[k], rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(g4), jax.tree.leaves(g1)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    if loss_type != "simpo":  # online: the reference from frozen params gives the same sums
        batch_online = {k: v for k, v in batch.items() if not k.startswith("ref_")}
        _, s_on = accumulate(fn, policy, batch_online, key, 4, reference)
        np.testing.assert_allclose(s_on["loss"], s1["loss"], rtol=1e-5)


def test_training_raises_the_margin(tmp_path):
    mesh = shd.make_mesh(shd.MeshConfig(data=2), jax.devices()[:2])
    params = _params(0)
    dpo = DPOConfig(beta=0.5, batch_size=8, seq_len=SEQ,
                    loop=LoopConfig(steps=30, log_every=5, eval_every=50, checkpoint_every=100))
    before = pair_sequence_logprobs(params, CFG, PAIRS, seq_len=SEQ, batch_size=16)
    result = train_dpo(tmp_path, PAIRS, model_cfg=CFG, dpo=dpo, mesh=mesh, init_params=params,
                       optim=OptimConfig(lr=3e-3, warmup_steps=0), progress=False)
    losses = _train_losses(result)
    assert losses[-1] < 0.5 * math.log(2.0)
    after = pair_sequence_logprobs(result.state.params, CFG, PAIRS, seq_len=SEQ, batch_size=16)
    gap = lambda lp: np.mean(lp["chosen"] - lp["rejected"])
    assert gap(after) > gap(before) + 1.0
    assert _train_losses(result, "train/margins")[-1] > 0.5


def test_pair_source_is_resumable_and_covers_every_pair():
    source = PairSource(PAIRS, batch_size=6, seq_len=SEQ, seed=3)
    first = [source.next(None, s)[0] for s in range(3)]
    seen = np.concatenate([b["chosen_inputs"][:, 1] for b in first])[:16]  # one epoch
    assert sorted(seen.tolist()) == sorted(ord(p["prompt"][0]) for p in PAIRS)
    state = source.get_state()
    nxt = source.next(None, 3)[0]
    again = PairSource(PAIRS, batch_size=6, seq_len=SEQ, seed=3)
    again.set_state(state)
    np.testing.assert_array_equal(again.next(None, 3)[0]["chosen_inputs"], nxt["chosen_inputs"])


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="loss_type"):
        DPOConfig(loss_type="kto")
    with pytest.raises(ValueError, match="reference"):
        DPOConfig(reference="lazy")
    with pytest.raises(ValueError, match="grad_accum"):
        DPOConfig(batch_size=6, loop=LoopConfig(grad_accum=4, eval_every=50, checkpoint_every=100))
    mesh = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
    with pytest.raises(ValueError, match="ref_params"):
        train_dpo("/tmp/unused", PAIRS, model_cfg=CFG, dpo=DPOConfig(), optim=OptimConfig(),
                  mesh=mesh, init_params=functools.partial(transformer.init, CFG))
