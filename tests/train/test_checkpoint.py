import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.models import transformer as tf
from jaxlab.train import state as state_lib
from jaxlab.train.checkpoint import CheckpointError, Checkpointer, verify_manifest
from jaxlab.train.optim import OptimConfig, make_optimizer

CFG = tf.Config(vocab_size=40, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8, mlp_dim=32)


def _state(seed):
    optimizer = make_optimizer(OptimConfig(), 10)
    state = state_lib.create(tf.init(CFG, jax.random.key(seed)), optimizer, seed)
    # Make the optimizer state non-trivial so the round trip is meaningful.
    grads = jax.tree.map(jnp.ones_like, state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return state.replace(step=jnp.int32(seed), opt_state=opt_state)


def _abstract(state):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def test_round_trip_is_bitwise_and_keeps_data_state(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=2)
    state = _state(3)
    ckpt.save(3, state, {"next_index": 17, "nested": {"a": [1, 2]}})
    step, restored, data_state = ckpt.restore_latest(_abstract(state))
    assert step == 3 and data_state == {"next_index": 17, "nested": {"a": [1, 2]}}
    chex.assert_trees_all_equal(restored, state)
    chex.assert_trees_all_equal_shapes_and_dtypes(restored, state)


def test_keeps_only_the_newest_checkpoints(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=2)
    for step in (1, 2, 3):
        ckpt.save(step, _state(step), {})
    assert ckpt.steps() == [2, 3]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, damage):
    ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=3)
    ckpt.save(1, _state(1), {"at": 1})
    ckpt.save(2, _state(2), {"at": 2})
    files = sorted(p for p in (tmp_path / "ckpt" / "2" / "state").rglob("*") if p.is_file()
                   and p.stat().st_size > 64)
    victim = max(files, key=lambda p: p.stat().st_size)
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        victim.write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))
    else:
        victim.unlink()
    assert verify_manifest(tmp_path / "ckpt" / "2") is not None
    with pytest.raises(CheckpointError, match="checkpoint 2 is damaged"):
        ckpt.restore(2, _abstract(_state(2)))
    step, restored, data_state = ckpt.restore_latest(_abstract(_state(1)))
    assert step == 1 and data_state == {"at": 1}
    chex.assert_trees_all_equal(restored, _state(1))
    # The damaged step is moved aside, so training can save step 2 again.
    assert ckpt.steps() == [1]
    assert (tmp_path / "checkpoints_corrupt" / "2").is_dir()
    ckpt.save(2, _state(2), {"at": 2})
    assert ckpt.steps() == [1, 2]


def test_unfinished_save_without_manifest_is_skipped(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(1, _state(1), {})
    ckpt.save(2, _state(2), {})
    (tmp_path / "ckpt" / "2" / "jaxlab_manifest.json").unlink()
    step, _, _ = ckpt.restore_latest(_abstract(_state(1)))
    assert step == 1


def test_empty_directory_restores_nothing(tmp_path):
    assert Checkpointer(tmp_path / "none").restore_latest(_abstract(_state(0))) is None


def test_manifest_lists_every_file_with_its_digest(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(5, _state(5), {})
    manifest = json.loads((tmp_path / "ckpt" / "5" / "jaxlab_manifest.json").read_text())
    on_disk = {str(p.relative_to(tmp_path / "ckpt" / "5")) for p in (tmp_path / "ckpt" / "5").rglob("*")
               if p.is_file() and p.name != "jaxlab_manifest.json"}
    assert set(manifest) == on_disk
    assert all(len(digest) == 64 for _, digest in manifest.values())
    np.testing.assert_equal(verify_manifest(tmp_path / "ckpt" / "5"), None)


def test_load_params_reads_only_the_params(tmp_path):
    """load_params returns the saved params (values, shapes, dtypes) of the newest or a given
    step without an optimizer, and names missing steps and folders."""
    import optax

    from jaxlab.train import state as state_lib
    from jaxlab.train.checkpoint import CheckpointError, Checkpointer, load_params

    params = {"a": jnp.arange(12.0).reshape(3, 4), "b": {"c": jnp.arange(5, dtype=jnp.int32)}}
    ckpt = Checkpointer(tmp_path / "checkpoints")
    for step in (1, 2):
        moved = jax.tree.map(lambda x: x + step, params)
        ckpt.save(step, state_lib.create(moved, optax.adam(1e-3), 0), {"cursor": step})
    ckpt.close()
    step, got = load_params(tmp_path)
    assert step == 2 and jax.tree.structure(got) == jax.tree.structure(params)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(params)):
        assert isinstance(x, np.ndarray) and x.dtype == y.dtype
        np.testing.assert_array_equal(x, np.asarray(y) + 2)
    assert load_params(tmp_path / "checkpoints", step=1)[0] == 1
    with pytest.raises(CheckpointError, match="no checkpoint of step 5"):
        load_params(tmp_path, step=5)
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_params(tmp_path / "empty")


def test_same_shapes_compares_structure_and_leaf_shapes():
    from jaxlab.train.checkpoint import same_shapes

    want = {"a": jax.ShapeDtypeStruct((2, 3), np.float32), "b": [jax.ShapeDtypeStruct((4,), np.int32)]}
    assert same_shapes(want, {"a": np.zeros((2, 3)), "b": [np.zeros(4)]})  # dtypes are not compared
    assert not same_shapes(want, {"a": np.zeros((3, 2)), "b": [np.zeros(4)]})
    assert not same_shapes(want, {"a": np.zeros((2, 3)), "c": [np.zeros(4)]})
    assert not same_shapes(want, {"a": np.zeros((2, 3)), "b": [np.zeros(4), np.zeros(4)]})
