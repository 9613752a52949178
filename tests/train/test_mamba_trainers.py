"""A Mamba through the runner and the trainers (``model.family=mamba``): the runner learns,
packing keeps sequences apart, the sharded step equals the one-device step, gradients are
finite, SFT and DPO train it, and generation decodes what the full forward pass predicts."""

import functools
import json
import math
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pydoc_data.topics
from test_step import SGD, _batch

from jaxlab import cli, config as config_lib, models
from jaxlab.models import mamba
from jaxlab.samplers import SampleConfig, generate, pad_prompts
from jaxlab.train import sharding as shd
from jaxlab.train import state as state_lib
from jaxlab.train.config import ExperimentConfig
from jaxlab.train.dpo import DPOConfig, pair_sequence_logprobs, train_dpo
from jaxlab.train.fit import LoopConfig
from jaxlab.train.lm import lm_loss_sums
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sft import SFTConfig, train_sft
from jaxlab.train.step import jit_train_step, state_shardings

CFG = mamba.Config(vocab_size=40, d_model=16, n_layers=2, d_state=4)
BYTES_CFG = mamba.Config(vocab_size=264, d_model=32, n_layers=1, d_state=8)
LOSS = functools.partial(lm_loss_sums, model_cfg=CFG)
QUICKSTART = str(Path(__file__).resolve().parents[2] / "experiments" / "quickstart.py")


def test_family_switch_keeps_shared_fields_and_refuses_unknown_ones():
    cfg = config_lib.apply_overrides(ExperimentConfig(), ["model.family=mamba", "model.d_state=8"])
    assert isinstance(cfg.model, mamba.Config) and cfg.model.d_state == 8
    assert cfg.model.d_model == ExperimentConfig().model.d_model  # shared fields carried over
    assert config_lib.from_dict(ExperimentConfig, json.loads(config_lib.to_json(cfg))) == cfg
    assert models.module(cfg.model) is mamba
    with pytest.raises(config_lib.ConfigError, match="'rwkv' is not one of"):
        config_lib.apply_overrides(ExperimentConfig(), ["model.family=rwkv"])
    with pytest.raises(config_lib.ConfigError, match="unknown config key 'model.n_heads'"):
        config_lib.apply_overrides(ExperimentConfig(), ["model.family=mamba", "model.n_heads=2"])
    with pytest.raises(ValueError, match="model.family='rwkv'"):
        models.module(type("Cfg", (), {"family": "rwkv"})())


def test_packed_and_padded_rows_give_each_sequence_its_own_loss():
    params = mamba.init(CFG, jax.random.key(1))
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, CFG.vocab_size, 9), rng.integers(0, CFG.vocab_size, 6)

    def row(seqs, T):
        batch = {k: np.zeros((1, T), np.int32) for k in ("inputs", "targets", "segment_ids", "positions")}
        batch["mask"] = np.zeros((1, T), np.float32)
        start = 0
        for i, seq in enumerate(seqs):
            n = len(seq) - 1
            sl = slice(start, start + n)
            batch["inputs"][0, sl], batch["targets"][0, sl] = seq[:-1], seq[1:]
            batch["mask"][0, sl], batch["segment_ids"][0, sl], batch["positions"][0, sl] = 1, i + 1, np.arange(n)
            start += n
        return batch

    loss = jax.jit(lambda batch: LOSS(params, batch, jax.random.key(0)))  # one shape, one compile
    alone_a, alone_b = loss(row([a], 16)), loss(row([b], 16))  # each alone, padded at the end
    packed = loss(row([a, b], 16))  # 13 tokens packed, 3 of padding
    np.testing.assert_allclose(packed["nll"], alone_a["nll"] + alone_b["nll"], rtol=1e-5)
    assert float(packed["count"]) == 8 + 5
    unsegmented = row([a, b], 16)
    unsegmented["segment_ids"][:] = 1  # one segment: b now reads a's state, and its loss changes
    assert abs(float(loss(unsegmented)["nll"]) - float(packed["nll"])) > 1e-3


def test_sharded_step_on_8_devices_equals_1_device_and_gradients_are_finite():
    results = {}
    for name, mesh_cfg, devices in [("one", shd.MeshConfig(data=1), jax.devices()[:1]),
                                    ("eight", shd.MeshConfig(data=2, fsdp=4), jax.devices()[:8])]:
        mesh = shd.make_mesh(mesh_cfg, devices)
        init = lambda key: state_lib.create(mamba.init(CFG, key), SGD, 0)
        sh = state_shardings(jax.eval_shape(init, jax.random.key(0)), mesh, mamba.param_axes)
        state = jax.jit(init, out_shardings=sh)(jax.random.key(0))
        step = jit_train_step(mesh, sh, loss_sums_fn=LOSS, optimizer=SGD, grad_accum=2)
        metrics = []
        for i in range(2):
            state, m = step(state, shd.global_batch(_batch(seed=i), mesh))
            metrics.append(jax.device_get(m))
        results[name] = (state, metrics)
    one, eight = results["one"], results["eight"]
    in_proj = eight[0].params["layers"]["in_proj"]["kernel"]
    assert in_proj.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", None)
    assert all(np.isfinite(m["grad_norm"]) and m["grad_norm"] > 0 for m in one[1])
    chex.assert_trees_all_close(jax.device_get(eight[0].params), jax.device_get(one[0].params),
                                rtol=1e-5, atol=1e-6)
    for a, b in zip(one[1], eight[1]):
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-6)


@pytest.mark.slow
def test_runner_trains_a_mamba_and_reports_it(tmp_path):
    text = "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)[:12])[:60_000]
    (tmp_path / "corpus.txt").write_text(text)
    corpus = [f"data.path={tmp_path / 'corpus.txt'}", f"data.data_dir={tmp_path / 'tfds'}"]
    workdir = tmp_path / "run"
    args = ["run", QUICKSTART, "--workdir", str(workdir), "--no-progress", "--set", *corpus,
            "model.family=mamba", "model.d_model=32", "model.n_layers=1", "model.d_state=8",
            "train.batch_size=8", "train.seq_len=32", "train.eval_batches=2", "optim.warmup_steps=2",
            "sample.max_new_tokens=8", "train.loop.steps=24", "train.loop.eval_every=12",
            "train.loop.checkpoint_every=24", "train.loop.log_every=4"]
    assert cli.main(args) == 0
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [r["train/loss"] for r in records if "train/loss" in r]
    val = [r["val/bpb"] for r in records if "val/bpb" in r]
    assert train[-1] < train[0] - 0.3 and val[-1] < val[0]
    results = json.loads((workdir / "results.json").read_text())
    cfg = json.loads((workdir / "config.json").read_text())["model"]
    assert cfg["family"] == "mamba"
    assert results["params"] == mamba.count_params(mamba.init(mamba.Config(**cfg), jax.random.key(0)))
    assert "Mamba (selective SSM)" in (workdir / "report.md").read_text()
    assert results["sample"].startswith("The ") and len(results["sample"]) > 4


def test_greedy_generation_follows_the_full_forward_pass():
    params = mamba.init(BYTES_CFG, jax.random.key(4))
    prompts = [[256, 72, 105, 33, 10], [256, 65]]  # different lengths: the second is left-padded
    tokens, mask = pad_prompts(prompts, pad_id=257)
    out = generate(params, BYTES_CFG, tokens, mask, jax.random.key(0),
                   SampleConfig(max_new_tokens=4, temperature=0.0, pad_id=257))
    for prompt, row in zip(prompts, np.asarray(out.tokens)):
        # each generated token is the argmax of the full pass over the unpadded sequence before it
        logits = mamba.apply(params, jnp.asarray([prompt + row.tolist()]), BYTES_CFG)[0]
        assert row.tolist() == np.asarray(jnp.argmax(logits[len(prompt) - 1:-1], -1)).tolist()


RECORDS = [{"prompt": f"{a}+{b}=", "response": str(a + b)} for a in range(4) for b in range(4)]
PAIRS = [{"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": str(a + b + 1)}
         for a in range(4) for b in range(4)]


def test_sft_then_dpo_train_a_mamba(tmp_path):
    mesh = shd.make_mesh(shd.MeshConfig(data=2), jax.devices()[:2])
    sft = SFTConfig(batch_size=8, seq_len=32, loop=LoopConfig(steps=30, log_every=10, eval_every=100,
                                                               checkpoint_every=100))
    fitted = train_sft(tmp_path / "sft", RECORDS, model_cfg=BYTES_CFG, sft=sft, mesh=mesh, progress=False,
                       optim=OptimConfig(lr=1e-2, warmup_steps=5))
    losses = [r["train/loss"] for r in fitted.records if "train/loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    params = fitted.state.params
    dpo = DPOConfig(beta=0.5, batch_size=8, seq_len=16,
                    loop=LoopConfig(steps=15, log_every=1, eval_every=100, checkpoint_every=100))
    before = pair_sequence_logprobs(params, BYTES_CFG, PAIRS, seq_len=16, batch_size=16)
    result = train_dpo(tmp_path / "dpo", PAIRS, model_cfg=BYTES_CFG, dpo=dpo, mesh=mesh, init_params=params,
                       optim=OptimConfig(lr=3e-3, warmup_steps=0), progress=False)
    dpo_losses = [r["train/loss"] for r in result.records if "train/loss" in r]
    np.testing.assert_allclose(result.records[0]["train/loss"], math.log(2.0), rtol=1e-5)
    assert dpo_losses[-1] < dpo_losses[0]
    after = pair_sequence_logprobs(result.state.params, BYTES_CFG, PAIRS, seq_len=16, batch_size=16)
    gap = lambda lp: float(np.mean(lp["chosen"] - lp["rejected"]))
    assert gap(after) > gap(before) + 0.5
