"""The SFT trainer learns a prompt -> response mapping, from scratch or from given params."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxlab.data import ByteTokenizer
from jaxlab.models import transformer
from jaxlab.samplers import SampleConfig, generate, pad_prompts
from jaxlab.train import sharding as shd
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sft import SFTConfig, train_sft

CFG = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                         head_dim=16, mlp_dim=64)
RECORDS = [{"prompt": f"{a}+{b}=", "response": str(a + b)} for a in range(4) for b in range(4)]


def _greedy(params, prompts):
    tok = ByteTokenizer()
    tokens, mask = pad_prompts([tok.encode(p, bos=True) for p in prompts], pad_id=tok.pad_id)
    out = generate(params, CFG, tokens, mask, jax.random.key(0),
                   SampleConfig(max_new_tokens=3, temperature=0.0, stop_tokens=(tok.eos_id,),
                                pad_id=tok.pad_id))
    return [tok.decode(np.asarray(out.tokens[i, :int(out.lengths[i])])).rstrip()
            for i in range(len(prompts))]


def _accuracy(params):
    answers = _greedy(params, [r["prompt"] for r in RECORDS])
    return np.mean([a == r["response"] for a, r in zip(answers, RECORDS)])


def test_sft_learns_the_responses_and_dft_continues_from_it(tmp_path):
    mesh = shd.make_mesh(shd.MeshConfig(data=2), jax.devices()[:2])
    sft = SFTConfig(loss="ce", batch_size=8, seq_len=32,
                    loop=LoopConfig(steps=150, log_every=10, eval_every=50, checkpoint_every=100))
    fitted = train_sft(tmp_path / "ce", RECORDS, model_cfg=CFG, sft=sft, mesh=mesh, progress=False,
                       optim=OptimConfig(lr=1e-2, warmup_steps=10))
    losses = [r["train/loss"] for r in fitted.records if "train/loss" in r]
    assert losses[-1] < 0.3 * losses[0]
    assert _accuracy(fitted.state.params) >= 0.75
    # DFT weights each token by its own probability: it sharpens a model that already puts
    # mass on the targets (from scratch, p ~ 1/V makes its gradients tiny).
    dft = SFTConfig(loss="dft", batch_size=8, seq_len=32,
                    loop=LoopConfig(steps=40, log_every=10, eval_every=50, checkpoint_every=100))
    tuned = train_sft(tmp_path / "dft", RECORDS, model_cfg=CFG, sft=dft, mesh=mesh, progress=False,
                      optim=OptimConfig(lr=3e-3, warmup_steps=0), init_params=fitted.state.params)
    dft_losses = [r["train/loss"] for r in tuned.records if "train/loss" in r]
    assert dft_losses[-1] < dft_losses[0]
    assert _accuracy(tuned.state.params) >= 0.75


def test_sft_starts_from_given_params(tmp_path):
    mesh = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
    params = transformer.init(CFG, jax.random.key(3))
    sft = SFTConfig(batch_size=4, seq_len=32,
                    loop=LoopConfig(steps=1, eval_every=50, checkpoint_every=100))
    # lr 0: the one step leaves the given params as they are.
    fitted = train_sft(tmp_path, RECORDS, model_cfg=CFG, sft=sft, mesh=mesh, init_params=params,
                       optim=OptimConfig(lr=0.0, warmup_steps=0, weight_decay=0.0), progress=False)
    for a, b in zip(jax.tree.leaves(fitted.state.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="at least one record"):
        train_sft(tmp_path / "x", [], model_cfg=CFG, sft=sft, mesh=mesh, optim=OptimConfig())


def test_distillation_moves_the_student_to_the_teacher(tmp_path):
    """sft.loss=distill on a frozen teacher (another random model, sharded on a 2-device mesh):
    KL(teacher || student) falls, greedy agreement rises, and the teacher is not trained."""
    mesh = shd.make_mesh(shd.MeshConfig(data=2), jax.devices()[:2])
    teacher = transformer.init(CFG, jax.random.key(7))
    student_cfg = dataclasses.replace(CFG, mlp_dim=32)
    sft = SFTConfig(loss="distill", batch_size=8, seq_len=32,
                    loop=LoopConfig(steps=30, log_every=5, eval_every=50, checkpoint_every=100))
    fitted = train_sft(tmp_path / "distill", RECORDS, model_cfg=student_cfg, sft=sft, mesh=mesh, progress=False,
                       optim=OptimConfig(lr=1e-2, warmup_steps=0), teacher=(CFG, teacher))
    rows = [r for r in fitted.records if "train/kl" in r]
    assert rows[-1]["train/kl"] < 0.5 * rows[0]["train/kl"]
    assert rows[-1]["train/agree"] > rows[0]["train/agree"]
    with pytest.raises(ValueError, match="distill needs teacher"):
        train_sft(tmp_path / "none", RECORDS, model_cfg=CFG, sft=sft, mesh=mesh, progress=False,
                  optim=OptimConfig())
