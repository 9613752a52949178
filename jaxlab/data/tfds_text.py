"""A tensorflow-datasets builder that writes a text corpus as ``array_record`` files.

No TensorFlow is needed: tfds 4.9 writes ``array_record`` with only ``array_record`` and
``importlib_resources`` installed, and its data sources give random access for grain. The
builder must live in an importable module (tfds resolves builders by module), hence this file.

Layout: ``{data_dir}/jaxlab_text/{config name}/1.0.0/jaxlab_text-{split}.array_record-*``, one
record ``{"text": bytes}`` per chunk of :func:`jaxlab.data.corpus.split_chunks`, in corpus order
(shuffling is the pipeline's job, so tfds' own key-hash shuffle is disabled).

Config names: ``"pydoc"`` for the default corpus with the default chunking, ``"pydoc-<hash>"``
for other chunk_bytes/val_percent, and ``"<file name>-<hash>"`` for a user path, where the
hash covers the resolved path, every file's relative path, size and mtime, chunk_bytes,
val_percent and the builder version: a changed corpus gets a new name and is prepared again.
(The pydoc corpus is Python's own: a data_dir shared by two Python versions reuses the first.)

Concurrency: several processes (e.g. the hosts of one job sharing a disk, or parallel tests)
may call :func:`prepare` on the same data_dir at once. Preparation runs under an exclusive
``fcntl.flock`` on ``{data_dir}/jaxlab_text/{config name}.lock``; the first process prepares,
the others wait and then reuse its files. tfds itself writes into a temporary
``*.incomplete*`` folder and renames it when complete, so a crash never leaves a half-written
dataset that looks finished. flock serialises processes on one machine; on a network file
system lock support varies, so for multi-host jobs prepare once (e.g. on process 0) first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds
from absl import logging as absl_logging

from jaxlab.data.corpus import (
    DataError,
    check_split_args,
    default_documents,
    list_files,
    read_documents,
    split_chunks,
)

log = logging.getLogger(__name__)

BUILDER_VERSION = "1.0.0"
DEFAULT_CHUNK_BYTES = 2048
DEFAULT_VAL_PERCENT = 5.0
SPLITS = ("train", "validation")


@dataclasses.dataclass(eq=False)
class TextCorpusConfig(tfds.core.BuilderConfig):
    """A corpus source (None = Python's pydoc topics, or a resolved file/folder path) and how it
    is chunked and split (see :func:`jaxlab.data.corpus.split_chunks`)."""

    source: str | None = None
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    val_percent: float = DEFAULT_VAL_PERCENT


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def config_name(source: str | None, *, chunk_bytes: int, val_percent: float) -> str:
    """The builder config name (and folder) of a corpus; see the module docstring."""
    params = {"chunk_bytes": int(chunk_bytes), "val_percent": float(val_percent), "version": BUILDER_VERSION}
    if source is None:
        if (chunk_bytes, float(val_percent)) == (DEFAULT_CHUNK_BYTES, DEFAULT_VAL_PERCENT):
            return "pydoc"
        return f"pydoc-{_digest(params)}"
    root = Path(source).expanduser().resolve()
    files = []
    for file in list_files(root):
        stat = file.stat()
        relative = file.name if file == root else file.relative_to(root).as_posix()
        files.append([relative, stat.st_size, stat.st_mtime_ns])
    slug = re.sub(r"[^A-Za-z0-9]+", "_", root.name).strip("_")[:40] or "corpus"
    return f"{slug}-{_digest({**params, 'source': str(root), 'files': files})}"


def make_config(source: str | os.PathLike | None, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                val_percent: float = DEFAULT_VAL_PERCENT) -> TextCorpusConfig:
    """The :class:`TextCorpusConfig` of ``source`` (a path is resolved to an absolute one)."""
    check_split_args(chunk_bytes, val_percent)
    resolved = None if source is None else str(Path(source).expanduser().resolve())
    name = config_name(resolved, chunk_bytes=chunk_bytes, val_percent=val_percent)
    return TextCorpusConfig(
        name=name,
        version=BUILDER_VERSION,
        description=f"corpus={resolved or 'pydoc_data.topics'} chunk_bytes={chunk_bytes} "
                    f"val_percent={val_percent}",
        source=resolved,
        chunk_bytes=int(chunk_bytes),
        val_percent=float(val_percent),
    )


class JaxlabText(tfds.core.GeneratorBasedBuilder):
    """Chunks of a text corpus, one ``{"text": str}`` example per chunk, splits train/validation."""

    VERSION = tfds.core.Version(BUILDER_VERSION)
    RELEASE_NOTES = {"1.0.0": "Paragraph-aligned chunks, crc32 train/validation split."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Chunks of a text corpus for byte-level language modelling.",
            features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        cfg: TextCorpusConfig = self.builder_config
        documents = default_documents() if cfg.source is None else read_documents(cfg.source)
        train, validation = split_chunks(documents, chunk_bytes=cfg.chunk_bytes, val_percent=cfg.val_percent)
        return {"train": self._generate_examples(train), "validation": self._generate_examples(validation)}

    def _generate_examples(self, chunks: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
        for index, chunk in enumerate(chunks):
            yield index, {"text": chunk}


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` body."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            log.info("waiting for another process preparing %s", path.with_suffix(""))
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def quiet_absl() -> Iterator[None]:
    """absl (tfds' logger) at ERROR for the body: hides "Using custom data configuration"."""
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(verbosity)


def prepare(source: str | os.PathLike | None, data_dir: str | os.PathLike, *,
            chunk_bytes: int = DEFAULT_CHUNK_BYTES,
            val_percent: float = DEFAULT_VAL_PERCENT) -> dict[str, Any]:
    """Prepares (once) and opens the corpus ``source`` under ``data_dir``.

    Returns ``{"train": data_source, "validation": data_source}``: random-access sequences
    whose items are ``{"text": bytes}`` (UTF-8), ready for ``grain.MapDataset.source``.
    A prepared config is reused; preparation is serialised by a file lock (module docstring).
    Raises :class:`DataError` for a bad corpus or split arguments.
    """
    config = make_config(source, chunk_bytes=chunk_bytes, val_percent=val_percent)
    root = Path(data_dir).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"data_dir {str(root)!r} cannot be created: {e}") from e
    tfds.disable_progress_bar()
    with file_lock(root / JaxlabText.name / f"{config.name}.lock"), quiet_absl():
        builder = JaxlabText(config=config, data_dir=str(root))
        builder.download_and_prepare(file_format="array_record")
    sources = builder.as_data_source()
    return {split: sources[split] for split in SPLITS}
