"""Adapters in the trainers: the state holds the adapter alone, the base stays frozen, an
interrupted run resumes bitwise, checkpoints refuse another base or spec, and the DPO reference
is the base."""

import math
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import config as config_lib
from jaxlab.models import transformer
from jaxlab.peft import AdapterError, AdapterSpec, attach, merge
from jaxlab.peft.runs import load_adapter_run, params_sha256
from jaxlab.train import sharding as shd
from jaxlab.train.checkpoint import read_meta
from jaxlab.train.dpo import DPOConfig, train_dpo
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sft import SFTConfig, train_sft

REPO = Path(__file__).resolve().parents[2]
CFG = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                         head_dim=16, mlp_dim=64)
RECORDS = [{"prompt": f"{a}+{b}=", "response": str(a + b)} for a in range(4) for b in range(4)]
PAIRS = [{"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": str(a + b + 1)}
         for a in range(4) for b in range(4)]
SPEC = AdapterSpec(method="lora", targets="all", rank=2, alpha=4.0)
OPTIM = OptimConfig(lr=1e-2, warmup_steps=0, weight_decay=0.0)


def _base(cfg, seed):
    """Random params in the model's tree (drawn with numpy: compiling init costs seconds)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda key: transformer.init(cfg, key), jax.random.key(0))
    return jax.tree_util.tree_map_with_path(
        lambda p, s: jnp.asarray(1.0 + 0.1 * rng.standard_normal(s.shape) if "scale" in jax.tree_util.keystr(p)
                                 else 0.2 * rng.standard_normal(s.shape), s.dtype), shapes)


def _mesh():
    return shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])


def _sft(workdir, base, steps=4, spec=SPEC, **kw):
    sft = SFTConfig(batch_size=4, seq_len=32, peft=spec,
                    loop=LoopConfig(steps=steps, log_every=1, eval_every=100, checkpoint_every=2))
    return train_sft(workdir, RECORDS, model_cfg=CFG, sft=sft, mesh=_mesh(), init_params=base,
                     optim=OPTIM, progress=False, base_path="tiny-base", **kw)


def _leaves(tree):
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_peft_is_set_from_overrides():
    cfg = config_lib.apply_overrides(SFTConfig(), ["peft.method=lora", "peft.rank=16"])
    assert cfg.peft == AdapterSpec(method="lora", rank=16) and cfg.peft.enabled
    assert not SFTConfig().peft.enabled and not DPOConfig().peft.enabled
    with pytest.raises(config_lib.ConfigError, match="not one of"):
        config_lib.apply_overrides(SFTConfig(), ["peft.method=loraa"])


@pytest.mark.slow
def test_sft_adapter_trains_the_adapter_alone_and_resumes_bitwise(tmp_path):
    base = _base(CFG, 0)
    base_before = _leaves(base)
    full = _sft(tmp_path / "full", base)
    # The state: adapter leaves only, and the optimizer moments cover them alone.
    paths = set(_leaves(full.state.params))
    assert paths and all(p.endswith(("['lora_a']", "['lora_b']")) for p in paths)
    n_adapter = sum(x.size for x in jax.tree.leaves(full.state.params))
    n_moments = sum(x.size for x in jax.tree.leaves(full.state.opt_state) if np.ndim(x) > 0)
    assert n_moments == 2 * n_adapter  # AdamW's mu and nu, nothing of the base
    for k, v in _leaves(base).items():  # the base is untouched
        np.testing.assert_array_equal(v, base_before[k])
    assert np.abs(np.asarray(full.state.params["layers"]["attn"]["q"]["lora_b"])).max() > 0
    losses = [r["train/loss"] for r in full.records if "train/loss" in r]
    assert losses[-1] < losses[0]
    # The model's params are the merge.
    merged = merge(base, full.state.params, SPEC)
    for k, v in _leaves(full.params).items():
        np.testing.assert_array_equal(v, np.asarray(_leaves(merged)[k]))

    # An interrupted run (a copy of this one without its step-4 checkpoint) resumed to 4
    # steps: the same adapter.
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", cut)
    shutil.rmtree(cut / "checkpoints" / "4")
    resumed = _sft(cut, base)
    assert resumed.resumed_from == 2
    a, b = _leaves(full.state.params), _leaves(resumed.state.params)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])

    # The checkpoint records the spec and the base; loading checks the base's digest.
    meta = read_meta(cut, 4)["adapter"]
    assert meta["base"] == {"path": "tiny-base", "sha256": params_sha256(base)}
    spec, trainable, _ = load_adapter_run(cut, base=base)
    assert spec == SPEC
    np.testing.assert_array_equal(trainable["layers"]["mlp"]["down"]["lora_a"],
                                  a["['layers']['mlp']['down']['lora_a']"])
    other = _base(CFG, 1)
    with pytest.raises(AdapterError, match="SHA-256"):
        load_adapter_run(cut, base=other)
    with pytest.raises(AdapterError, match="SHA-256"):
        _sft(cut, other, steps=6)
    with pytest.raises(AdapterError, match="rank"):
        _sft(cut, base, steps=6, spec=AdapterSpec(method="lora", targets="all", rank=4))
    with pytest.raises(ValueError, match="adapter run"):
        _sft(cut, base, steps=6, spec=AdapterSpec(method="none"))


@pytest.mark.slow
def test_dpo_adapter_reference_is_the_base_in_both_modes(tmp_path):
    base = _base(CFG, 0)
    runs = {}
    for mode in ("precomputed", "online"):
        dpo = DPOConfig(reference=mode, batch_size=8, seq_len=16, peft=SPEC,
                        loop=LoopConfig(steps=2, log_every=1, eval_every=50, checkpoint_every=100))
        runs[mode] = train_dpo(tmp_path / mode, PAIRS, model_cfg=CFG, dpo=dpo, optim=OPTIM, mesh=_mesh(),
                               init_params=base, progress=False)
    for run in runs.values():
        # B = 0: the policy is the base is the reference, so l = -log sigma(0) = log 2.
        np.testing.assert_allclose(run.records[0]["train/loss"], math.log(2.0), rtol=1e-6)
        assert set(_leaves(run.state.params)) == set(_leaves(runs["online"].state.params))
    for key in ("train/loss", "train/margins", "train/grad_norm"):
        np.testing.assert_allclose(runs["precomputed"].records[1][key], runs["online"].records[1][key],
                                   rtol=1e-4, atol=1e-6)
    assert runs["online"].records[1]["train/loss"] != runs["online"].records[0]["train/loss"]
    with pytest.raises(ValueError, match="reference is the frozen base"):
        train_dpo(tmp_path / "x", PAIRS, model_cfg=CFG, dpo=dpo, optim=OPTIM, mesh=_mesh(),
                  init_params=base, ref_params=_base(CFG, 5), progress=False)


@pytest.mark.slow
def test_genrm_verifier_trains_an_eva_adapter_and_resumes_bitwise(tmp_path):
    from jaxlab import cli
    from jaxlab.data.chat import verification_record

    exp = cli.load_experiment(REPO / "experiments" / "genrm_verifier.py")
    spec = AdapterSpec(method="eva", targets="qv", rank=2, alpha=4.0)
    cfg = exp.Config(genrm_peft=spec, batch_size=4, seq_len=48, lam=0.5,
                     verifier_optim=OptimConfig(lr=1e-2, warmup_steps=0, weight_decay=0.0))
    verify = [verification_record(f"{a}+{a}=", str(2 * a + a % 2), a % 2 == 0) for a in range(8)]
    correct = [{"prompt": f"{a}+{a}=", "response": str(2 * a)} for a in range(0, 8, 2)]
    base = _base(exp.TINY, 0)

    def train(workdir):
        return exp.train_genrm(workdir, verify, correct, cfg=cfg, model_cfg=exp.TINY, init_params=base,
                               mesh=_mesh(), progress=False, base_path="warm",
                               loop=LoopConfig(steps=4, log_every=1, eval_every=10, checkpoint_every=2))

    result = train(tmp_path / "a")
    assert {p.rsplit("[", 1)[-1] for p in _leaves(result.state.params)} == {"'lora_a']", "'lora_b']"}
    losses = [r["train/loss"] for r in result.records if "train/loss" in r]
    assert losses[-1] < losses[0]
    merged = _leaves(merge(base, result.state.params, spec))
    for k, v in _leaves(result.params).items():
        np.testing.assert_array_equal(v, merged[k])
    assert read_meta(tmp_path / "a", 4)["adapter"]["base"]["path"] == "warm"
    # Resumed from step 2 (EVA's initialisation recomputed from the same batches): bitwise equal.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "4")
    resumed = train(tmp_path / "b")
    assert resumed.resumed_from == 2
    again = _leaves(resumed.state.params)
    for k, v in _leaves(result.state.params).items():
        np.testing.assert_array_equal(v, again[k])


@pytest.mark.slow
def test_the_runner_trains_an_adapter_from_overrides(tmp_path):
    import json

    from jaxlab import cli
    from jaxlab.peft import count_trainable

    (tmp_path / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog. " * 400)
    tiny = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1",
            "model.head_dim=16", "model.mlp_dim=64", "train.batch_size=8", "train.seq_len=32",
            "train.eval_batches=1", "optim.warmup_steps=0", "sample.max_new_tokens=4", "data.chunk_bytes=512",
            f"data.path={tmp_path / 'corpus.txt'}", f"data.data_dir={tmp_path / 'tfds'}"]
    workdir = tmp_path / "run"
    assert cli.main(["run", str(REPO / "experiments" / "quickstart.py"), "--workdir", str(workdir),
                     "--no-progress", "--set", *tiny, "train.loop.steps=2", "train.peft.method=eva",
                     "train.peft.rank=2", "train.peft.targets=qv"]) == 0
    results = json.loads((workdir / "results.json").read_text())
    spec, trainable, base = load_adapter_run(workdir)
    assert spec == AdapterSpec(method="eva", targets="qv", rank=2)
    assert set(trainable["layers"]["attn"]) == {"q", "v"}
    assert results["trainable_params"] == count_trainable(trainable) < results["params"] // 10
    assert base["path"] is None and len(base["sha256"]) == 64


def test_the_step_reaches_the_adapter_merge():
    import optax

    from jaxlab.peft.runs import adapted_loss_sums
    from jaxlab.train import state as state_lib
    from jaxlab.train.step import train_step

    # SingLoRA's ramp u(t) = min(t / T, 1): the loss sees the base at t = 0 and the full adapter at T.
    spec = AdapterSpec(method="singlora", targets="qv", rank=2, ramp_steps=4)
    base = _base(CFG, 0)
    _, trainable = attach(base, spec, jax.random.key(0))
    seen = {}

    def loss(params, batch, key):
        seen["q"] = params["layers"]["attn"]["q"]["kernel"]
        return {"loss": jnp.zeros(()), "count": jnp.ones(())}

    for t, expect in ((0, base), (4, merge(base, trainable, spec)), (9, merge(base, trainable, spec))):
        adapted_loss_sums(trainable, {}, jax.random.key(0), {"base": base}, step=t, loss_sums_fn=loss, spec=spec)
        np.testing.assert_array_equal(seen["q"], expect["layers"]["attn"]["q"]["kernel"])

    # train_step(with_step=True) passes the steps taken so far: here the gradient is that step.
    def step_loss(params, batch, key, *, step):
        return {"loss": step.astype(jnp.float32) * params["w"].sum(), "count": jnp.ones(())}

    opt = optax.sgd(1.0)
    state = state_lib.create({"w": jnp.zeros(3)}, opt, 0)
    for expected in (0.0, -1.0, -3.0):  # w -= t after step t (t = 0, 1, 2)
        state, _ = train_step(state, {"x": jnp.zeros((1, 1))}, loss_sums_fn=step_loss, optimizer=opt,
                              with_step=True)
        np.testing.assert_array_equal(state.params["w"], np.full(3, expected, np.float32))


@pytest.mark.slow
def test_rl_adapter_keeps_the_base_as_kl_reference_and_resumes_bitwise(tmp_path, monkeypatch):
    from jaxlab import tasks as tasks_lib
    from jaxlab.rl import RLConfig, train_rl
    from jaxlab.rl import loop as loop_lib

    def stub_score(examples, texts, *, format_coef=0.0):  # a random model never adds up: reward even bytes
        del examples, format_coef
        correct = np.array([float(bool(t) and ord(t[0]) % 2 == 0) for t in texts], np.float32)
        return correct, correct

    monkeypatch.setattr(loop_lib, "score_responses", stub_score)
    base = _base(CFG, 0)
    examples = tasks_lib.get("arithmetic", train_difficulty=(1, 1), ops="+").splits(0, 16, 0, 0)["train"]
    rl = RLConfig(prompts_per_step=4, group_size=2, max_new_tokens=4, pass_k=2, kl_coef=0.1, peft=SPEC,
                  temperature=2.0, loop=LoopConfig(steps=4, log_every=1, eval_every=100, checkpoint_every=2))

    def run(workdir, **kw):
        return train_rl(workdir, examples, model_cfg=CFG, rl=rl, optim=OPTIM, mesh=_mesh(), init_params=base,
                        progress=False, base_path="tiny-base", **kw)

    full = run(tmp_path / "full")
    assert all(p.endswith(("['lora_a']", "['lora_b']")) for p in _leaves(full.state.params))
    rec = [r for r in full.records if "train/kl" in r]
    assert rec[0]["train/kl"] == pytest.approx(0.0, abs=1e-7)  # step 1: the policy is the base
    assert any(r["train/kl"] > 0 for r in rec[1:] if r["train/tokens"] > 0)
    merged = full.params
    assert not np.array_equal(merged["layers"]["attn"]["q"]["kernel"], base["layers"]["attn"]["q"]["kernel"])
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", cut)
    shutil.rmtree(cut / "checkpoints" / "4")
    resumed = run(cut)
    assert resumed.resumed_from == 2
    a, b = _leaves(full.state.params), _leaves(resumed.state.params)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert read_meta(cut, 4)["adapter"]["base"]["sha256"] == params_sha256(base)
    with pytest.raises(ValueError, match="KL reference is the frozen base"):
        run(tmp_path / "x", ref_params=_base(CFG, 3))
    with pytest.raises(ValueError, match="eva"):
        RLConfig(peft=AdapterSpec(method="eva"))
