"""Grain pipelines: packed next-token batches from a prepared text corpus.

A record (one chunk of text, UTF-8 bytes ``b_1 .. b_n``) becomes two aligned sequences

    inputs_T  = [BOS, b_1, ..., b_n]
    targets_T = [b_1, ..., b_n, EOS]

so every (input, target) pair sits in one column. Records are packed with grain's
``ConcatThenSplitIterDataset``: the token stream is concatenated and cut into rows of exactly
``seq_len``; both features are cut at the same column, so packing never separates an input
from its target. A batch is a dict of numpy arrays, each [B, T] = [batch_size, seq_len]:

    inputs       int32    token ids, PAD (256) where segment_ids == 0
    targets      int32    next-token ids, PAD where segment_ids == 0
    segment_ids  int32    1, 2, ... numbers the pieces of records within a row; 0 = padding
    positions    int32    position within the piece (0 at its first token)
    mask         float32  1.0 where a target is predicted (segment_ids > 0), else 0.0

Positions (checked against grain 0.2.18, see tests): when a record does not fit in the rest of a
row it is split, and its remainder starts the next row as segment 1 with positions restarting
at 0 and no BOS (``inputs[b, 0] != BOS`` marks such a continuation). With attention masked
per segment, a model sees the continuation as a document without its beginning, and its
positions agree with what it can attend to. A segment that starts past column 0 always starts
a record, with BOS at position 0. Every record contributes len(bytes) + 1 targets; one pass has
ceil(tokens / seq_len) rows (:func:`batches_per_epoch`).

Order: the records of this process's shard (``source[shard_index::shard_count]``) are shuffled
with ``seed`` (a new permutation each epoch: grain folds the epoch into the seed), repeated
forever when ``repeat``, tokenized, packed and batched. With ``repeat=False`` (evaluation) the
dataset is finite and deterministic: every record appears exactly once, the last row is padded,
and the last batch is filled up with all-padding rows (mask 0), so no token is dropped and every
batch has the exact shape. (On several hosts, shards may then yield different numbers of
batches.)

Iterator state: ``iter(ds).get_state()`` is plain JSON data (dicts, lists, ints) and
``set_state`` restores it exactly, so it can be saved with orbax ``JsonSave`` or grain's
``CheckpointHandler``. grain's packer keeps tuples in its state, which a JSON round trip would
turn into lists that its ``set_state`` misreads; :class:`JsonStateIterDataset` converts both ways.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grain
import numpy as np

from jaxlab.data.corpus import DataError, check_split_args
from jaxlab.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

SPLITS = ("train", "validation")
DATA_DIR_ENV = "JAXLAB_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/jaxlab/tensorflow_datasets"
BATCH_KEYS = ("inputs", "targets", "segment_ids", "positions", "mask")


def default_read_options() -> grain.ReadOptions:
    """Threads reading and tokenizing records ahead of the packer: up to 4 threads, 128 records.
    (grain's default, 16 threads x 500 records, makes every ``iter``/``set_state`` cost ~0.3 s
    for no gain: tokenizing bytes is cheap.)"""
    return grain.ReadOptions(num_threads=min(4, os.cpu_count() or 1), prefetch_buffer_size=128)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the corpus comes from and how it is split and ordered.

    path: a UTF-8 text file or folder; None = Python's pydoc topics (the embedded corpus).
    data_dir: where prepared array_record files live; None = ``$JAXLAB_DATA_DIR`` or
        ``~/.cache/jaxlab/tensorflow_datasets``.
    chunk_bytes: maximum record size in UTF-8 bytes (chunks end at paragraph boundaries).
    val_percent: percent of chunks (by hash) that form the validation split, in (0, 100).
    shuffle: shuffle records (per process shard, a new order each epoch).
    seed: shuffle seed in [0, 2**32).
    """

    path: str | None = None
    data_dir: str | None = None
    chunk_bytes: int = 2048
    val_percent: float = 5.0
    shuffle: bool = True
    seed: int = 0

    def __post_init__(self):
        for name in ("path", "data_dir"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise DataError(f"data.{name} must be None or a non-empty path string, got {value!r}")
        try:
            check_split_args(self.chunk_bytes, self.val_percent)
        except DataError as e:
            raise DataError(f"data.{e}") from None
        if not isinstance(self.shuffle, bool):
            raise DataError(f"data.shuffle must be a bool, got {self.shuffle!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise DataError(f"data.seed must be an int in [0, 2**32), got {self.seed!r}")


def resolve_data_dir(data_dir: str | None) -> Path:
    """``data_dir``, else ``$JAXLAB_DATA_DIR``, else ``~/.cache/jaxlab/tensorflow_datasets``."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()


def tokenize_record(record: Mapping[str, Any], tokenizer=None) -> dict[str, np.ndarray]:
    """``{"text": bytes | str}`` -> ``inputs_T = [BOS] + bytes``, ``targets_T = bytes + [EOS]``
    (int32, equal lengths n + 1). With a ``tokenizer`` (``encode(text, bos=, eos=)``, e.g. a
    Hugging Face tokenizer from ``jaxlab.interop.hf.load_tokenizer``) the text's ids take the
    place of the bytes, with BOS only if the tokenizer has one."""
    text = record["text"]
    if tokenizer is not None:
        text = text if isinstance(text, str) else bytes(text).decode("utf-8", errors="replace")
        ids_T = tokenizer.encode(text, bos=tokenizer.bos_id is not None, eos=True)
        return {"inputs": ids_T[:-1], "targets": ids_T[1:]}
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    bytes_T = np.frombuffer(data, dtype=np.uint8).astype(np.int32)
    inputs_T = np.concatenate([np.array([BOS_ID], np.int32), bytes_T])
    targets_T = np.concatenate([bytes_T, np.array([EOS_ID], np.int32)])
    return {"inputs": inputs_T, "targets": targets_T}


def finish_packed_row(row: Mapping[str, np.ndarray], pad_id: int = PAD_ID) -> dict[str, np.ndarray]:
    """A ConcatThenSplit row (``inputs``, ``inputs_segment_ids``, ``inputs_positions``,
    ``targets``, ...) -> the batch keys of the module docstring, ``pad_id`` where
    segment_ids == 0."""
    segment_ids_T = np.asarray(row["inputs_segment_ids"], np.int32)
    real_T = segment_ids_T > 0
    return {
        "inputs": np.where(real_T, row["inputs"], pad_id).astype(np.int32),
        "targets": np.where(real_T, row["targets"], pad_id).astype(np.int32),
        "segment_ids": segment_ids_T,
        "positions": np.where(real_T, row["inputs_positions"], 0).astype(np.int32),
        "mask": real_T.astype(np.float32),
    }


def pad_batch(batch: Mapping[str, np.ndarray], batch_size: int, pad_id: int = PAD_ID) -> dict[str, np.ndarray]:
    """Appends all-padding rows (inputs/targets ``pad_id``, everything else 0) up to
    ``batch_size``."""
    missing = batch_size - len(batch["inputs"])
    if missing <= 0:
        return dict(batch)
    out = {}
    for key, value_BT in batch.items():
        fill = pad_id if key in ("inputs", "targets") else 0
        pad_BT = np.full((missing, *value_BT.shape[1:]), fill, dtype=value_BT.dtype)
        out[key] = np.concatenate([value_BT, pad_BT])
    return out


# ---------------------------------------------------------------- JSON-safe iterator state

_TUPLE_KEYS = ("remainder_slices",)  # grain ConcatThenSplit: {feature: (start, stop)}


def state_to_json(state: Any) -> Any:
    """``state`` with tuples as lists and numpy scalars as Python numbers (JSON data)."""
    if isinstance(state, Mapping):
        return {str(k): state_to_json(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return [state_to_json(v) for v in state]
    if isinstance(state, np.generic):
        return state.item()
    return state


def state_from_json(state: Any, *, _in_tuple_key: bool = False) -> Any:
    """Inverse of :func:`state_to_json` for grain's states: the values under ``remainder_slices``
    become tuples again (grain compares them with ``(-1, -1)``)."""
    if isinstance(state, Mapping):
        return {k: (({f: tuple(s) for f, s in v.items()} if isinstance(v, Mapping) else v)
                    if k in _TUPLE_KEYS else state_from_json(v))
                for k, v in state.items()}
    if isinstance(state, list):
        return [state_from_json(v) for v in state]
    return state


class _JsonStateIterator(grain.DatasetIterator):
    def __next__(self):
        return next(self._parent)

    def get_state(self) -> dict[str, Any]:
        return state_to_json(self._parent.get_state())

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state_from_json(state))


class JsonStateIterDataset(grain.IterDataset):
    """The parent's elements unchanged; its iterator's state is JSON data both ways."""

    def __iter__(self) -> grain.DatasetIterator:
        return _JsonStateIterator(self._parent.__iter__())

    def __str__(self) -> str:
        return "JsonStateIterDataset"


# ---------------------------------------------------------------- datasets


def check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{name} must be an int >= 1, got {value!r}")


def shard_records(source: Sequence[Mapping[str, Any]], *, shuffle: bool, seed: int,
                  shard_index: int, shard_count: int, repeat: bool, name: str) -> grain.MapDataset:
    """This process's records of ``source``: every ``shard_count``-th from ``shard_index``,
    shuffled (a new order each epoch) and repeated as asked. Empty sources and shards are
    errors naming ``name``."""
    check_positive("shard_count", shard_count)
    if isinstance(shard_index, bool) or not isinstance(shard_index, int) \
            or not 0 <= shard_index < shard_count:
        raise DataError(f"shard_index must be an int in [0, {shard_count}), got {shard_index!r}")
    records = grain.MapDataset.source(source)
    if len(records) == 0:
        raise DataError(f"{name} is empty (0 records)")
    records = records[shard_index::shard_count]
    if len(records) == 0:
        raise DataError(f"shard {shard_index} of {shard_count} of {name} is empty: "
                        f"{len(source)} records for {shard_count} shards")
    if shuffle:
        records = records.shuffle(seed=seed)
    return records.repeat() if repeat else records


def packed_lm_dataset(source: Sequence[Mapping[str, Any]], *, seq_len: int, batch_size: int,
                      shuffle: bool = True, seed: int = 0, shard_index: int = 0,
                      shard_count: int = 1, repeat: bool = True,
                      name: str = "data source",
                      read_options: grain.ReadOptions | None = None,
                      tokenizer=None) -> grain.IterDataset:
    """Packed LM batches (module docstring) from any random-access ``source`` of
    ``{"text": bytes | str}`` records (a tfds data source, or a plain list).
    ``read_options`` default: :func:`default_read_options`; ``tokenizer``: see
    :func:`tokenize_record` (default: bytes)."""
    check_positive("seq_len", seq_len)
    check_positive("batch_size", batch_size)
    records = shard_records(source, shuffle=shuffle, seed=seed, shard_index=shard_index,
                            shard_count=shard_count, repeat=repeat, name=name)
    rows = grain.experimental.ConcatThenSplitIterDataset(
        records.map(functools.partial(tokenize_record, tokenizer=tokenizer))
        .to_iter_dataset(read_options or default_read_options()),
        length_struct={"inputs": seq_len, "targets": seq_len},
    ).map(finish_packed_row)
    batches = rows.batch(batch_size, drop_remainder=repeat)
    if not repeat:
        batches = batches.map(functools.partial(pad_batch, batch_size=batch_size))
    return JsonStateIterDataset(batches)


def open_split(cfg: DataConfig, split: str) -> Sequence[Mapping[str, bytes]]:
    """The random-access records ``{"text": bytes}`` of ``split``, preparing them if needed."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    from jaxlab.data.tfds_text import prepare  # tfds is only needed once data is opened

    data_dir = resolve_data_dir(cfg.data_dir)
    return prepare(cfg.path, data_dir, chunk_bytes=cfg.chunk_bytes, val_percent=cfg.val_percent)[split]


def lm_dataset(cfg: DataConfig, split: str, *, seq_len: int, batch_size: int,
               shard_index: int = 0, shard_count: int = 1, repeat: bool = True,
               tokenizer=None) -> grain.IterDataset:
    """Packed next-token batches of ``split`` ("train" or "validation") of the corpus of
    ``cfg``, for process ``shard_index`` of ``shard_count``; see the module docstring.

    Each element is ``{inputs, targets, segment_ids, positions, mask}``, each [batch_size,
    seq_len]. Infinite when ``repeat``; one padded pass over the shard otherwise.
    """
    check_positive("seq_len", seq_len)
    check_positive("batch_size", batch_size)
    corpus = cfg.path or "the default pydoc corpus"
    return packed_lm_dataset(
        open_split(cfg, split), seq_len=seq_len, batch_size=batch_size, shuffle=cfg.shuffle,
        seed=cfg.seed, shard_index=shard_index, shard_count=shard_count, repeat=repeat,
        name=f"the {split} split of {corpus}", tokenizer=tokenizer,
    )


def tokens_per_epoch(source: Sequence[Mapping[str, Any]]) -> int:
    """Number of target tokens in one pass over ``source``: sum of (bytes + 1) per record."""
    return sum(len(tokenize_record(source[i])["targets"]) for i in range(len(source)))


def batches_per_epoch(source: Sequence[Mapping[str, Any]], *, seq_len: int, batch_size: int) -> int:
    """Batches of one ``repeat=False`` pass: ceil(ceil(tokens / seq_len) / batch_size)."""
    return math.ceil(math.ceil(tokens_per_epoch(source) / seq_len) / batch_size)
