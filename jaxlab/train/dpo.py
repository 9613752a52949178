"""Preference optimisation on ``{"prompt", "chosen", "rejected"}`` pairs: DPO, IPO, SimPO,
APO-zero and APO-down (the losses of :mod:`jaxlab.losses.preference`).

A step reads ``batch_size`` pairs in the stacked layout, flattened to one level so that the
step machinery shards and splits it like any batch (row p of every key is pair p):

    chosen_inputs, chosen_targets, chosen_positions, chosen_segment_ids, chosen_mask   [P, T]
    rejected_...                                                                      [P, T]
    ref_chosen, ref_rejected        log pi_ref(y+ | x), log pi_ref(y- | x)            [P]
                                    (only with reference="precomputed")

and runs one forward pass of the policy over the 2P stacked rows. The reference log-probs
come from one of two places (``DPOConfig.reference``):

    "precomputed"  computed once before training with the reference params, for every pair,
                   and stored with the pair records (``ref_chosen`` / ``ref_rejected``): no
                   reference forward pass during training
    "online"       the reference params ride along as the loop's ``frozen`` pytree and every
                   step runs their forward pass on the batch (no precompute; costs a forward)

Both give the same numbers; SimPO reads no reference and ignores the setting. The loss is a
pair mean, exact across micro-batches and devices (sums and a pair count).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.data.chat import BATCH_KEYS, preference_batch
from jaxlab.data.tokenizer import BYTES, Tokenizer
from jaxlab.losses.preference import (
    LOSS_TYPES,
    needs_reference,
    pair_logprobs,
    preference_sums,
)
from jaxlab import models
from jaxlab.models import transformer
from jaxlab.peft.adapters import AdapterSpec
from jaxlab.peft.runs import trainer_adapter
from jaxlab.train.batch import apply_batch
from jaxlab.train.fit import FitResult, LoopConfig, fit
from jaxlab.train.optim import OptimConfig

REFERENCE_MODES = ("precomputed", "online")
HALVES = ("chosen", "rejected")


@dataclasses.dataclass(frozen=True)
class DPOConfig:
    """loss_type: one of ``LOSS_TYPES``; beta, label_smoothing (DPO only), gamma (SimPO only)
    are the loss's hyper-parameters. reference: "precomputed" | "online" (module docstring).
    batch_size: pairs per optimizer step (2 * batch_size rows); seq_len: tokens per row, a
    pair's prompt + response + turn end must fit (else an error). loop: steps, seed,
    grad_accum and intervals (:class:`LoopConfig`). peft: an adapter trained on the frozen
    starting params, which are also the reference (one copy; ``--set dpo.peft.method=lora``);
    method "none" (the default) trains every parameter."""
    loss_type: Literal["dpo", "ipo", "simpo", "apo_zero", "apo_down"] = "dpo"
    beta: float = 0.1
    label_smoothing: float = 0.0
    gamma: float = 1.0
    reference: Literal["precomputed", "online"] = "precomputed"
    batch_size: int = 16
    seq_len: int = 64
    ref_batch_size: int = 64  # pairs per forward pass when precomputing reference log-probs
    loop: LoopConfig = LoopConfig(steps=100, log_every=10, eval_every=50, checkpoint_every=100)
    peft: AdapterSpec = AdapterSpec(method="none")

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"dpo.loss_type={self.loss_type!r} is not one of {LOSS_TYPES}")
        if self.reference not in REFERENCE_MODES:
            raise ValueError(f"dpo.reference={self.reference!r} is not one of {REFERENCE_MODES}")
        if not self.beta > 0:
            raise ValueError(f"dpo.beta must be > 0, got {self.beta}")
        for name in ("batch_size", "seq_len", "ref_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"dpo.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.loop.grad_accum:
            raise ValueError(f"dpo.batch_size={self.batch_size} is not a multiple of "
                             f"dpo.loop.grad_accum={self.loop.grad_accum}")

    def hparams(self) -> dict:
        """The keyword hyper-parameters of ``loss_type``'s sums function."""
        if self.loss_type == "dpo":
            return {"beta": self.beta, "label_smoothing": self.label_smoothing}
        if self.loss_type == "simpo":
            return {"beta": self.beta, "gamma": self.gamma}
        return {"beta": self.beta}


# ---------------------------------------------------------------- pair rows and log-probs

def pair_rows(pairs: Sequence[Mapping], seq_len: int, tokenizer: Tokenizer = BYTES) -> dict[str, np.ndarray]:
    """The flat stacked rows of ``pairs`` (module docstring), [P, seq_len] each, plus
    ``ref_chosen`` / ``ref_rejected`` [P] when every pair carries them."""
    stacked = preference_batch(list(pairs), seq_len=seq_len, tokenizer=tokenizer)
    rows = {f"{half}_{k}": stacked[half][k] for half in HALVES for k in BATCH_KEYS}
    if all("ref_chosen" in p and "ref_rejected" in p for p in pairs):
        rows["ref_chosen"] = np.asarray([p["ref_chosen"] for p in pairs], np.float32)
        rows["ref_rejected"] = np.asarray([p["ref_rejected"] for p in pairs], np.float32)
    return rows


def pair_batches(pairs: Sequence[Mapping], batch_size: int, seq_len: int, tokenizer: Tokenizer = BYTES):
    """The rows of ``pairs`` in order, ``batch_size`` pairs (2 x batch_size rows, chosen then
    rejected) per batch, with the five batch keys: what EVA reads."""
    rows = pair_rows(pairs, seq_len, tokenizer)
    for start in range(0, len(pairs), batch_size):
        yield {k: np.concatenate([rows[f"{h}_{k}"][start:start + batch_size] for h in HALVES])
               for k in BATCH_KEYS}


def _half(batch: Mapping, half: str) -> dict:
    return {k: batch[f"{half}_{k}"] for k in BATCH_KEYS}


def batch_pair_logprobs(params: dict, batch: Mapping, model_cfg: transformer.Config) -> dict:
    """The pair dict (``chosen``, ``rejected``, ``chosen_count``, ``rejected_count``, each [P])
    of a flat stacked batch under ``params``: one forward pass over the 2P rows."""
    rows = {k: jnp.concatenate([batch[f"chosen_{k}"], batch[f"rejected_{k}"]], axis=0)
            for k in BATCH_KEYS}
    logits = apply_batch(params, rows, model_cfg)
    return pair_logprobs(logits, rows["targets"], rows["mask"])


@functools.partial(jax.jit, static_argnums=(2,))
def _jit_pair_logprobs(params, batch, model_cfg):
    return batch_pair_logprobs(params, batch, model_cfg)


def pair_sequence_logprobs(params: dict, model_cfg: transformer.Config, pairs: Sequence[Mapping],
                           *, seq_len: int, batch_size: int = 64,
                           tokenizer: Tokenizer = BYTES) -> dict[str, np.ndarray]:
    """log pi(y+ | x), log pi(y- | x) and the response token counts of every pair, as numpy
    [N] arrays (keys as a pair dict), in chunks of ``batch_size`` pairs (the last chunk is
    padded with copies of the first pair, so one compilation serves every chunk)."""
    if len(pairs) == 0:
        raise ValueError("pair_sequence_logprobs needs at least one pair")
    out = {k: [] for k in ("chosen", "rejected", "chosen_count", "rejected_count")}
    for start in range(0, len(pairs), batch_size):
        chunk = list(pairs[start:start + batch_size])
        n = len(chunk)
        chunk += [chunk[0]] * (batch_size - n)
        rows = pair_rows([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in chunk], seq_len,
                         tokenizer)
        got = jax.device_get(_jit_pair_logprobs(params, rows, model_cfg))
        for k, parts in out.items():
            parts.append(np.asarray(got[k][:n], np.float32))
    return {k: np.concatenate(v) for k, v in out.items()}


def with_reference_logprobs(pairs: Sequence[Mapping], ref_params: dict, model_cfg: transformer.Config,
                            *, seq_len: int, batch_size: int = 64,
                            tokenizer: Tokenizer = BYTES) -> list[dict]:
    """Copies of ``pairs`` with ``ref_chosen`` and ``ref_rejected``: their log-probs under the
    reference params (the "precomputed" mode)."""
    ref = pair_sequence_logprobs(ref_params, model_cfg, pairs, seq_len=seq_len, batch_size=batch_size,
                                 tokenizer=tokenizer)
    return [{**p, "ref_chosen": float(c), "ref_rejected": float(r)}
            for p, c, r in zip(pairs, ref["chosen"], ref["rejected"])]


# ---------------------------------------------------------------- loss

def dpo_loss_sums(params: dict, batch: Mapping, key: jax.Array, frozen: dict | None = None, *,
                  model_cfg: transformer.Config, loss_type: str = "dpo", **hparams) -> dict:
    """Preference-loss sums of a flat stacked batch (``preference_sums``): the policy's pair
    log-probs from ``params``; the reference's from ``frozen`` (reference params, "online")
    when given, else from the batch's ``ref_chosen`` / ``ref_rejected`` ("precomputed")."""
    del key
    policy = batch_pair_logprobs(params, batch, model_cfg)
    reference = None
    if needs_reference(loss_type):
        if frozen is not None:
            ref = jax.lax.stop_gradient(batch_pair_logprobs(frozen, batch, model_cfg))
            reference = {"chosen": ref["chosen"], "rejected": ref["rejected"]}
        elif "ref_chosen" in batch:
            reference = {"chosen": batch["ref_chosen"], "rejected": batch["ref_rejected"]}
        else:
            raise ValueError(f"loss_type={loss_type!r} needs reference log-probs: pass the "
                             "reference params as frozen, or a batch with ref_chosen/ref_rejected")
    return preference_sums(loss_type, policy, reference, **hparams)


# ---------------------------------------------------------------- batches

class PairSource:
    """A resumable :class:`jaxlab.train.fit.BatchSource` over preference records: epochs of a
    seeded permutation, ``batch_size`` pairs per step; this process reads its contiguous
    share of each step's pairs. The state is the number of pairs consumed."""

    uses_params = False

    def __init__(self, pairs: Sequence[Mapping], *, batch_size: int, seq_len: int, seed: int = 0,
                 tokenizer: Tokenizer = BYTES):
        self.rows = pair_rows(pairs, seq_len, tokenizer)  # encoded once
        self.n = len(pairs)
        self.batch_size = batch_size
        self.seed = seed
        self.cursor = 0
        per = batch_size // jax.process_count()
        self.share = slice(jax.process_index() * per, (jax.process_index() + 1) * per)

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def next(self, params, step):
        del params, step
        epochs, positions = np.divmod(self.cursor + np.arange(self.batch_size), self.n)
        orders = {int(e): self._order(int(e)) for e in np.unique(epochs)}
        index = np.asarray([orders[int(e)][p] for e, p in zip(epochs, positions)], np.int64)
        self.cursor += self.batch_size
        index = index[self.share]
        return {k: v[index] for k, v in self.rows.items()}, {}

    def get_state(self) -> Any:
        return {"cursor": self.cursor}

    def set_state(self, state: Any) -> None:
        self.cursor = int(state["cursor"])


# ---------------------------------------------------------------- trainer

def train_dpo(workdir: str | Path, pairs: Sequence[Mapping], *, model_cfg: transformer.Config,
              dpo: DPOConfig, optim: OptimConfig, mesh, init_params: dict | Callable,
              ref_params: dict | None = None, evaluate: Callable[[dict, int], dict] | None = None,
              progress: bool = True, tokenizer: Tokenizer = BYTES,
              base_path: str | Path | None = None) -> FitResult:
    """Preference-optimises the policy, starting from ``init_params`` (a params pytree, or a
    function of a key), on ``pairs`` in ``workdir`` (resumable). ``ref_params``: the reference
    model (default: ``init_params``, which must then be a pytree); unused by SimPO. Pairs are
    encoded by ``tokenizer`` with its chat template (default: bytes). With ``dpo.peft`` an
    adapter trains on ``init_params`` held frozen, which are the reference too (``ref_params``
    must then be None or ``init_params``); ``base_path`` is recorded in the checkpoints."""
    if len(pairs) == 0:
        raise ValueError("DPO needs at least one preference pair")
    uses_ref = needs_reference(dpo.loss_type)
    adapter = None
    if dpo.peft.enabled:
        if ref_params is not None and ref_params is not init_params:
            raise ValueError("with dpo.peft the reference is the frozen base (init_params); "
                             "leave ref_params None")
        init_params, adapter = trainer_adapter(
            dpo.peft, init_params, seed=dpo.loop.seed, base_path=base_path,
            reference_is_base=uses_ref and dpo.reference == "online", model_cfg=model_cfg,
            progress=progress, eva_batches=lambda: pair_batches(pairs, dpo.batch_size, dpo.seq_len, tokenizer))
        ref_params = adapter.base
    if uses_ref and ref_params is None:
        if callable(init_params):
            raise ValueError("give ref_params (the reference model) when init_params is a function")
        ref_params = init_params
    pairs = [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]
    frozen = None
    if uses_ref and dpo.reference == "precomputed":
        pairs = with_reference_logprobs(pairs, ref_params, model_cfg, seq_len=dpo.seq_len,
                                        batch_size=dpo.ref_batch_size, tokenizer=tokenizer)
    elif uses_ref and adapter is None:
        frozen = ref_params
    source = PairSource(pairs, batch_size=dpo.batch_size, seq_len=dpo.seq_len, seed=dpo.loop.seed,
                        tokenizer=tokenizer)
    loss_fn = functools.partial(dpo_loss_sums, model_cfg=model_cfg, loss_type=dpo.loss_type,
                                **dpo.hparams())
    return fit(workdir, name=dpo.loss_type, loop=dpo.loop, optim=optim, mesh=mesh,
               init_params=init_params, param_axes=models.param_axes(model_cfg), loss_sums_fn=loss_fn,
               source=source, evaluate=evaluate, frozen=frozen, progress=progress, adapter=adapter)
