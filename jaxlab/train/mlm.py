"""Masked-language-model (MLM) pre-training of the encoder (:mod:`jaxlab.models.encoder`).

Rows. Texts are tokenized and packed exactly as for LM pre-training
(:func:`jaxlab.data.pipeline.packed_lm_dataset`): each text becomes ``[BOS] + ids``, the token
stream is cut into rows of ``seq_len`` and ``segment_ids`` number the pieces of a row (0 =
padding), so documents shorter than a row share it without attending to each other (the
encoder masks attention per segment and restarts positions in each). The MLM reads the
``inputs`` column of those batches as its tokens x_BT.

Masking (:func:`mask_tokens`, as BERT with ModernBERT's rate): with u, v ~ U[0, 1) and r drawn
uniformly from the tokenizer's text ids (every id but BOS, EOS and PAD), all independent per
token,

    selected_t = maskable_t and u_t < mask_prob
    input_t    = MASK      if selected_t and v_t < mask_frac                      (80%)
                 r_t       if selected_t and mask_frac <= v_t < mask_frac + random_frac   (10%)
                 x_t       otherwise                                              (10% of the
                                                                                  selected: kept)

where maskable_t = (segment_ids_t > 0) and x_t is not a special id: padding, BOS and EOS are
never selected. The loss (:func:`mlm_loss_sums`) is the cross-entropy of x_t at the selected
positions only, and the masked-token accuracy is argmax == x_t there:

    loss = sum_t selected_t * -log p(x_t | input) / sum_t selected_t

The mask is a pure function of a key: in training the key is the step's key from the train
state (``jaxlab.train.step``), so a resumed run draws the same masks and ends bitwise equal to
an uninterrupted one (on CPU). Validation masks are drawn once from a fixed key, so validation
losses of different steps compare the same masked positions.

The mask id. The byte tokenizer (ids 0..258) has no [MASK] token, so the MLM reserves one
in the encoder's vocabulary: by default the first id past the tokenizer's,
``mask_id = tokenizer.vocab_size`` (259 for bytes), so the encoder needs ``vocab_size >=
tokenizer.vocab_size + 1`` (the experiments use 264). ``MLMConfig.mask_id`` sets it explicitly
(for instance a Hugging Face tokenizer's own [MASK] id).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.data.corpus import DataError
from jaxlab.data.pipeline import packed_lm_dataset
from jaxlab.data.tokenizer import BYTES, Tokenizer, special_ids
from jaxlab.losses.lm import cross_entropy_sums
from jaxlab.models import encoder
from jaxlab.train import sharding as shd
from jaxlab.train.fit import FitResult, IteratorSource, LoopConfig, fit
from jaxlab.train.optim import OptimConfig
from jaxlab.train.step import jit_eval_sums

MIN_SEQ_LEN = 4


@dataclasses.dataclass(frozen=True)
class MLMConfig:
    """mask_prob: the share of maskable tokens selected (ModernBERT: 0.3). mask_frac /
    random_frac: of the selected, the share replaced by the mask id / by a random text id (the
    rest is kept). mask_id: None = ``tokenizer.vocab_size`` (module docstring). batch_size:
    packed rows per optimizer step; seq_len: tokens per row. val_batches: validation batches
    (at most) per evaluation. loop: steps, seed, grad_accum and intervals (:class:`LoopConfig`)."""
    mask_prob: float = 0.3
    mask_frac: float = 0.8
    random_frac: float = 0.1
    mask_id: int | None = None
    batch_size: int = 16
    seq_len: int = 128
    val_batches: int = 8
    loop: LoopConfig = LoopConfig(steps=200, log_every=10, eval_every=50, checkpoint_every=100)

    def __post_init__(self):
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mlm.mask_prob must be in (0, 1), got {self.mask_prob!r}")
        for name in ("mask_frac", "random_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"mlm.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.mask_frac + self.random_frac > 1.0:
            raise ValueError(f"mlm.mask_frac + mlm.random_frac must be <= 1, got "
                             f"{self.mask_frac} + {self.random_frac}")
        if self.seq_len < MIN_SEQ_LEN:
            raise ValueError(f"mlm.seq_len must be >= {MIN_SEQ_LEN} (a row holds BOS and the text "
                             f"around a masked token), got {self.seq_len}")
        for name in ("batch_size", "val_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"mlm.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.loop.grad_accum:
            raise ValueError(f"mlm.batch_size={self.batch_size} is not a multiple of "
                             f"mlm.loop.grad_accum={self.loop.grad_accum}")
        if self.mask_id is not None and self.mask_id < 0:
            raise ValueError(f"mlm.mask_id must be >= 0 or None, got {self.mask_id}")


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """What masking needs of the tokenizer and the encoder: the mask id, the ids a random
    replacement is drawn from, and the special ids that are never masked."""
    mask_id: int
    random_ids: tuple[int, ...]
    special: tuple[int, ...]


def mask_spec(mlm: MLMConfig, tokenizer: Tokenizer, encoder_cfg: encoder.EncoderConfig) -> MaskSpec:
    """The :class:`MaskSpec` of a tokenizer and an encoder (module docstring: the mask id);
    an error when the encoder's vocabulary has no room for the mask id."""
    mask_id = tokenizer.vocab_size if mlm.mask_id is None else mlm.mask_id
    if mask_id >= encoder_cfg.vocab_size:
        hint = (f" (the first id past the tokenizer's {tokenizer.vocab_size} ids, reserved for "
                f"[MASK])" if mlm.mask_id is None else "")
        raise ValueError(f"encoder.vocab_size={encoder_cfg.vocab_size} has no room for the mask id "
                         f"{mask_id}{hint}; use encoder.vocab_size >= {mask_id + 1}")
    special = special_ids(tokenizer)
    if mask_id in special:
        raise ValueError(f"mlm.mask_id={mask_id} is a special id of the tokenizer {special}")
    random_ids = tuple(i for i in range(tokenizer.vocab_size) if i not in special and i != mask_id)
    return MaskSpec(mask_id=int(mask_id), random_ids=random_ids, special=special)


def maskable(tokens_BT: jax.Array, segment_ids_BT: jax.Array, special: Sequence[int]) -> jax.Array:
    """maskable_BT = (segment_ids > 0) and the token is not a special id (bool)."""
    special_BT = jnp.isin(tokens_BT, jnp.asarray(special, tokens_BT.dtype))
    return (segment_ids_BT > 0) & ~special_BT


def mask_tokens(key: jax.Array, tokens_BT: jax.Array, maskable_BT: jax.Array, *, mask_prob: float,
                mask_id: int, random_ids: Sequence[int], mask_frac: float = 0.8,
                random_frac: float = 0.1) -> tuple[jax.Array, jax.Array]:
    """(inputs_BT, selected_BT): BERT masking of ``tokens_BT`` (module docstring)

        selected = maskable and u < mask_prob
        input    = mask_id if selected and v < mask_frac,
                   r       if selected and mask_frac <= v < mask_frac + random_frac,
                   token   otherwise;   u, v ~ U[0, 1), r ~ U(random_ids), iid per token.

    Deterministic given ``key``."""
    k_select, k_kind, k_random = jax.random.split(key, 3)
    u_BT = jax.random.uniform(k_select, tokens_BT.shape)
    v_BT = jax.random.uniform(k_kind, tokens_BT.shape)
    pool_R = jnp.asarray(random_ids, tokens_BT.dtype)
    r_BT = pool_R[jax.random.randint(k_random, tokens_BT.shape, 0, pool_R.shape[0])]
    selected_BT = maskable_BT & (u_BT < mask_prob)
    inputs_BT = jnp.where(selected_BT & (v_BT < mask_frac), jnp.asarray(mask_id, tokens_BT.dtype),
                          jnp.where(selected_BT & (v_BT >= mask_frac) & (v_BT < mask_frac + random_frac),
                                    r_BT, tokens_BT))
    return inputs_BT, selected_BT


def mask_batch(key: jax.Array, batch: dict, *, mlm: MLMConfig, spec: MaskSpec) -> dict:
    """A packed batch (``inputs``, ``segment_ids``, ``positions``; :mod:`jaxlab.data.pipeline`)
    -> the MLM batch: ``inputs`` masked, ``targets`` the original tokens, ``mask`` 1.0 on the
    selected positions (the loss mask), segment ids and positions unchanged."""
    tokens_BT = batch["inputs"]
    inputs_BT, selected_BT = mask_tokens(
        key, tokens_BT, maskable(tokens_BT, batch["segment_ids"], spec.special), mask_prob=mlm.mask_prob,
        mask_id=spec.mask_id, random_ids=spec.random_ids, mask_frac=mlm.mask_frac,
        random_frac=mlm.random_frac)
    return {"inputs": inputs_BT, "targets": tokens_BT, "segment_ids": batch["segment_ids"],
            "positions": batch["positions"], "mask": selected_BT.astype(jnp.float32)}


def mlm_loss_sums(params: dict, batch: dict, key: jax.Array, *, encoder_cfg: encoder.EncoderConfig) -> dict:
    """Sums of an already masked MLM batch (:func:`mask_batch`): ``loss`` = sum over positions
    with mask 1 of -log p(targets_t | inputs), ``correct`` = how many of them the argmax
    predicts, ``count`` = how many there are (unselected positions add nothing)."""
    del key
    logits_BTV = encoder.apply(params, batch["inputs"], encoder_cfg, segment_ids_BT=batch["segment_ids"],
                               positions_BT=batch["positions"])
    return cross_entropy_sums(logits_BTV, batch["targets"], batch["mask"])


def mlm_train_sums(params: dict, batch: dict, key: jax.Array, *, encoder_cfg: encoder.EncoderConfig,
                   mlm: MLMConfig, spec: MaskSpec) -> dict:
    """The training loss: masks the packed batch with the step's ``key``, then
    :func:`mlm_loss_sums`."""
    return mlm_loss_sums(params, mask_batch(key, batch, mlm=mlm, spec=spec), key, encoder_cfg=encoder_cfg)


def _check_texts(texts: Sequence[str], what: str) -> list[dict]:
    records = [{"text": t} for t in texts if t]
    if not records:
        raise DataError(f"MLM needs at least one non-empty {what} text, got {len(texts)} texts")
    return records


def mlm_dataset(texts: Sequence[str], *, mlm: MLMConfig, tokenizer: Tokenizer = BYTES, repeat: bool = True,
                shuffle: bool = True, batch_size: int | None = None, what: str = "training"):
    """Packed batches of ``texts`` for this process (``packed_lm_dataset``; module docstring)."""
    per_process = (batch_size or mlm.batch_size) // jax.process_count()
    return packed_lm_dataset(_check_texts(texts, what), seq_len=mlm.seq_len, batch_size=per_process,
                             shuffle=shuffle, seed=mlm.loop.seed, shard_index=jax.process_index(),
                             shard_count=jax.process_count(), repeat=repeat, name=f"the MLM {what} texts",
                             tokenizer=tokenizer)


def validation_batches(texts: Sequence[str], *, mlm: MLMConfig, spec: MaskSpec,
                       tokenizer: Tokenizer = BYTES) -> list[dict]:
    """Up to ``mlm.val_batches`` masked batches of one pass over ``texts`` (in order), masked
    once with keys fixed by ``mlm.loop.seed`` (numpy arrays)."""
    batches = []
    base = jax.random.fold_in(jax.random.key(mlm.loop.seed), 0x7A1)
    masker = jax.jit(functools.partial(mask_batch, mlm=mlm, spec=spec))
    for i, batch in enumerate(mlm_dataset(texts, mlm=mlm, tokenizer=tokenizer, repeat=False, shuffle=False,
                                          what="validation")):
        if i == mlm.val_batches:
            break
        batches.append(jax.tree.map(np.asarray, masker(jax.random.fold_in(base, i), batch)))
    return batches


def mlm_evaluator(texts: Sequence[str], *, encoder_cfg: encoder.EncoderConfig, mlm: MLMConfig, mesh,
                  tokenizer: Tokenizer = BYTES) -> Callable[[dict, int], dict]:
    """``evaluate(params, step) -> {"loss", "accuracy", "tokens"}``: the MLM loss (nats per
    masked token) and masked-token accuracy on the fixed validation batches of ``texts``."""
    spec = mask_spec(mlm, tokenizer, encoder_cfg)
    batches = validation_batches(texts, mlm=mlm, spec=spec, tokenizer=tokenizer)
    param_sh = shd.tree_shardings(jax.eval_shape(encoder.init, encoder_cfg, jax.random.key(0)), mesh,
                                  encoder.param_axes)
    eval_fn = jit_eval_sums(mesh, param_sh,
                            loss_sums_fn=functools.partial(mlm_loss_sums, encoder_cfg=encoder_cfg))

    def evaluate(params: dict, step: int) -> dict:
        del step
        total = None
        for batch in batches:
            sums = eval_fn(params, shd.global_batch(batch, mesh))
            total = sums if total is None else jax.tree.map(jnp.add, total, sums)
        total = jax.device_get(total)
        count = max(float(total["count"]), 1.0)
        return {"loss": float(total["loss"]) / count, "accuracy": float(total["correct"]) / count,
                "tokens": float(total["count"])}

    return evaluate


def train_mlm(workdir: str | Path, texts: Sequence[str], *, encoder_cfg: encoder.EncoderConfig, mlm: MLMConfig,
              optim: OptimConfig, mesh, tokenizer: Tokenizer = BYTES, init_params: Callable | dict | None = None,
              evaluate: Callable[[dict, int], dict] | None = None, progress: bool = True) -> FitResult:
    """Pre-trains (or resumes) the encoder with the MLM loss on packed rows of ``texts`` in
    ``workdir`` (``jaxlab.train.fit``: checkpoints, metrics.jsonl, TensorBoard). ``init_params``:
    a params pytree (warm start), a function of a key, or None for a fresh encoder;
    ``evaluate``: e.g. :func:`mlm_evaluator` of validation texts."""
    if len(texts) == 0:
        raise DataError("MLM needs at least one text, got an empty list")
    spec = mask_spec(mlm, tokenizer, encoder_cfg)
    ds = mlm_dataset(texts, mlm=mlm, tokenizer=tokenizer)
    if init_params is None:
        init_params = functools.partial(encoder.init, encoder_cfg)
    return fit(workdir, name="mlm", loop=mlm.loop, optim=optim, mesh=mesh, init_params=init_params,
               param_axes=encoder.param_axes,
               loss_sums_fn=functools.partial(mlm_train_sums, encoder_cfg=encoder_cfg, mlm=mlm, spec=spec),
               source=IteratorSource(iter(ds)), evaluate=evaluate,
               tokens_per_step=mlm.batch_size * mlm.seq_len, progress=progress)
