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

import functools
import json
import logging
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxlab import config as config_lib
from jaxlab.data import ByteTokenizer, lm_dataset
from jaxlab.models import transformer
from jaxlab.samplers import generate, pad_prompts
from jaxlab.train import sharding as shd
from jaxlab.train import state as state_lib
from jaxlab.train.checkpoint import Checkpointer
from jaxlab.train.config import RESUMABLE_KEYS, ExperimentConfig
from jaxlab.train.metrics import MetricWriter, read_jsonl
from jaxlab.train.optim import make_optimizer, make_schedule
from jaxlab.train.plots import plot_curves
from jaxlab.train.step import jit_eval_sums, jit_train_step, lm_eval_sums, lm_loss_sums, state_shardings

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    pass


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


def _validate(cfg: ExperimentConfig, mesh) -> None:
    tcfg = cfg.train
    per_micro = tcfg.batch_size // tcfg.grad_accum
    divisor = shd.batch_divisor(mesh)
    if per_micro % divisor:
        raise ValueError(f"micro-batch of {per_micro} rows (train.batch_size / train.grad_accum) "
                         f"does not split over the {divisor} devices of the data axes")
    if tcfg.batch_size % jax.process_count():
        raise ValueError(f"train.batch_size ({tcfg.batch_size}) must divide over "
                         f"{jax.process_count()} processes")
    if cfg.model.vocab_size < ByteTokenizer.vocab_size:
        raise ValueError(f"model.vocab_size ({cfg.model.vocab_size}) is smaller than the "
                         f"tokenizer's {ByteTokenizer.vocab_size} ids")


def _eval_batches(cfg: ExperimentConfig) -> list[dict]:
    per_process = cfg.train.batch_size // jax.process_count()
    ds = lm_dataset(cfg.data, "validation", seq_len=cfg.train.seq_len, batch_size=per_process,
                    shard_index=jax.process_index(), shard_count=jax.process_count(), repeat=False)
    batches = []
    for batch in ds:
        batches.append(batch)
        if len(batches) == cfg.train.eval_batches:
            break
    return batches


def evaluate(eval_fn, params, batches: list[dict], mesh) -> dict:
    """Validation loss and bits per byte over ``batches``.

    bits/byte = sum of nll over byte targets / (ln 2 * number of byte targets).
    """
    total = None
    for batch in batches:
        sums = eval_fn(params, shd.global_batch(batch, mesh))
        total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    total = jax.device_get(total)
    count = max(float(total["count"]), 1.0)
    return {"loss": float(total["loss"]) / count,
            "accuracy": float(total["correct"]) / count,
            "bpb": float(total["byte_nll"]) / max(float(total["byte_count"]), 1.0) / math.log(2),
            "tokens": count}


def sample_text(params, cfg: ExperimentConfig, prompt: str, seed: int) -> str:
    tok = ByteTokenizer()
    tokens_BT, mask_BT = pad_prompts([tok.encode(prompt, bos=True)], pad_id=tok.pad_id)
    out = generate(params, cfg.model, jnp.asarray(tokens_BT), jnp.asarray(mask_BT),
                   jax.random.key(seed), cfg.sample)
    n = int(out.lengths[0])
    return prompt + tok.decode(np.asarray(out.tokens[0, :n]))


def train(cfg: ExperimentConfig, workdir: str | Path, *, progress: bool = True) -> dict:
    """Trains (or resumes) the run in ``workdir``; returns the final numbers."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _check_workdir_config(cfg, workdir)
    tcfg = cfg.train
    mesh = shd.make_mesh(cfg.mesh)
    _validate(cfg, mesh)

    optimizer = make_optimizer(cfg.optim, tcfg.steps)
    schedule = make_schedule(cfg.optim, tcfg.steps)
    loss_fn = functools.partial(lm_loss_sums, model_cfg=cfg.model, z_loss=tcfg.z_loss)

    def init_state(key):
        return state_lib.create(transformer.init(cfg.model, key), optimizer, tcfg.seed)

    key = jax.random.key(tcfg.seed)
    abstract = jax.eval_shape(init_state, key)
    state_sh = state_shardings(abstract, mesh, transformer.param_axes)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            abstract, state_sh)

    per_process = tcfg.batch_size // jax.process_count()
    train_ds = lm_dataset(cfg.data, "train", seq_len=tcfg.seq_len, batch_size=per_process,
                          shard_index=jax.process_index(), shard_count=jax.process_count())
    train_iter = iter(train_ds)
    eval_batches = _eval_batches(cfg)

    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=tcfg.keep_checkpoints)
    restored = ckpt.restore_latest(abstract)
    if restored is None:
        start = 0
        state = jax.jit(init_state, out_shardings=state_sh)(key)
    else:
        start, state, data_state = restored
        train_iter.set_state(data_state)
        log.info("resumed %s from step %d", workdir, start)

    step_fn = jit_train_step(mesh, state_sh, loss_sums_fn=loss_fn, optimizer=optimizer,
                             grad_accum=tcfg.grad_accum)
    eval_fn = jit_eval_sums(mesh, state_sh.params,
                            loss_sums_fn=functools.partial(lm_eval_sums, model_cfg=cfg.model))
    is_main = jax.process_index() == 0
    writer = MetricWriter(workdir, start_step=start, enabled=is_main)
    tokens_per_step = tcfg.batch_size * tcfg.seq_len
    last_saved = start if restored is not None else -1
    last_good = start
    pending = None  # (step, device metrics) not yet checked: read one step late, so the host
    # never waits for the device except when it needs a number.
    window = {"t": time.perf_counter(), "step": start}
    last_train: dict = {}
    last_eval: dict = {}
    run_t0 = time.perf_counter()

    def drain():
        nonlocal pending, last_good, last_train
        if pending is None:
            return
        step, metrics = pending
        pending = None
        metrics = jax.device_get(metrics)
        if not math.isfinite(float(metrics["loss"])):
            raise NonFiniteLossError(
                f"loss is {float(metrics['loss'])} at step {step}; stopping. The newest checkpoint "
                f"(step {last_saved if last_saved >= 0 else 'none'}) predates it and is intact; "
                "lower optim.lr or raise optim.warmup_steps and run again in a new workdir.")
        last_good = step
        if step % tcfg.log_every == 0 or step == tcfg.steps:
            now = time.perf_counter()
            tok_s = (step - window["step"]) * tokens_per_step / max(now - window["t"], 1e-9)
            window.update(t=now, step=step)
            last_train = {"loss": float(metrics["loss"]), "nll": float(metrics["nll"]),
                          "accuracy": float(metrics["correct"]), "grad_norm": float(metrics["grad_norm"]),
                          "lr": float(schedule(step - 1)), "tokens_per_s": tok_s}
            writer.write(step, last_train, prefix="train/")
            bar.set_postfix(loss=f"{last_train['loss']:.3f}", tok_s=f"{tok_s:,.0f}")

    def save(step):
        nonlocal last_saved
        if step != last_saved:
            ckpt.save(step, state, train_iter.get_state())
            last_saved = step

    bar = tqdm(total=tcfg.steps, initial=start, desc=cfg.name, unit="step", disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    try:
        for step in range(start + 1, tcfg.steps + 1):
            batch = shd.global_batch(next(train_iter), mesh)
            state, metrics = step_fn(state, batch)
            drain()
            pending = (step, metrics)
            bar.update(1)
            if step % tcfg.eval_every == 0 or step % tcfg.checkpoint_every == 0 or step == tcfg.steps:
                drain()
            if step % tcfg.eval_every == 0 or step == tcfg.steps:
                last_eval = evaluate(eval_fn, state.params, eval_batches, mesh)
                writer.write(step, last_eval, prefix="val/")
            if step % tcfg.checkpoint_every == 0 or step == tcfg.steps:
                save(step)
        drain()
    except KeyboardInterrupt:
        # Keep the work done: checkpoint the state if its loss is checked to be finite.
        try:
            drain()
            if last_good == int(state.step) and last_good > max(last_saved, 0):
                save(last_good)
                log.warning("interrupted: saved a checkpoint at step %d", last_good)
        except Exception as e:  # the state may have been donated to an interrupted step
            log.warning("interrupted: could not save a checkpoint (%s)", e)
        raise
    finally:
        bar.close()
        writer.close()
    train_wall = time.perf_counter() - run_t0

    if not last_eval:
        last_eval = evaluate(eval_fn, state.params, eval_batches, mesh)
    sample = sample_text(state.params, cfg, cfg.prompt, tcfg.seed)
    records = read_jsonl(workdir / "metrics.jsonl")
    results = {
        "name": cfg.name,
        "steps": tcfg.steps,
        "params": transformer.count_params(state.params),
        "tokens_seen": tcfg.steps * tokens_per_step,
        "train_loss": _last(records, "train/loss"),
        "val_loss": last_eval["loss"],
        "val_bpb": last_eval["bpb"],
        "val_accuracy": last_eval["accuracy"],
        "tokens_per_s": _mean_tail(records, "train/tokens_per_s"),
        "train_wall_s": train_wall if start < tcfg.steps else None,
        "resumed_from": start if restored is not None else None,
        "sample": sample,
    }
    if is_main:
        plot_curves({cfg.name: records}, ["train/loss", "val/loss"], workdir / "curves.png",
                    title=f"{cfg.name}: loss (nats/token)")
        (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (workdir / "report.md").write_text(render_report(cfg, results))
    ckpt.close()
    return results


def _last(records: list[dict], key: str):
    values = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    return values[-1] if values else None


def _mean_tail(records: list[dict], key: str, n: int = 10):
    # The first logged window includes compilation; report the steady state.
    values = [r[key] for r in records if isinstance(r.get(key), (int, float))][1:][-n:]
    return float(np.mean(values)) if values else None


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def render_report(cfg: ExperimentConfig, r: dict) -> str:
    m = cfg.model
    return f"""# {cfg.name}

| | |
|---|---|
| model | {m.n_layers} layers, d_model {m.d_model}, {m.n_heads} heads ({m.n_kv_heads} kv), mlp {m.mlp_dim}, {r['params']:,} params |
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
