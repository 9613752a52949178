"""EVA: the incremental SVD recovers a known subspace and stops once it is stable, ranks are
re-allocated within the budget towards the high-variance matrix, the kernel inputs are the
model's, and the initialised adapter leaves the model unchanged and merges like LoRA."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.models import transformer
from jaxlab.nn.mlp import mlp_hidden
from jaxlab.peft import AdapterError, AdapterSpec, attach, inline, merge
from jaxlab.peft.eva import (
    SVDState,
    allocate_ranks,
    eva_init,
    explained_variance_ratio,
    jit_layer_inputs,
    svd_update,
)

captured_mlp = jax.jit(functools.partial(transformer.apply, capture=("mlp_hidden", "mlp_out")), static_argnums=2)

CFG = transformer.Config(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                         mlp_dim=48)
apply = jax.jit(transformer.apply, static_argnums=2)


def _low_rank_batches(rng, basis_Kn, scales_K, n_batches, rows=64, noise=0.0):
    """[1, rows, n] batches x = (z * scales) @ basis + noise, z ~ N(0, 1)."""
    for _ in range(n_batches):
        z = rng.standard_normal((rows, len(scales_K))) * scales_K
        yield (z @ basis_Kn + noise * rng.standard_normal((rows, basis_Kn.shape[1])))[None]


def _basis(rng, k, n):
    return np.linalg.qr(rng.standard_normal((n, k)))[0].T  # [k, n], orthonormal rows


def test_incremental_svd_recovers_the_subspace_and_the_spectrum():
    rng = np.random.default_rng(0)
    basis = _basis(rng, 3, 20)
    batches = list(_low_rank_batches(rng, basis, np.array([5.0, 3.0, 1.0]), n_batches=6, rows=16))
    state = SVDState.empty(1, 4, 20)
    for x in batches:
        state = svd_update(state, x, k=4, threshold=1.1)  # > 1: never stops
    # Exact while the data's rank (3) is at most k (4): the full SVD of all rows.
    full_s = np.linalg.svd(np.concatenate(batches, axis=1)[0], compute_uv=False)
    np.testing.assert_allclose(state.s[0, :3], full_s[:3], rtol=1e-8)
    assert state.s[0, 3] < 1e-8
    # The top 3 right singular vectors span the planted subspace: all principal cosines 1.
    np.testing.assert_allclose(np.linalg.svd(basis @ state.v[0, :3].T, compute_uv=False), 1.0, atol=1e-8)
    np.testing.assert_allclose(explained_variance_ratio(state)[0, :3].sum(), 1.0, rtol=1e-8)
    assert state.batches[0] == 6 and not state.done[0]


def test_stopping_rule_stops_once_the_components_are_stable():
    rng = np.random.default_rng(1)
    basis = _basis(rng, 4, 16)
    batches = _low_rank_batches(rng, basis, np.array([8.0, 4.0, 2.0, 1.0]), n_batches=200, noise=0.05)
    state = SVDState.empty(1, 2, 16)
    sims = []
    for x in batches:
        before = state.v.copy()
        state = svd_update(state, x, k=2, threshold=0.99)
        if before.shape[1] == 2:
            sims.append(np.abs(np.einsum("kn,kn->k", before[0], state.v[0])).min())
        if state.done.all():
            break
    assert state.done[0] and 2 <= state.batches[0] < 200
    assert sims[-1] >= 0.99 and all(s < 0.99 for s in sims[:-1])
    # A stopped matrix is not updated again.
    frozen = svd_update(state, next(batches), k=2, threshold=0.99)
    np.testing.assert_array_equal(frozen.v, state.v)
    assert frozen.batches[0] == state.batches[0]


def test_rank_allocation_fills_the_budget_favouring_high_explained_variance():
    ratios = {"high": np.array([0.3, 0.25, 0.2, 0.15, 0.05, 0.02]),
              "low": np.array([0.1, 0.08, 0.06, 0.01, 0.0, 0.0])}
    ranks = allocate_ranks(ratios, budget=6, cap=6)
    assert sum(ranks.values()) == 6 and ranks == {"high": 4, "low": 2}
    capped = allocate_ranks(ratios, budget=6, cap=3)
    assert capped == {"high": 3, "low": 3}
    assert allocate_ranks(ratios, budget=20, cap=4) == {"high": 4, "low": 4}  # fewer candidates than budget


@pytest.fixture(scope="module")
def params():
    """Random params in the model's tree (drawn with numpy: compiling init costs seconds)."""
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(lambda key: transformer.init(CFG, key), jax.random.key(0))
    return jax.tree_util.tree_map_with_path(
        lambda p, s: jnp.asarray(1.0 + 0.1 * rng.standard_normal(s.shape) if "scale" in jax.tree_util.keystr(p)
                                 else 0.2 * rng.standard_normal(s.shape), s.dtype), shapes)


def _batch(seed, b=4, t=12):
    inputs = np.asarray(jax.random.randint(jax.random.key(seed), (b, t), 0, CFG.vocab_size))
    segment_ids = np.ones((b, t), np.int32)
    segment_ids[:, -3:] = 0  # padding rows are left out
    return {"inputs": inputs, "positions": np.broadcast_to(np.arange(t), (b, t)), "segment_ids": segment_ids}


def test_layer_inputs_are_what_the_kernels_read(params):
    batch = _batch(1)
    acts = jit_layer_inputs(params, batch, CFG)
    layers = params["layers"]
    _, seen = captured_mlp(params, batch["inputs"], CFG, positions_BT=batch["positions"],
                           segment_ids_BT=batch["segment_ids"])
    hidden = jax.jit(jax.vmap(lambda p, x: mlp_hidden(p, x, CFG.mlp_type)))(layers["mlp"], acts["mlp_in"])
    for l in range(CFG.n_layers):
        np.testing.assert_allclose(hidden[l], seen["mlp_hidden"][l], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(acts["mlp_hidden"][l] @ layers["mlp"]["down"]["kernel"][l], seen["mlp_out"][l],
                                   rtol=1e-4, atol=1e-5)
    assert acts["attn_in"].shape == (CFG.n_layers, 4, 12, CFG.d_model)


def test_eva_init_leaves_the_model_unchanged_and_merges_like_inline(params):
    spec = AdapterSpec(method="eva", targets=r"^layers/(attn/(q|v)|mlp/down)$", rank=3, alpha=6.0, rho=2.0)
    batches = (_batch(s) for s in range(100))
    trainable, ranks = eva_init(params, spec, batches, CFG, max_batches=8, progress=False)
    n_matrices = 3 * CFG.n_layers
    assert sum(sum(r) for r in ranks.values()) == spec.rank * n_matrices
    assert all(0 <= r <= 6 for rs in ranks.values() for r in rs)
    for module, per_layer in ranks.items():
        node = trainable
        for part in module.split("/"):
            node = node[part]
        a, b = np.asarray(node["lora_a"]), np.asarray(node["lora_b"])
        assert a.shape[-1] == max(per_layer) and not b.any()
        for l, r in enumerate(per_layer):
            np.testing.assert_allclose(a[l, :, :r].T @ a[l, :, :r], np.eye(r), atol=1e-5)  # orthonormal
            assert not a[l, :, r:].any()  # past this layer's rank: zero
    tokens = jax.random.randint(jax.random.key(9), (2, 10), 0, CFG.vocab_size)
    np.testing.assert_array_equal(apply(merge(params, trainable, spec), tokens, CFG), apply(params, tokens, CFG))
    # With a trained B, merge (W0 + s A B materialised) equals the inline adapter.
    trained = jax.tree.map(lambda x: x, trainable)
    trained["layers"]["attn"]["q"]["lora_b"] = jax.random.normal(
        jax.random.key(3), trained["layers"]["attn"]["q"]["lora_b"].shape) * 0.1
    merged = apply(merge(params, trained, spec), tokens, CFG)
    assert np.abs(np.asarray(merged) - np.asarray(apply(params, tokens, CFG))).max() > 1e-3
    np.testing.assert_allclose(merged, apply(inline(params, trained, spec), tokens, CFG), rtol=1e-5, atol=1e-5)


def test_eva_refuses_what_it_cannot_initialise(params):
    with pytest.raises(AdapterError, match="eva_init"):
        attach(params, AdapterSpec(method="eva"), jax.random.key(0))
    with pytest.raises(AdapterError, match="also selects"):
        eva_init(params, AdapterSpec(method="eva", targets="attn"), iter([_batch(0)]), CFG, progress=False)
    with pytest.raises(AdapterError, match="no batch"):
        eva_init(params, AdapterSpec(method="eva", targets="qv"), iter([]), CFG, progress=False)
    with pytest.raises(AdapterError, match="rho"):
        AdapterSpec(method="eva", rho=0.5)
