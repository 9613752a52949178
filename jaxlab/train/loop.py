"""The training loop behind ``jaxlab run``: resumable, checkpointed, observable.

A run writes into its workdir:
  config.json        the resolved config
  metrics.jsonl      one record per logged step (train) and per evaluation (val)
  tensorboard/       TensorBoard event files
  checkpoints/       orbax checkpoints (params, optimizer state, step, RNG, data iterator)
  curves.png         loss curves
  results.json       final numbers
  report.md          the final numbers, a generated sample and the plot

Running again in the same workdir resumes from the newest intact checkpoint; on CPU the
resumed run is bitwise identical to an uninterrupted one. A non-finite loss stops the run
with :class:`NonFiniteLossError` and leaves the last good checkpoint as the newest.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import config as config_lib
from jaxlab.data import ByteTokenizer, DataError, lm_dataset
from jaxlab.data.pipeline import pad_batch
from jaxlab import models
from jaxlab.models import transformer
from jaxlab.peft.adapters import count_trainable
from jaxlab.peft.runs import trainer_adapter
from jaxlab.samplers import generate, pad_prompts
from jaxlab.train import distributed
from jaxlab.train import sharding as shd
from jaxlab.train.config import RESUMABLE_KEYS, ExperimentConfig, TrainConfig
from jaxlab.train.fit import IteratorSource, fit
from jaxlab.train.plots import plot_curves
from jaxlab.train.lm import lm_eval_sums, lm_loss_sums
from jaxlab.train.step import jit_eval_sums

log = logging.getLogger(__name__)


class ConfigMismatchError(ValueError):
    pass


def _check_workdir_config(cfg: ExperimentConfig, workdir: Path) -> None:
    """Writes config.json, or checks that a resumed run has the same trajectory settings."""
    path = workdir / "config.json"
    if path.exists():
        old = config_lib.from_dict(ExperimentConfig, json.loads(path.read_text()))
        changed = [k for k in config_lib.diff(old, cfg)
                   if not any(k == r or k.startswith(r + ".") for r in RESUMABLE_KEYS)]
        if changed:
            raise ConfigMismatchError(
                f"{workdir} holds a run with different settings ({', '.join(changed)}); "
                "resuming it with these would mix two experiments. Use another --workdir, "
                "or delete the old run.")
    if jax.process_index() == 0:
        path.write_text(config_lib.to_json(cfg) + "\n")


def resolve_model(cfg: ExperimentConfig):
    """(cfg, initial params or None, tokenizer). With ``model.hf_path`` the Hugging Face
    checkpoint's architecture replaces the model config (the run's dtypes, attention
    implementation, remat and scan settings are kept), its weights are the initial params and
    its tokenizer.json, if present, the tokenizer; otherwise bytes."""
    path = getattr(cfg.model, "hf_path", None)  # a Mamba config has none (not loaded by the runner)
    if path is None:
        return cfg, None, ByteTokenizer()
    from jaxlab.interop import hf

    hf_cfg, params = hf.load(path, dtype=cfg.model.param_dtype)
    keep = ("param_dtype", "compute_dtype", "attention_impl", "remat", "scan_unroll", "hf_path")
    model = dataclasses.replace(hf_cfg, **{k: getattr(cfg.model, k) for k in keep})
    if (Path(path) / "tokenizer.json").exists():
        tokenizer = hf.load_tokenizer(path)
        sample = dataclasses.replace(cfg.sample, stop_tokens=tuple(tokenizer.eos_ids),
                                     pad_id=tokenizer.pad_id)
    else:
        tokenizer, sample = ByteTokenizer(), cfg.sample
    return dataclasses.replace(cfg, model=model, sample=sample), params, tokenizer


def _validate(cfg: ExperimentConfig, mesh, tokenizer) -> None:
    tcfg = cfg.train
    per_micro = tcfg.batch_size // tcfg.loop.grad_accum
    divisor = shd.batch_divisor(mesh)
    if per_micro % divisor:
        raise ValueError(f"micro-batch of {per_micro} rows (train.batch_size / train.loop.grad_accum) "
                         f"does not split over the {divisor} devices of the data axes")
    if tcfg.batch_size % jax.process_count():
        raise ValueError(f"train.batch_size ({tcfg.batch_size}) must divide over "
                         f"{jax.process_count()} processes")
    if cfg.model.vocab_size < tokenizer.vocab_size:
        raise ValueError(f"model.vocab_size ({cfg.model.vocab_size}) is smaller than the "
                         f"tokenizer's {tokenizer.vocab_size} ids")


def _eval_batches(cfg: ExperimentConfig, tokenizer=None) -> list[dict]:
    """This process's validation batches. Processes may hold different numbers of batches of
    their shards; the short ones append all-padding batches (they add nothing to the sums) so
    that every process runs the same number of evaluation steps."""
    per_process = cfg.train.batch_size // jax.process_count()
    ds = lm_dataset(cfg.data, "validation", seq_len=cfg.train.seq_len, batch_size=per_process,
                    shard_index=jax.process_index(), shard_count=jax.process_count(), repeat=False,
                    tokenizer=tokenizer)
    batches = []
    for batch in ds:
        batches.append(batch)
        if len(batches) == cfg.train.eval_batches:
            break
    n = distributed.agree_max(len(batches))
    if batches and len(batches) < n:
        empty = {k: v[:0] for k, v in batches[0].items()}
        batches += [pad_batch(empty, per_process)] * (n - len(batches))
    if not batches and n:
        raise DataError(f"process {jax.process_index()} has no validation data in its shard; "
                        "use fewer processes or a larger data.val_percent")
    return batches


def evaluate(eval_fn, params, batches: list[dict], mesh) -> dict:
    """Validation loss and bits per byte over ``batches``.

    bits/byte = sum of nll over byte targets / (ln 2 * number of byte targets); None when
    the targets are not bytes (a Hugging Face tokenizer).
    """
    total = None
    for batch in batches:
        sums = eval_fn(params, shd.global_batch(batch, mesh))
        total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    total = jax.device_get(total)
    count = max(float(total["count"]), 1.0)
    out = {"loss": float(total["loss"]) / count, "accuracy": float(total["correct"]) / count,
           "tokens": count}
    if float(total["byte_count"]) > 0:
        out["bpb"] = float(total["byte_nll"]) / float(total["byte_count"]) / math.log(2)
    return out


def sample_text(params, cfg: ExperimentConfig, prompt: str, seed: int, mesh, tok=None) -> str:
    """The model's continuation of ``prompt`` (every process computes it; inputs replicated)."""
    tok = tok or ByteTokenizer()
    tokens_BT, mask_BT = pad_prompts([tok.encode(prompt, bos=tok.bos_id is not None)],
                                     pad_id=tok.pad_id)
    tokens_BT, mask_BT = (shd.replicate(x, mesh) for x in (tokens_BT, mask_BT))
    out = generate(params, cfg.model, tokens_BT, mask_BT, jax.random.key(seed), cfg.sample)
    n = int(out.lengths[0])
    return prompt + tok.decode(np.asarray(out.tokens[0, :n]), stop_at_eos=True)


def train(cfg: ExperimentConfig, workdir: str | Path, *, progress: bool = True) -> dict:
    """Trains (or resumes) the run in ``workdir``; returns the final numbers."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg, hf_params, tokenizer = resolve_model(cfg)
    _check_workdir_config(cfg, workdir)
    tcfg = cfg.train
    mesh = shd.make_mesh(cfg.mesh)
    _validate(cfg, mesh, tokenizer)
    byte_tokens = isinstance(tokenizer, ByteTokenizer)

    per_process = tcfg.batch_size // jax.process_count()
    train_ds = lm_dataset(cfg.data, "train", seq_len=tcfg.seq_len, batch_size=per_process,
                          shard_index=jax.process_index(), shard_count=jax.process_count(),
                          tokenizer=None if byte_tokens else tokenizer)
    eval_batches = _eval_batches(cfg, None if byte_tokens else tokenizer)
    rules = cfg.mesh.logical_rules()
    eval_fn = jit_eval_sums(mesh, shd.tree_shardings(
        jax.eval_shape(models.init_fn(cfg.model), jax.random.key(0)), mesh, models.param_axes(cfg.model), rules),
        loss_sums_fn=functools.partial(lm_eval_sums, model_cfg=cfg.model,
                                       byte_vocab=256 if byte_tokens else 0), rules=rules)
    tokens_per_step = tcfg.batch_size * tcfg.seq_len
    init = hf_params if hf_params is not None else models.init_fn(cfg.model)
    if getattr(cfg.model, "family", None) == "blt" and cfg.model.patching == "entropy":
        init = blt_entropy_init(cfg, workdir, progress)
    init_params, adapter = trainer_adapter(
        tcfg.peft, init,
        seed=tcfg.loop.seed, base_path=getattr(cfg.model, "hf_path", None), model_cfg=cfg.model, progress=progress,
        eva_batches=lambda: iter(lm_dataset(cfg.data, "train", seq_len=tcfg.seq_len, batch_size=per_process,
                                            tokenizer=None if byte_tokens else tokenizer)))
    fitted = fit(
        workdir, name=cfg.name, loop=tcfg.loop, optim=cfg.optim, mesh=mesh, rules=rules,
        init_params=init_params, adapter=adapter,
        param_axes=models.param_axes(cfg.model),
        loss_sums_fn=functools.partial(lm_loss_sums, model_cfg=cfg.model, z_loss=tcfg.z_loss),
        source=IteratorSource(iter(train_ds)),
        evaluate=lambda params, step: evaluate(eval_fn, params, eval_batches, mesh),
        tokens_per_step=tokens_per_step, progress=progress)
    params, last_eval = fitted.params, fitted.last_eval
    sample = sample_text(params, cfg, cfg.prompt, tcfg.loop.seed, mesh, tokenizer)
    results = {
        "name": cfg.name,
        "steps": int(fitted.state.step),  # fewer than train.loop.steps when a time budget ended the run
        "params": models.count_params(params),
        "trainable_params": count_trainable(fitted.state.params),
        "tokens_seen": int(fitted.state.step) * tokens_per_step,
        "train_loss": fitted.last("train/loss"),
        "val_loss": last_eval["loss"],
        "val_bpb": last_eval.get("bpb"),
        "val_accuracy": last_eval["accuracy"],
        "tokens_per_s": fitted.mean_tail("train/tokens_per_s"),
        "train_wall_s": fitted.train_wall_s,
        "resumed_from": fitted.resumed_from,
        "sample": sample,
    }
    if jax.process_index() == 0:
        plot_curves({cfg.name: fitted.records}, ["train/loss", "val/loss"], workdir / "curves.png",
                    title=f"{cfg.name}: loss (nats/token)")
        (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (workdir / "report.md").write_text(render_report(cfg, results))
    return results


def blt_entropy_init(cfg: ExperimentConfig, workdir: Path, progress: bool):
    """``key -> params`` of a BLT with "entropy" patching: its own init with the entropy model
    loaded from ``model.entropy_from`` (a byte-transformer run folder) or pre-trained on the
    run's data for ``model.entropy_steps`` steps in ``workdir/entropy_model`` (resumable; a
    finished one is only read)."""
    from jaxlab.models import blt
    from jaxlab.train.checkpoint import CheckpointError, load_params, same_shapes

    ent_cfg = cfg.model.entropy_model
    if cfg.model.entropy_from:
        try:
            _, ent_params = load_params(cfg.model.entropy_from)
        except CheckpointError as e:
            raise CheckpointError(f"model.entropy_from: {e}") from e
    else:
        ent_params = pretrain_byte_model(workdir / "entropy_model", ent_cfg, steps=cfg.model.entropy_steps,
                                         seed=cfg.train.loop.seed, data=cfg.data, progress=progress)
    want = jax.eval_shape(transformer.init, ent_cfg, jax.random.key(0))
    if not same_shapes(want, ent_params):
        raise ValueError(f"the entropy model at {cfg.model.entropy_from} does not have the shapes of "
                         f"model.entropy_d_model={cfg.model.entropy_d_model}, "
                         f"model.entropy_layers={cfg.model.entropy_layers}, "
                         f"model.entropy_heads={cfg.model.entropy_heads}")
    ent_params = jax.tree.map(lambda w, p: jnp.asarray(p, w.dtype), want, ent_params)
    return lambda key: blt.with_entropy_model(blt.init(cfg.model, key), ent_params)


def pretrain_byte_model(workdir: str | Path, model_cfg: transformer.Config, *, steps: int, seed: int = 0,
                        batch_size: int = 16, seq_len: int = 256, lr: float = 3e-3,
                        checkpoint_every: int | None = None, keep_checkpoints: int = 3,
                        data=None, progress: bool = True) -> dict:
    """Pre-trains the byte model ``model_cfg`` on the embedded corpus through :func:`train`
    (AdamW, cosine schedule, warm-up min(100, steps/5)) and returns its final params. The run
    lives in ``workdir``: calling again resumes it or, when its newest checkpoint is step
    ``steps`` with ``model_cfg``'s shapes, only reads it (nothing is written, so concurrent
    runs can share one base); its checkpoints
    (every ``checkpoint_every`` steps, the newest ``keep_checkpoints`` kept) serve analyses of
    training. The shared starting point of experiments that need "a model that knows some text"
    more cheaply than SmolLM2. ``data`` (a :class:`jaxlab.data.pipeline.DataConfig`) replaces the
    embedded corpus (a BLT's entropy model trains on its run's data)."""
    from jaxlab.samplers import SampleConfig
    from jaxlab.train.checkpoint import CheckpointError, load_params, same_shapes
    from jaxlab.train.fit import LoopConfig
    from jaxlab.train.optim import OptimConfig

    if model_cfg.vocab_size < 259:
        raise ValueError(f"a byte model needs vocab_size >= 259 (256 bytes + specials), got {model_cfg.vocab_size}")

    try:
        step, params = load_params(workdir)
    except CheckpointError:
        step, params = None, None
    if step == steps:
        want = jax.eval_shape(models.init_fn(model_cfg), jax.random.key(0))
        if same_shapes(want, params):
            return params
    every = checkpoint_every or steps
    train_cfg = TrainConfig(batch_size=batch_size, seq_len=seq_len, eval_batches=2,
                            loop=LoopConfig(steps=steps, seed=seed, eval_every=steps, log_every=max(1, every // 4),
                                            checkpoint_every=every, keep_checkpoints=keep_checkpoints))
    exp = ExperimentConfig(name="byte_model", model=model_cfg, train=train_cfg,
                           sample=SampleConfig(max_new_tokens=8, temperature=0.0),
                           optim=OptimConfig(lr=lr, warmup_steps=max(1, min(100, steps // 5)),
                                             schedule="cosine", weight_decay=0.1, clip_norm=1.0))
    if data is not None:
        exp = dataclasses.replace(exp, data=data)
    train(exp, workdir, progress=progress)
    return load_params(workdir)[1]


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def render_report(cfg: ExperimentConfig, r: dict) -> str:
    m = cfg.model
    return f"""# {cfg.name}

| | |
|---|---|
| model | {models.describe(m)}, {r['params']:,} params |
| training | {r['steps']} steps x {cfg.train.batch_size} x {cfg.train.seq_len} tokens = {r['tokens_seen']:,} tokens |
| final train loss | {_fmt(r['train_loss'], '.4f')} nats/token |
| validation loss | {_fmt(r['val_loss'], '.4f')} nats/token |
| **validation bits per byte** | **{_fmt(r['val_bpb'], '.4f')}** |
| validation next-byte accuracy | {_fmt(r['val_accuracy'], '.3f')} |
| throughput | {_fmt(r['tokens_per_s'], ',.0f')} tokens/s |
| training wall time | {_fmt(r['train_wall_s'], '.1f')} s |

![loss curves](curves.png)

## Sample

Prompt {cfg.prompt!r}, temperature {cfg.sample.temperature}, top-k {cfg.sample.top_k}, top-p {cfg.sample.top_p}:

```text
{r['sample']}
```
"""
