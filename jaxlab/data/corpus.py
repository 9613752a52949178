"""Text corpora: the embedded default, a user's file or folder, and the train/validation split.

A corpus is a list of ``(name, text)`` documents. :func:`split_chunks` cuts every document into
chunks of at most ``chunk_bytes`` UTF-8 bytes (at paragraph, then line, then character
boundaries) and assigns each chunk to train or validation by a hash of ``(name, index)``, so the
split is deterministic, needs no RNG state, and a chunk never changes side when other documents
are added. The chunks of a document concatenate back to the document exactly.
"""

from __future__ import annotations

import os
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

Document = tuple[str, str]

MIN_CHUNK_BYTES = 4  # the longest UTF-8 character, so every chunk can hold one


class DataError(ValueError):
    """A corpus, split or data pipeline that cannot be used, with the reason and the path."""


def default_documents() -> list[Document]:
    """The English documentation shipped with Python (``pydoc_data.topics.topics``), as
    ``(topic, text)`` pairs sorted by topic: 79 topics, about 465 KB of prose on Python 3.11.
    """
    from pydoc_data.topics import topics

    return sorted(topics.items())


def sample_token_rows(tokenizer, n_rows: int, seq_len: int, seed: int) -> "np.ndarray":
    """[n_rows, seq_len] int32 windows of the embedded documentation (the topics of
    :func:`default_documents` joined by blank lines, then tokenized), at distinct start tokens
    drawn by ``seed``: the held-out text the analysis experiments measure a model on."""
    import numpy as np

    ids = np.asarray(tokenizer.encode("\n\n".join(text for _, text in default_documents())), np.int32)
    if n_rows < 1 or seq_len < 1 or len(ids) - seq_len < n_rows:
        raise DataError(f"cannot draw {n_rows} distinct rows of {seq_len} tokens from {len(ids)} tokens")
    starts = np.random.default_rng(seed).choice(len(ids) - seq_len, size=n_rows, replace=False)
    return np.stack([ids[s:s + seq_len] for s in starts])


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def list_files(path: str | os.PathLike) -> list[Path]:
    """The corpus files at ``path``: ``[path]`` for a file; for a folder every regular file under
    it (recursively, symlinked folders not followed), hidden files and folders (a name starting
    with ".") skipped, sorted by relative path. Raises :class:`DataError` naming ``path`` when it
    does not exist, cannot be listed or (a folder) holds no files.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"corpus path {str(root)!r} does not exist")
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError(f"corpus path {str(root)!r} is neither a regular file nor a folder")
    errors: list[OSError] = []
    files = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            file = Path(dirpath) / name
            if not name.startswith(".") and file.is_file():
                files.append(file)
    if errors and not files:
        raise DataError(f"corpus folder {str(root)!r} cannot be read: {errors[0]}")
    if not files:
        raise DataError(f"corpus folder {str(root)!r} contains no (non-hidden) files")
    if errors:
        warnings.warn(f"corpus folder {str(root)!r}: skipped what could not be listed: {errors[0]}")
    return sorted(files, key=lambda f: f.relative_to(root).as_posix())


def _read_text(file: Path) -> str | None:
    """The UTF-8 text of ``file``, or None when it is not text (invalid UTF-8 or NUL bytes)."""
    try:
        data = file.read_bytes()
    except OSError as e:
        raise DataError(f"corpus file {str(file)!r} cannot be read: {e}") from e
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def read_documents(path: str | os.PathLike) -> list[Document]:
    """The documents of a user corpus: a UTF-8 text file, or a folder of them (see
    :func:`list_files`). A document's name is its path relative to the folder (its file name for
    a single file). Files that are not UTF-8 text are skipped with one warning listing them.

    Raises :class:`DataError` naming ``path`` if it does not exist, cannot be read, has no
    readable text file, or holds no non-whitespace text.
    """
    root = Path(path).expanduser()
    files = list_files(root)
    documents, skipped = [], []
    for file in files:
        text = _read_text(file)
        name = file.name if file == root else file.relative_to(root).as_posix()
        if text is None:
            skipped.append(name)
        elif text:
            documents.append((name, text))
    if skipped and root.is_file():
        raise DataError(f"corpus file {str(root)!r} is not UTF-8 text")
    if skipped and len(skipped) == len(files):
        raise DataError(
            f"corpus folder {str(root)!r} has no UTF-8 text file "
            f"({len(skipped)} binary or non-UTF-8 files, e.g. {skipped[0]!r})"
        )
    if skipped:
        shown = ", ".join(repr(s) for s in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        warnings.warn(
            f"corpus {str(root)!r}: skipped {len(skipped)} file(s) that are not UTF-8 text: {shown}",
            stacklevel=2,
        )
    if not any(text.strip() for _, text in documents):
        raise DataError(f"corpus {str(root)!r} is empty (no non-whitespace text)")
    return documents


def _split_keep(text: str, sep: str) -> list[str]:
    """``text`` split after every ``sep`` (kept), dropping empty pieces: ``"".join`` restores it."""
    parts = text.split(sep)
    return [p for p in [q + sep for q in parts[:-1]] + parts[-1:] if p]


def _utf8_pieces(text: str, limit: int) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` UTF-8 bytes, never inside a character
    (a cut moves back while the byte at the cut is a continuation byte ``0b10xxxxxx``)."""
    data = text.encode("utf-8")
    pieces, start = [], 0
    while len(data) - start > limit:
        cut = start + limit
        while data[cut] & 0xC0 == 0x80:
            cut -= 1
        pieces.append(data[start:cut].decode("utf-8"))
        start = cut
    pieces.append(data[start:].decode("utf-8"))
    return pieces


def _pieces(text: str, chunk_bytes: int) -> Iterator[tuple[str, int]]:
    """Atomic pieces of ``text`` with their byte sizes, each <= ``chunk_bytes``: paragraphs
    (ending in "\\n\\n"); a longer paragraph gives its lines; a longer line gives UTF-8 cuts."""
    for paragraph in _split_keep(text, "\n\n"):
        size = len(paragraph.encode("utf-8"))
        if size <= chunk_bytes:
            yield paragraph, size
            continue
        for line in _split_keep(paragraph, "\n"):
            for piece in _utf8_pieces(line, chunk_bytes):
                yield piece, len(piece.encode("utf-8"))


def chunk_document(text: str, chunk_bytes: int) -> list[str]:
    """``text`` as consecutive chunks of at most ``chunk_bytes`` UTF-8 bytes: pieces (see
    :func:`_pieces`) are packed greedily, a chunk closing when the next piece would overflow it.
    ``"".join(chunk_document(text, n)) == text``."""
    chunks, current, size = [], [], 0
    for piece, piece_size in _pieces(text, chunk_bytes):
        if current and size + piece_size > chunk_bytes:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(piece)
        size += piece_size
    if current:
        chunks.append("".join(current))
    return chunks


def is_validation(doc_name: str, chunk_index: int, val_percent: float) -> bool:
    """``crc32(f"{doc_name}:{chunk_index}") % 10000 < val_percent * 100``."""
    return zlib.crc32(f"{doc_name}:{chunk_index}".encode("utf-8")) % 10000 < val_percent * 100


def check_split_args(chunk_bytes: int, val_percent: float) -> None:
    """Raises :class:`DataError` unless ``chunk_bytes >= 4`` and ``0 < val_percent < 100``."""
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < MIN_CHUNK_BYTES:
        raise DataError(f"chunk_bytes must be an int >= {MIN_CHUNK_BYTES}, got {chunk_bytes!r}")
    if not isinstance(val_percent, (int, float)) or not 0 < val_percent < 100:
        raise DataError(f"val_percent must be a number in (0, 100), got {val_percent!r}")


def split_chunks(
    documents: Sequence[Document], *, chunk_bytes: int = 2048, val_percent: float = 5.0
) -> tuple[list[str], list[str]]:
    """``(train, validation)`` chunks: every document is cut by :func:`chunk_document` and chunk
    ``i`` of document ``name`` goes to validation iff :func:`is_validation`. Chunks keep corpus
    order within each split. Raises :class:`DataError` if either split is empty."""
    check_split_args(chunk_bytes, val_percent)
    train, validation = [], []
    for name, text in documents:
        for index, chunk in enumerate(chunk_document(text, chunk_bytes)):
            (validation if is_validation(name, index, val_percent) else train).append(chunk)
    for split, chunks in (("train", train), ("validation", validation)):
        if not chunks:
            raise DataError(
                f"the {split} split is empty ({len(train)} train / {len(validation)} validation "
                f"chunks with chunk_bytes={chunk_bytes}, val_percent={val_percent}); use a smaller "
                "chunk_bytes (more chunks) or a different val_percent, or a larger corpus"
            )
    return train, validation
