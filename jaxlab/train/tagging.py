"""Token classification (BIO field tagging) with the encoder, trained by ``fit``.

Examples are documents with the character spans of their fields: ``{"text": str, "spans":
{field: (start, end)}}`` or any object with ``.text`` and ``.spans`` (a
``jaxlab.tasks.documents.Document``). Each is tokenized (bytes by default: token t is byte t
of the UTF-8 text, its character offsets those of the character the byte belongs to,
:func:`byte_tokens`) and tagged with ``bio_tags`` over ``label_names`` =
``bio_label_names(fields)``; fields not in ``fields`` are ``O``. The loss is the mean
cross-entropy over the real tokens of a batch,

    L = sum_{b,t} m_bt * -log softmax(W h_bt)[y_bt] / sum_{b,t} m_bt,   m_bt = [token t of row b is real]

with h = ``encoder.encode`` and W the token classifier (``encoder.token_logits``).

Rows are padded, one document per row (segment id 1 on its tokens, 0 on padding), not packed:
a document is the unit of evaluation (its tags decode to one record with ``bio_record``), and
in a padded row every attention layer sees exactly its document, so a global layer's cost is
the document's and the sliding window of a local layer is never cut by a neighbour's
boundary. A document longer than ``seq_len`` tokens is an error (never silently truncated: a
cut document would lose fields).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxlab.data.tokenizer import PAD_ID
from jaxlab.losses.lm import cross_entropy_sums
from jaxlab.models import encoder
from jaxlab.tasks.documents.generator import bio_label_names, bio_record, bio_tags
from jaxlab.train.fit import FitResult, LoopConfig, fit
from jaxlab.train.optim import OptimConfig


@dataclasses.dataclass(frozen=True)
class TaggingConfig:
    """fields: the tagged fields (labels ``O``, ``B-f``, ``I-f``). batch_size: documents per
    optimizer step; seq_len: tokens per (padded) row. loop: steps, seed and intervals."""
    fields: tuple[str, ...] = ()
    batch_size: int = 16
    seq_len: int = 1024
    loop: LoopConfig = LoopConfig(steps=300, log_every=10, eval_every=100, checkpoint_every=100)

    def __post_init__(self):
        object.__setattr__(self, "fields", tuple(self.fields))
        if not self.fields or len(set(self.fields)) != len(self.fields):
            raise ValueError(f"tagging.fields must be distinct field names, got {self.fields!r}")
        for name in ("batch_size", "seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"tagging.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.loop.grad_accum:
            raise ValueError(f"tagging.batch_size={self.batch_size} is not a multiple of "
                             f"tagging.loop.grad_accum={self.loop.grad_accum}")

    @property
    def label_names(self) -> list[str]:
        return bio_label_names(self.fields)


def byte_tokens(text: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(ids_T, offsets): the UTF-8 bytes of ``text`` as token ids and, for byte t, the
    character span (c, c + 1) of the character c it encodes (all bytes of a multi-byte
    character share it)."""
    ids, offsets = [], []
    for c, ch in enumerate(text):
        b = ch.encode("utf-8")
        ids.extend(b)
        offsets.extend([(c, c + 1)] * len(b))
    return np.asarray(ids, np.int32), offsets


def _text_spans(example) -> tuple[str, Mapping]:
    if isinstance(example, Mapping):
        return example["text"], example.get("spans", {})
    return example.text, example.spans


def tagging_rows(examples: Sequence, label_names: Sequence[str], seq_len: int, *,
                 tokenize: Callable = byte_tokens, pad_id: int = PAD_ID) -> dict:
    """Padded rows of ``examples`` (module docstring): ``tokens`` [N, T] int32, ``labels``
    [N, T] int32 (index into ``label_names``; 0 on padding), ``segment_ids`` [N, T] int32
    (1 on the document's tokens, 0 on padding)."""
    index = {name: i for i, name in enumerate(label_names)}
    if label_names[0] != "O":
        raise ValueError(f"label_names must start with 'O', got {list(label_names[:3])}")
    fields = {name[2:] for name in label_names[1:]}
    N = len(examples)
    tokens = np.full((N, seq_len), pad_id, np.int32)
    labels = np.zeros((N, seq_len), np.int32)
    segments = np.zeros((N, seq_len), np.int32)
    for i, ex in enumerate(examples):
        text, spans = _text_spans(ex)
        ids_T, offsets = tokenize(text)
        if len(ids_T) > seq_len:
            raise ValueError(f"example {i} has {len(ids_T)} tokens, more than seq_len={seq_len}; raise "
                             "seq_len or draw shorter documents")
        tags = bio_tags(spans, offsets, fields=fields)
        tokens[i, :len(ids_T)] = ids_T
        labels[i, :len(ids_T)] = [index[t] for t in tags]
        segments[i, :len(ids_T)] = 1
    return {"tokens": tokens, "labels": labels, "segment_ids": segments}


class ShuffledRows:
    """A resumable ``BatchSource`` over fixed rows (a dict of [N, ...] arrays): epochs of a
    seeded permutation, ``batch_size`` rows per step; this process reads its contiguous share.
    The state is the number of rows consumed."""

    def __init__(self, rows: dict, batch_size: int, seed: int):
        self.rows, self.batch_size, self.seed, self.cursor = rows, batch_size, seed, 0
        self.n = len(next(iter(rows.values())))
        per = batch_size // jax.process_count()
        self.share = slice(jax.process_index() * per, (jax.process_index() + 1) * per)

    def next(self, params, step):
        del params, step
        epochs, positions = np.divmod(self.cursor + np.arange(self.batch_size), self.n)
        orders = {int(e): np.random.default_rng([self.seed, int(e)]).permutation(self.n) for e in np.unique(epochs)}
        index = np.asarray([orders[int(e)][p] for e, p in zip(epochs, positions)], np.int64)[self.share]
        self.cursor += self.batch_size
        return {k: v[index] for k, v in self.rows.items()}, {}

    def get_state(self) -> Any:
        return {"cursor": self.cursor}

    def set_state(self, state: Any) -> None:
        self.cursor = int(state["cursor"])


def tagging_loss_sums(params: dict, batch: dict, key: jax.Array, *, encoder_cfg: encoder.EncoderConfig) -> dict:
    """Sums of the token cross-entropy over real tokens (module docstring): ``loss``, ``nll``,
    ``correct`` (argmax = label), ``count`` (real tokens)."""
    del key
    h_BTD = encoder.encode(params, batch["tokens"], encoder_cfg, segment_ids_BT=batch["segment_ids"])
    logits_BTN = encoder.token_logits(params, h_BTD, encoder_cfg)
    return cross_entropy_sums(logits_BTN, batch["labels"], batch["segment_ids"] != 0)


def init_tagger(encoder_cfg: encoder.EncoderConfig, key: jax.Array, num_labels: int,
                params: dict | None = None) -> dict:
    """Encoder params with a token classifier and without the MLM head: a fresh encoder from
    ``key``, or ``params`` (a warm start, e.g. MLM pre-trained) given a new classifier unless
    it has one."""
    k_enc, k_clf = jax.random.split(key)
    params = dict(encoder.init(encoder_cfg, k_enc) if params is None else params)
    params.pop("mlm", None)
    if "classifier" not in params:
        params["classifier"] = encoder.init_classifier(encoder_cfg, k_clf, num_labels)
    return params


def train_tagger(workdir: str | Path, examples: Sequence, *, encoder_cfg: encoder.EncoderConfig,
                 cfg: TaggingConfig, optim: OptimConfig, mesh, init_params: dict | None = None,
                 evaluate: Callable[[dict, int], dict] | None = None, tokenize: Callable = byte_tokens,
                 progress: bool = True) -> FitResult:
    """Fine-tunes the encoder as a BIO tagger of ``cfg.fields`` on ``examples`` in ``workdir``
    (resumable: run again to continue). ``init_params``: encoder params to start from (None: a
    fresh encoder; :func:`init_tagger`). ``tokenize``: text -> (ids, character offsets)."""
    if len(examples) == 0:
        raise ValueError("the tagger needs at least one example")
    labels = cfg.label_names
    rows = tagging_rows(examples, labels, cfg.seq_len, tokenize=tokenize)
    if rows["tokens"].max() >= encoder_cfg.vocab_size:
        raise ValueError(f"token id {int(rows['tokens'].max())} is outside the encoder's vocab_size="
                         f"{encoder_cfg.vocab_size}")
    per_process = cfg.batch_size // jax.process_count()
    init = functools.partial(init_tagger, encoder_cfg, num_labels=len(labels), params=init_params)
    return fit(workdir, name="tagger", loop=cfg.loop, optim=optim, mesh=mesh, init_params=init,
               param_axes=encoder.param_axes,
               loss_sums_fn=functools.partial(tagging_loss_sums, encoder_cfg=encoder_cfg),
               source=ShuffledRows(rows, per_process, cfg.loop.seed), evaluate=evaluate, progress=progress)


@functools.partial(jax.jit, static_argnums=2)
def _predict(params, rows, encoder_cfg):
    h_BTD = encoder.encode(params, rows["tokens"], encoder_cfg, segment_ids_BT=rows["segment_ids"])
    return jnp.argmax(encoder.token_logits(params, h_BTD, encoder_cfg), axis=-1)


def predict_labels(params: dict, rows: dict, encoder_cfg: encoder.EncoderConfig, *, batch_size: int = 16,
                   progress: bool = False) -> np.ndarray:
    """argmax label ids [N, T] of padded rows (:func:`tagging_rows`), ``batch_size`` rows per
    call (the last call filled with copies of row 0, so one compiled shape serves all)."""
    N = len(rows["tokens"])
    out = []
    for start in tqdm(range(0, N, batch_size), desc="tag", unit="batch", disable=not progress):
        chunk = {k: rows[k][start:start + batch_size] for k in ("tokens", "segment_ids")}
        k = len(chunk["tokens"])
        if k < batch_size:
            chunk = {n: np.concatenate([v, np.repeat(v[:1], batch_size - k, 0)]) for n, v in chunk.items()}
        out.append(np.asarray(_predict(params, chunk, encoder_cfg))[:k])
    return np.concatenate(out) if out else np.zeros((0, rows["tokens"].shape[1]), np.int32)


def extract_records(params: dict, documents: Sequence, encoder_cfg: encoder.EncoderConfig, cfg: TaggingConfig,
                    *, fields_of: Callable[[Any], Sequence[str]] | None = None, tokenize: Callable = byte_tokens,
                    batch_size: int = 16, progress: bool = False) -> list[dict]:
    """The record each document's predicted tags decode to (``bio_record``), with the keys
    ``fields_of(document)`` (default: its ``record``'s keys, the asked fields, as a decoder is
    asked for them; fields the tagger does not know are None)."""
    rows = tagging_rows(documents, cfg.label_names, cfg.seq_len, tokenize=tokenize)
    pred_NT = predict_labels(params, rows, encoder_cfg, batch_size=batch_size, progress=progress)
    names = cfg.label_names
    records = []
    for doc, pred_T in zip(documents, pred_NT):
        text, _ = _text_spans(doc)
        _, offsets = tokenize(text)
        keys = fields_of(doc) if fields_of is not None else list(doc.record)
        records.append(bio_record([names[i] for i in pred_T[:len(offsets)]], offsets, text, fields=keys))
    return records
