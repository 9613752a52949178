"""MLM pre-training of the encoder: masking statistics, the loss on selected tokens only, learning,
bitwise resume after an interruption (extended to more steps), and the clear errors."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.data import BYTES, DataError
from jaxlab.models import encoder
from jaxlab.models.encoder import EncoderConfig
from jaxlab.train import sharding as shd
from jaxlab.train.fit import LoopConfig
from jaxlab.train.mlm import (MLMConfig, mask_batch, mask_spec, mask_tokens, maskable, mlm_loss_sums,
                              train_mlm)
from jaxlab.train.optim import OptimConfig

CFG = EncoderConfig(vocab_size=264, d_model=32, n_layers=2, n_heads=2, head_dim=16, mlp_dim=64, local_window=8,
                    layer_types=("global", "local"))
TEXTS = [f"{a} plus {b} is {a + b}. The cat sat on the mat." for a in range(6) for b in range(6)]


def test_masking_selects_mask_prob_of_real_tokens_split_80_10_10_and_never_padding():
    B, T = 64, 256
    rng = np.random.default_rng(0)
    tokens_BT = rng.integers(0, 256, (B, T)).astype(np.int32)
    lengths_B = rng.integers(T // 4, T, B)
    segment_ids_BT = (np.arange(T)[None] < lengths_B[:, None]).astype(np.int32)
    tokens_BT = np.where(segment_ids_BT > 0, tokens_BT, BYTES.pad_id)
    tokens_BT[:, 0] = BYTES.bos_id
    spec = mask_spec(MLMConfig(), BYTES, CFG)
    assert spec.mask_id == 259 and set(spec.random_ids) == set(range(256))
    ok_BT = np.asarray(maskable(jnp.asarray(tokens_BT), jnp.asarray(segment_ids_BT), spec.special))
    np.testing.assert_array_equal(ok_BT, (segment_ids_BT > 0) & (tokens_BT < 256))
    masker = jax.jit(functools.partial(mask_tokens, mask_prob=0.3, mask_id=spec.mask_id,
                                       random_ids=spec.random_ids))
    inputs_BT, selected_BT = masker(jax.random.key(1), tokens_BT, ok_BT)
    inputs_BT, selected_BT = np.asarray(inputs_BT), np.asarray(selected_BT)
    assert not selected_BT[~ok_BT].any()  # padding and BOS are never selected
    np.testing.assert_array_equal(inputs_BT[~selected_BT], tokens_BT[~selected_BT])
    n, n_sel = ok_BT.sum(), selected_BT.sum()
    assert abs(n_sel / n - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)
    as_mask = (inputs_BT == spec.mask_id)[selected_BT].mean()
    changed = ((inputs_BT != spec.mask_id) & (inputs_BT != tokens_BT))[selected_BT].mean()
    se = 4 * np.sqrt(0.8 * 0.2 / n_sel)
    assert abs(as_mask - 0.8) < se
    # random replacements: 10%, less the 1/256 that draw the token itself
    assert abs(changed - 0.1 * 255 / 256) < 4 * np.sqrt(0.1 * 0.9 / n_sel)
    assert inputs_BT[selected_BT].max() <= spec.mask_id and (inputs_BT[selected_BT] != BYTES.pad_id).all()
    # deterministic given the key, different for another key
    again, _ = masker(jax.random.key(1), tokens_BT, ok_BT)
    other, _ = masker(jax.random.key(2), tokens_BT, ok_BT)
    np.testing.assert_array_equal(np.asarray(again), inputs_BT)
    assert (np.asarray(other) != inputs_BT).any()


def test_loss_counts_only_the_selected_tokens():
    params = encoder.init(CFG, jax.random.key(0))
    rng = np.random.default_rng(0)
    tokens_BT = rng.integers(0, 256, (2, 16)).astype(np.int32)
    packed = {"inputs": tokens_BT, "segment_ids": np.ones_like(tokens_BT), "positions": np.tile(np.arange(16), (2, 1))}
    batch = jax.jit(functools.partial(mask_batch, mlm=MLMConfig(), spec=mask_spec(MLMConfig(), BYTES, CFG)))(
        jax.random.key(3), packed)
    selected_BT = np.asarray(batch["mask"]) > 0
    assert 0 < selected_BT.sum() < selected_BT.size
    loss_sums = jax.jit(functools.partial(mlm_loss_sums, key=jax.random.key(0), encoder_cfg=CFG))
    sums = loss_sums(params, batch)
    assert float(sums["count"]) == selected_BT.sum()
    # another target where nothing is selected: the loss and accuracy do not move
    other = dict(batch, targets=jnp.where(selected_BT, batch["targets"], (batch["targets"] + 7) % 256))
    same = loss_sums(params, other)
    assert float(same["loss"]) == float(sums["loss"]) and float(same["correct"]) == float(sums["correct"])
    # another target at a selected position does
    b, t = np.argwhere(selected_BT)[0]
    moved = dict(batch, targets=jnp.asarray(batch["targets"]).at[b, t].set((batch["targets"][b, t] + 7) % 256))
    assert float(loss_sums(params, moved)["loss"]) != float(sums["loss"])


class _InterruptAt:
    """An evaluate callback that stops the run (as Ctrl-C does) at one step."""

    def __init__(self, step):
        self.step = step

    def __call__(self, params, step):
        if step == self.step:
            raise KeyboardInterrupt
        return {}


@pytest.mark.slow
def test_mlm_learns_and_an_interrupted_then_extended_run_ends_bitwise_equal(tmp_path):
    mesh = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
    one_layer = dataclasses.replace(CFG, n_layers=1, layer_types=None)  # cheaper to compile
    mlm = MLMConfig(batch_size=4, seq_len=32, loop=LoopConfig(steps=24, log_every=4, eval_every=4,
                                                                 checkpoint_every=100))
    # constant after warmup: the learning rate of a step does not depend on the planned total
    optim = OptimConfig(lr=1e-2, warmup_steps=2, schedule="constant")
    train = dict(texts=TEXTS, encoder_cfg=one_layer, optim=optim, mesh=mesh, progress=False)
    full = train_mlm(tmp_path / "full", mlm=mlm, **train)
    losses = [r["train/loss"] for r in full.records if "train/loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0] - 1.0  # it learns the byte statistics and more

    # An 8-step run stopped (as by Ctrl-C) at step 4, then run again asking for 24 steps.
    short = dataclasses.replace(mlm, loop=dataclasses.replace(mlm.loop, steps=8))
    with pytest.raises(KeyboardInterrupt):
        train_mlm(tmp_path / "cut", mlm=short, **train, evaluate=_InterruptAt(4))
    resumed = train_mlm(tmp_path / "cut", mlm=mlm, **train)
    assert resumed.resumed_from == 4
    for a, b in zip(jax.tree.leaves(resumed.state.params), jax.tree.leaves(full.state.params), strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_clear_errors(tmp_path):
    mesh = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
    with pytest.raises(DataError, match="at least one text"):
        train_mlm(tmp_path, [], encoder_cfg=CFG, mlm=MLMConfig(), optim=OptimConfig(), mesh=mesh)
    with pytest.raises(DataError, match="non-empty"):
        train_mlm(tmp_path, ["", ""], encoder_cfg=CFG, mlm=MLMConfig(), optim=OptimConfig(), mesh=mesh)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"mask_prob must be in \(0, 1\)"):
            MLMConfig(mask_prob=bad)
    with pytest.raises(ValueError, match="seq_len must be >= 4"):
        MLMConfig(seq_len=2)
    with pytest.raises(ValueError, match="mask_frac \\+ mlm.random_frac"):
        MLMConfig(mask_frac=0.95, random_frac=0.1)
    with pytest.raises(ValueError, match="no room for the mask id 259"):
        mask_spec(MLMConfig(), BYTES, dataclasses.replace(CFG, vocab_size=259))
    with pytest.raises(ValueError, match="special id"):
        mask_spec(MLMConfig(mask_id=BYTES.pad_id), BYTES, CFG)
