"""Masked-language-model pre-training of the ModernBERT-style encoder on the embedded corpus.

The corpus is the quickstart's: the English text of ``pydoc_data.topics`` shipped with Python,
cut into chunks and split 95/5 into train and validation by a hash of each chunk
(``jaxlab.data.corpus.split_chunks``). Chunks are packed into rows with segment ids (a chunk
shorter than a row shares it without attending to its neighbours) and trained with
``jaxlab.train.mlm.train_mlm``: 30% of the text tokens are selected (ModernBERT's rate), 80% of
those replaced by the mask id, 10% by a random byte, 10% kept; the loss is the cross-entropy of
the selected tokens. Bytes are the tokens; the mask id is 259, the first id past the byte
tokenizer's, reserved in the encoder's 264-id vocabulary. The encoder alternates attention as
ModernBERT does: layer 0 global, the next two local (a window of ``local_window`` tokens).

The report gives the validation MLM loss (nats per masked token) and masked-token accuracy on
fixed validation masks, the loss curves (``curves.png``), and an example: a validation passage
with 30% of its bytes masked (all by the mask id, so the gaps show) and the model's fills. The
trained encoder is also written as a Hugging Face ``ModernBertForMaskedLM`` folder (``hf/``,
``jaxlab.interop.hf_encoder.save``; ``mask_token_id`` 259).

Resumable like every run: running the command again continues from the newest checkpoint, and
a run extended with more steps (``--set mlm.loop.steps=N``) continues from where it stopped.
The learning rate is constant after the warmup (the stable phase of ModernBERT's
warmup-stable-decay schedule), so an extended run ends bitwise equal (on CPU) to one asked for N
steps from the start; with a decaying ``optim.schedule`` an extension re-plans the decay over
the new total from the resume point.

    jaxlab run experiments/encoder_mlm.py                          # 600 steps: 16 min on a loaded 2-core machine
    jaxlab run experiments/encoder_mlm.py --preset default --publish   # the same, filed in results/
    jaxlab run experiments/encoder_mlm.py --preset smoke --workdir /tmp/mlm   # under a minute (tests)
    jaxlab run experiments/encoder_mlm.py --set mlm.loop.steps=1200           # extend the run
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.data.corpus import default_documents, read_documents, split_chunks
from jaxlab.data.tokenizer import BYTES
from jaxlab.models import encoder
from jaxlab.models.encoder import EncoderConfig
from jaxlab.train.fit import LoopConfig
from jaxlab.train.mlm import MLMConfig, mask_spec, mask_tokens, mlm_evaluator, train_mlm
from jaxlab.train.optim import OptimConfig
from jaxlab.train.plots import plot_curves
from jaxlab.train.sharding import MeshConfig, experiment_mesh

REPORT_KEYS = ["val_loss", "val_accuracy", "train_loss", "steps", "params", "tokens_per_s"]
RESUMABLE_KEYS = ("mlm.loop.steps", "mlm.loop.log_every", "mlm.loop.eval_every",
                  "mlm.loop.checkpoint_every", "mlm.loop.keep_checkpoints", "example_chars", "save_hf")
MASK_SHOWN = "\u2588"  # how a masked byte is shown in the example
PRESETS = {
    "default": {},  # the default config, named so that --publish can file it (results/encoder_mlm/default/)
    "smoke": {"encoder.n_layers": 2, "encoder.d_model": 32, "encoder.n_heads": 2, "encoder.head_dim": 16, "encoder.mlp_dim": 64,
              "encoder.local_window": 16, "mlm.batch_size": 4, "mlm.seq_len": 64, "mlm.val_batches": 2,
              "mlm.loop.steps": 6, "mlm.loop.log_every": 2, "mlm.loop.eval_every": 3,
              "mlm.loop.checkpoint_every": 3, "optim.warmup_steps": 2, "example_chars": 48},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "encoder_mlm"
    encoder: EncoderConfig = EncoderConfig(vocab_size=264, d_model=128, n_layers=3, n_heads=4, head_dim=32,
                                           mlp_dim=256, local_window=64)
    mlm: MLMConfig = MLMConfig(mask_prob=0.3, batch_size=16, seq_len=256, val_batches=8,
                               loop=LoopConfig(steps=600, log_every=10, eval_every=150, checkpoint_every=150))
    optim: OptimConfig = OptimConfig(lr=2e-3, warmup_steps=60, schedule="constant", weight_decay=0.01,
                                     clip_norm=1.0)
    data_path: str | None = None  # a UTF-8 file or folder; None: the embedded pydoc corpus
    chunk_bytes: int = 2048
    val_percent: float = 5.0
    example_chars: int = 160  # bytes of the validation passage shown masked and filled
    save_hf: bool = True  # write hf/ (ModernBertForMaskedLM)
    mesh: MeshConfig = MeshConfig(data=1)

    def __post_init__(self):
        if self.example_chars < 1:
            raise ValueError(f"example_chars must be >= 1, got {self.example_chars}")


def get_config() -> Config:
    return Config()


@functools.partial(jax.jit, static_argnames=("cfg",))
def _fill(params: dict, tokens_1T: jax.Array, key: jax.Array, *, cfg: Config):
    """(selected_1T, predicted_1T): every selected byte replaced by the mask id, and the argmax."""
    spec = mask_spec(cfg.mlm, BYTES, cfg.encoder)
    inputs_1T, selected_1T = mask_tokens(key, tokens_1T, tokens_1T != BYTES.bos_id, mask_prob=cfg.mlm.mask_prob,
                                         mask_id=spec.mask_id, random_ids=spec.random_ids, mask_frac=1.0,
                                         random_frac=0.0)
    logits_1TV = encoder.apply(params, inputs_1T, cfg.encoder, segment_ids_BT=jnp.ones_like(tokens_1T))
    return selected_1T, jnp.argmax(logits_1TV, axis=-1)


def fill_example(params: dict, cfg: Config, text: str, key: jax.Array) -> dict:
    """``text``'s first ``example_chars`` bytes with ``mlm.mask_prob`` of them masked (every
    selected byte shown as the mask, none random or kept) and the encoder's argmax at each: the
    original, the masked and the filled text, and how many fills equal the original byte."""
    tokens_T = BYTES.encode(text.encode("utf-8")[:cfg.example_chars].decode("utf-8", errors="ignore"), bos=True)
    selected_1T, predicted_1T = _fill(params, tokens_T[None], key, cfg=cfg)
    selected_T, predicted_T = np.asarray(selected_1T[0]), np.asarray(predicted_1T[0])
    filled_T = np.where(selected_T, predicted_T, tokens_T)

    def shown(ids_T, gaps_T):
        out, run = [], []
        for i, gap in zip(ids_T[1:], gaps_T[1:]):
            if gap:
                out.append(BYTES.decode(run))
                out.append(MASK_SHOWN)
                run = []
            else:
                run.append(int(i))
        return "".join(out) + BYTES.decode(run)

    return {"original": BYTES.decode(tokens_T), "masked": shown(tokens_T, selected_T),
            "filled": BYTES.decode(filled_T), "masked_bytes": int(selected_T.sum()),
            "correct_fills": int(np.sum(selected_T & (predicted_T == tokens_T)))}


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    documents = default_documents() if cfg.data_path is None else read_documents(cfg.data_path)
    train_texts, val_texts = split_chunks(documents, chunk_bytes=cfg.chunk_bytes, val_percent=cfg.val_percent)
    mesh = experiment_mesh(cfg.mesh)
    evaluate = mlm_evaluator(val_texts, encoder_cfg=cfg.encoder, mlm=cfg.mlm, mesh=mesh)
    fitted = train_mlm(workdir, train_texts, encoder_cfg=cfg.encoder, mlm=cfg.mlm, optim=cfg.optim, mesh=mesh,
                       evaluate=evaluate, progress=progress)
    params = jax.device_get(fitted.state.params)
    example = fill_example(params, cfg, val_texts[0], jax.random.key(cfg.mlm.loop.seed))
    plot_curves({cfg.name: fitted.records}, ["train/loss", "val/loss"], workdir / "curves.png",
                title=f"{cfg.name}: MLM loss (nats per masked byte)")
    if cfg.save_hf:
        hf_dir = workdir / "hf"
        shutil.rmtree(hf_dir, ignore_errors=True)
        from jaxlab.interop import hf_encoder
        hf_encoder.save(hf_dir, cfg.encoder, params,
                        extra_config={"mask_token_id": mask_spec(cfg.mlm, BYTES, cfg.encoder).mask_id,
                                      "pad_token_id": BYTES.pad_id, "bos_token_id": BYTES.bos_id,
                                      "eos_token_id": BYTES.eos_id, "cls_token_id": BYTES.bos_id})
    steps, m = cfg.mlm.loop.steps, cfg.mlm
    last = fitted.last_eval
    results = {
        "steps": steps,
        "params": encoder.count_params(params),
        "tokens_seen": steps * m.batch_size * m.seq_len,
        "train_loss": fitted.last("train/loss"),
        "train_accuracy": fitted.last("train/accuracy"),
        "val_loss": last["loss"],
        "val_accuracy": last["accuracy"],
        "val_masked_tokens": last["tokens"],
        "tokens_per_s": fitted.mean_tail("train/tokens_per_s"),
        "train_wall_s": fitted.train_wall_s,
        "resumed_from": fitted.resumed_from,
        "example": example,
    }
    results["report"] = _report(cfg, results)
    return results


def _report(cfg: Config, r: dict) -> str:
    e, m, ex = cfg.encoder, cfg.mlm, r["example"]
    layers = ", ".join(e.types)
    return f"""Encoder: {e.n_layers} layers ({layers}; local window {e.local_window}), d_model {e.d_model}, \
{r['params']:,} params. {r['steps']} steps x {m.batch_size} packed rows x {m.seq_len} bytes; \
{m.mask_prob:.0%} of the text bytes selected per row.

**Validation: MLM loss {r['val_loss']:.4f} nats per masked byte, masked-byte accuracy {r['val_accuracy']:.3f}** \
({r['val_masked_tokens']:,.0f} masked bytes, fixed masks).

![loss curves](curves.png)

Example (validation text; {MASK_SHOWN} = a masked byte, {ex['correct_fills']} of {ex['masked_bytes']} fills right):

```text
original: {ex['original']!r}
masked:   {ex['masked']!r}
filled:   {ex['filled']!r}
```
""" + ("\nThe encoder is saved as a Hugging Face ModernBertForMaskedLM folder: `hf/`.\n" if cfg.save_hf else "")
