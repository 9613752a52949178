"""The PyTorch twin used by ``scripts/bench_train.py`` computes what jaxlab computes: logits,
loss, every gradient and one full optimizer step (clipping, AdamW, weight-decay mask) agree in
float32. This is what makes the benchmark's ratios compare the same work."""

import dataclasses
import functools
import importlib.util
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: the PyTorch twin "
                            "(scripts/_torch_twin.py) is only checked where torch is present "
                            "(pip install -e '.[torch]')")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxlab.models import transformer  # noqa: E402
from jaxlab.train import state as state_lib  # noqa: E402
from jaxlab.train.optim import OptimConfig, make_optimizer  # noqa: E402
from jaxlab.train.lm import lm_loss_sums  # noqa: E402
from jaxlab.train.step import train_step  # noqa: E402

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "_torch_twin.py"


def _load_twin():
    spec = importlib.util.spec_from_file_location("_torch_twin", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_torch_twin", module)
    spec.loader.exec_module(module)
    return module


twin = _load_twin()
TOL = 1e-4

BASE = transformer.Config(vocab_size=64, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                          head_dim=16, mlp_dim=128)
CASES = {
    "gqa_packed": (BASE, True),
    "partial_rope_qk_norm": (dataclasses.replace(BASE, rope_fraction=0.5, qk_norm=True, rope_base=500.0),
                             False),
    "untied_layernorm_bias_geglu_window": (
        dataclasses.replace(BASE, n_kv_heads=1, tie_embeddings=False, norm_type="layer",
                            attention_bias=True, mlp_bias=True, mlp_type="geglu", window=5), True),
}


def _batch(cfg, packed: bool, B: int = 3, T: int = 12, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, cfg.vocab_size, size=(B, T + 1))
    if packed:  # row 0: one segment; row 1: two segments; row 2: a segment then padding
        seg = np.ones((B, T), np.int32)
        seg[1, 5:] = 2
        seg[2, 9:] = 0
        pos = np.zeros((B, T), np.int32)
        for b in range(B):
            for t in range(1, T):
                pos[b, t] = pos[b, t - 1] + 1 if seg[b, t] == seg[b, t - 1] else 0
        pos = np.where(seg > 0, pos, 0)
    else:
        seg = np.ones((B, T), np.int32)
        pos = np.broadcast_to(np.arange(T, dtype=np.int32), (B, T)).copy()
    return {"inputs": tokens[:, :-1].astype(np.int32), "targets": tokens[:, 1:].astype(np.int32),
            "positions": pos, "segment_ids": seg, "mask": (seg > 0).astype(np.float32)}


def _random_params(cfg, seed: int = 1) -> dict:
    """Params of ``cfg``'s shapes (from ``jax.eval_shape``, no compile) with random values:
    kernels ~ N(0, 1/D), norm scales ~ 1 + 0.1 N(0, 1), biases ~ 0.1 N(0, 1); the non-trivial
    scales and biases keep a layout mistake there from hiding."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(functools.partial(transformer.init, cfg), jax.random.key(0))

    def fill(path, s):
        leaf = str(getattr(path[-1], "key", path[-1]))
        x = rng.standard_normal(s.shape).astype(np.float32)
        if leaf == "scale":
            x = 1.0 + 0.1 * x
        elif leaf == "bias":
            x = 0.1 * x
        else:
            x = x / np.sqrt(cfg.d_model)
        return jnp.asarray(x)
    return jax.tree_util.tree_map_with_path(fill, shapes)


def _setup(name):
    cfg, packed = CASES[name]
    params = _random_params(cfg)
    model = twin.TorchTransformer(cfg)
    twin.load_jaxlab_params(model, jax.tree.map(np.asarray, params))
    batch = _batch(cfg, packed)
    return cfg, params, model, batch, twin.to_torch_batch(batch, use_segments=packed)


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.mark.parametrize("name", list(CASES))
def test_logits_loss_and_grads_match(name):
    cfg, params, model, batch, tbatch = _setup(name)
    jbatch = jax.tree.map(jnp.asarray, batch)

    def mean_loss(p):
        logits = transformer.apply(p, jbatch["inputs"], cfg, positions_BT=jbatch["positions"],
                                   segment_ids_BT=jbatch["segment_ids"])
        sums = lm_loss_sums(p, jbatch, jax.random.key(0), model_cfg=cfg)
        return sums["loss"] / sums["count"], logits

    (loss_j, logits_j), grads_j = jax.jit(jax.value_and_grad(mean_loss, has_aux=True))(params)
    with torch.no_grad():
        logits_t = model(tbatch["inputs"], tbatch["positions"], tbatch.get("segment_ids"))
    assert logits_t.dtype == torch.float32
    assert _max_diff(logits_j, logits_t.numpy()) <= TOL

    model.zero_grad(set_to_none=True)
    loss_t = twin.loss_fn(model, tbatch)
    loss_t.backward()
    assert abs(float(loss_j) - float(loss_t.detach())) <= TOL
    grads_t = twin.to_jaxlab_layout(model, grads=True)
    flat_j = {jax.tree_util.keystr(p): g for p, g in jax.tree_util.tree_flatten_with_path(grads_j)[0]}
    flat_t = {jax.tree_util.keystr(p): g for p, g in jax.tree_util.tree_flatten_with_path(grads_t)[0]}
    assert flat_j.keys() == flat_t.keys()
    assert np.max(np.abs(np.asarray(grads_j["layers"]["attn"]["q"]["kernel"]))) > 1e-3  # not vacuous
    for path in flat_j:
        assert flat_t[path].shape == flat_j[path].shape, path
        assert _max_diff(flat_j[path], flat_t[path]) <= TOL, path


def test_one_optimizer_step_matches():
    """jaxlab's train_step (clip by global norm, AdamW, decay mask) vs the twin's, one step."""
    cfg, params, model, batch, tbatch = _setup("gqa_packed")
    ocfg = OptimConfig(lr=1e-3, schedule="constant", warmup_steps=0, weight_decay=0.3,
                       clip_norm=0.5)  # small clip norm: clipping is active
    optimizer = make_optimizer(ocfg, total_steps=10)
    loss_sums_fn = functools.partial(lm_loss_sums, model_cfg=cfg)

    @jax.jit
    def first_step(params, batch):  # one compile for the state's creation and the step
        state = state_lib.create(params, optimizer, seed=0)
        return train_step(state, batch, loss_sums_fn=loss_sums_fn, optimizer=optimizer)
    new_state, metrics = first_step(params, jax.tree.map(jnp.asarray, batch))
    assert float(metrics["grad_norm"]) > ocfg.clip_norm

    topt = twin.TwinOptim.from_any(ocfg)
    for impl in ("loop", "auto"):
        model_i = twin.TorchTransformer(cfg)
        twin.load_jaxlab_params(model_i, jax.tree.map(np.asarray, params))
        loss = twin.train_step(model_i, twin.make_optimizer(model_i, topt, impl=impl), tbatch,
                               topt.clip_norm)
        assert abs(float(loss) - float(metrics["loss"])) <= TOL
        after = twin.to_jaxlab_layout(model_i)
        for (path, pj), (_, pt) in zip(jax.tree_util.tree_flatten_with_path(new_state.params)[0],
                                        jax.tree_util.tree_flatten_with_path(after)[0]):
            assert _max_diff(pj, pt) <= TOL, (impl, jax.tree_util.keystr(path))
        # The step moved every param by about lr, so a missing update would fail above.
        assert _max_diff(params["layers"]["mlp"]["up"]["kernel"],
                         after["layers"]["mlp"]["up"]["kernel"]) > 0.5 * ocfg.lr


def test_weight_decay_groups():
    cfg, _, model, _, _ = _setup("partial_rope_qk_norm")
    decay, no_decay = twin.param_groups(model, twin.TwinOptim())
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} == {
        n for n in names.values() if "norm" in n}
    assert "embedding" in {names[id(p)] for p in decay["params"]}
