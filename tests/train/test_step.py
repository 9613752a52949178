import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.models import transformer as tf
from jaxlab.train import sharding as shd
from jaxlab.train import state as state_lib
from jaxlab.train.optim import OptimConfig, make_optimizer, make_schedule, weight_decay_mask
from jaxlab.train.lm import lm_loss_sums
from jaxlab.train.step import jit_train_step, state_shardings, train_step

CFG = tf.Config(vocab_size=40, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=64)
OPT = OptimConfig(lr=1e-2, warmup_steps=0, weight_decay=0.1)


def _batch(B=8, T=16, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, CFG.vocab_size, (B, T + 1)).astype(np.int32)
    mask = (rng.random((B, T)) > 0.2).astype(np.float32)
    seg = np.ones((B, T), np.int32)
    seg[:, T // 2:] = 2  # two packed documents per row
    pos = np.concatenate([np.arange(T // 2), np.arange(T - T // 2)])[None].repeat(B, 0).astype(np.int32)
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "mask": mask,
            "segment_ids": seg, "positions": pos}


def _state(optimizer, seed=0):
    return state_lib.create(tf.init(CFG, jax.random.key(seed)), optimizer, seed)


LOSS = functools.partial(lm_loss_sums, model_cfg=CFG, z_loss=1e-4)

# Equivalence tests compare params after SGD steps: an Adam step moves each weight by about
# lr * g / |g|, which turns float rounding in a near-zero gradient into a large relative change
# of that weight, so Adam params would compare rounding noise rather than the step's math.
SGD = optax.sgd(0.5)


@pytest.mark.parametrize("accum", [2, 4])
def test_gradient_accumulation_equals_the_large_batch(accum):
    step = jax.jit(functools.partial(train_step, loss_sums_fn=LOSS, optimizer=SGD),
                   static_argnames="grad_accum")
    batch = _batch()
    big, m_big = step(_state(SGD), batch, grad_accum=1)
    acc, m_acc = step(_state(SGD), batch, grad_accum=accum)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), big.params, _state(SGD).params)
    assert max(jax.tree.leaves(moved)) > 1e-3  # the step did change the params
    chex.assert_trees_all_close(acc.params, big.params, rtol=1e-5, atol=1e-6)
    for k in ("loss", "nll", "count", "grad_norm"):
        np.testing.assert_allclose(m_acc[k], m_big[k], rtol=1e-5)


def test_one_step_reduces_the_loss_and_advances_step_and_rng():
    optimizer = make_optimizer(OPT, 10)
    state = _state(optimizer)
    step = jax.jit(functools.partial(train_step, loss_sums_fn=LOSS, optimizer=optimizer))
    batch = _batch()
    new, m0 = step(state, batch)
    _, m1 = step(new, batch)
    assert float(m1["loss"]) < float(m0["loss"])
    assert int(new.step) == 1
    assert not np.array_equal(new.rng, state.rng)


@pytest.mark.parametrize("mesh_cfg,q_spec,down_spec", [
    (shd.MeshConfig(data=2, fsdp=4), (None, "fsdp", None, None), (None, None, "fsdp")),
    # 2 x 2 x 2: heads and the MLP hidden dimension split over "tensor".
    (shd.MeshConfig(data=2, fsdp=2, tensor=2), (None, "fsdp", "tensor", None),
     (None, "tensor", "fsdp")),
])
def test_sharded_step_on_8_devices_equals_1_device(mesh_cfg, q_spec, down_spec):
    assert jax.device_count() >= 8, "conftest sets 8 fake CPU devices"
    optimizer = SGD
    results = {}
    for name, mesh_cfg, devices in [("one", shd.MeshConfig(data=1, fsdp=1), jax.devices()[:1]),
                                    ("eight", mesh_cfg, jax.devices()[:8])]:
        mesh = shd.make_mesh(mesh_cfg, devices)
        init = lambda key: _state(optimizer)
        abstract = jax.eval_shape(init, jax.random.key(0))
        sh = state_shardings(abstract, mesh, tf.param_axes)
        state = jax.jit(init, out_shardings=sh)(jax.random.key(0))
        step = jit_train_step(mesh, sh, loss_sums_fn=LOSS, optimizer=optimizer, grad_accum=2)
        metrics = []
        for i in range(3):
            state, m = step(state, shd.global_batch(_batch(seed=i), mesh))
            metrics.append(jax.device_get(m))
        results[name] = (state, metrics)
        if name == "eight":
            q_kernel = state.params["layers"]["attn"]["q"]["kernel"]
            assert q_kernel.sharding.spec == jax.sharding.PartitionSpec(*q_spec)
            down = state.params["layers"]["mlp"]["down"]["kernel"]
            assert down.sharding.spec == jax.sharding.PartitionSpec(*down_spec)
            assert len(q_kernel.addressable_shards) == 8
    one, eight = results["one"], results["eight"]
    chex.assert_trees_all_close(jax.device_get(eight[0].params), jax.device_get(one[0].params),
                                rtol=1e-5, atol=1e-6)
    for a, b in zip(one[1], eight[1]):
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-6)


def test_adam_state_is_sharded_like_the_params():
    mesh = shd.make_mesh(shd.MeshConfig(data=2, fsdp=4))
    optimizer = make_optimizer(OPT, 10)  # tensor=1: heads and mlp are not split
    abstract = jax.eval_shape(lambda k: _state(optimizer), jax.random.key(0))
    sh = state_shardings(abstract, mesh, tf.param_axes)
    q_spec = sh.params["layers"]["attn"]["q"]["kernel"].spec
    assert q_spec == jax.sharding.PartitionSpec(None, "fsdp", None, None)
    adam = sh.opt_state[1][0]
    assert adam.mu["layers"]["attn"]["q"]["kernel"].spec == q_spec
    assert adam.nu["layers"]["mlp"]["down"]["kernel"].spec == \
        jax.sharding.PartitionSpec(None, None, "fsdp")
    assert adam.count.spec == jax.sharding.PartitionSpec()


def test_packing_and_padding_do_not_change_a_sequences_loss():
    params = tf.init(CFG, jax.random.key(1))
    rng = np.random.default_rng(3)
    a = rng.integers(0, CFG.vocab_size, 9).astype(np.int32)
    b = rng.integers(0, CFG.vocab_size, 6).astype(np.int32)

    def alone(seq, T):
        n = len(seq) - 1
        batch = {"inputs": np.zeros((1, T), np.int32), "targets": np.zeros((1, T), np.int32),
                 "mask": np.zeros((1, T), np.float32), "segment_ids": np.zeros((1, T), np.int32),
                 "positions": np.zeros((1, T), np.int32)}
        batch["inputs"][0, :n], batch["targets"][0, :n] = seq[:-1], seq[1:]
        batch["mask"][0, :n], batch["segment_ids"][0, :n] = 1, 1
        batch["positions"][0, :n] = np.arange(n)
        return batch

    packed = alone(a, 16)
    packed["inputs"][0, 8:13], packed["targets"][0, 8:13] = b[:-1], b[1:]
    packed["mask"][0, 8:13], packed["segment_ids"][0, 8:13] = 1, 2
    packed["positions"][0, 8:13] = np.arange(5)
    key = jax.random.key(0)
    sums_a = LOSS(params, alone(a, 8), key)            # no padding
    sums_a_pad = LOSS(params, alone(a, 16), key)       # padded to 16
    sums_b = LOSS(params, alone(b, 5), key)
    sums_packed = LOSS(params, packed, key)
    np.testing.assert_allclose(sums_a_pad["nll"], sums_a["nll"], rtol=1e-5)
    np.testing.assert_allclose(sums_packed["nll"], sums_a["nll"] + sums_b["nll"], rtol=1e-5)
    assert float(sums_packed["count"]) == 8 + 5


def test_schedule_and_weight_decay_mask():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, schedule="cosine", final_lr_fraction=0.1)
    sched = make_schedule(cfg, 110)
    np.testing.assert_allclose([sched(0), sched(5), sched(10), sched(60), sched(110)],
                               [0.0, 0.5, 1.0, 0.55, 0.1], rtol=1e-5, atol=1e-6)
    lin = make_schedule(OptimConfig(lr=2.0, warmup_steps=0, schedule="linear", final_lr_fraction=0.0), 10)
    np.testing.assert_allclose([lin(0), lin(5), lin(10)], [2.0, 1.0, 0.0], atol=1e-6)
    const = make_schedule(OptimConfig(lr=0.3, warmup_steps=2, schedule="constant"), 10)
    np.testing.assert_allclose([const(1), const(9)], [0.15, 0.3], rtol=1e-6)
    mask = weight_decay_mask(tf.init(CFG, jax.random.key(0)), decay_embeddings=False)
    assert mask["layers"]["attn"]["q"]["kernel"] and mask["layers"]["mlp"]["down"]["kernel"]
    assert not mask["layers"]["attn_norm"]["scale"] and not mask["final_norm"]["scale"]
    assert not mask["embed"]["embedding"]
    # a frozen subtree (a BLT's entropy model) gets no decay, whatever its leaves are called
    nested = weight_decay_mask({"entropy": tf.init(CFG, jax.random.key(0)), "head": {"kernel": np.zeros(2)}})
    assert nested["head"]["kernel"] and not any(jax.tree.leaves(nested["entropy"]))


def test_mesh_config_errors():
    with pytest.raises(ValueError, match="does not fit"):
        shd.MeshConfig(data=3, fsdp=-1).shape(8)
    with pytest.raises(ValueError, match="uses 4 devices"):
        shd.MeshConfig(data=2, fsdp=2).shape(8)
    assert shd.MeshConfig(data=-1, fsdp=4).shape(8) == (2, 4, 1)
    assert shd.MeshConfig(data=-1, fsdp=2, tensor=2).shape(8) == (2, 2, 2)
    with pytest.raises(ValueError, match="at most one"):
        shd.MeshConfig(data=-1, tensor=-1).shape(8)
    mesh = shd.make_mesh(shd.MeshConfig(data=2, fsdp=4))
    # A dimension that fsdp does not divide is replicated instead of failing.
    assert shd.logical_spec(("vocab", "embed"), (40, 30), mesh) == jax.sharding.PartitionSpec(None, None)
    assert shd.logical_spec(("vocab", "embed"), (40, 32), mesh) == jax.sharding.PartitionSpec(None, "fsdp")
