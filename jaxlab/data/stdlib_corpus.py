"""The Python standard library's own source as a corpus, split into train and validation by file.

Every Python ships its standard library as ``.py`` files (about 31 MB in 1,790 files on
CPython 3.11), so this corpus needs no download. The split is by whole file, so a validation
document is a complete module the model never saw a byte of:

    file ``name`` (its path relative to the library root, POSIX form) is validation
        iff  crc32(f"{name}:0") % 10000 < val_percent * 100      (corpus.is_validation)

deterministic, with no RNG state, and a file never changes side when others are added.
:func:`prepare_train_folder` copies the train files into a folder that the ordinary data
pipeline (``DataConfig(path=...)``, :mod:`jaxlab.data.pipeline`) chunks, prepares and packs;
the validation files are read directly (:func:`read_bytes`) by evaluations that need whole
documents.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from jaxlab.data.corpus import DataError, check_split_args, is_validation

EXCLUDED_DIRS = ("site-packages", "dist-packages", "__pycache__")


def stdlib_root() -> Path:
    """The folder of this Python's standard library: ``sys.base_prefix/lib/pythonX.Y``."""
    v = sys.version_info
    return Path(sys.base_prefix) / "lib" / f"python{v.major}.{v.minor}"


def source_files(root: str | os.PathLike) -> list[str]:
    """The ``.py`` files under ``root`` as sorted POSIX paths relative to it, leaving out
    installed packages (``site-packages``, ``dist-packages``), ``__pycache__`` and hidden
    files or folders. Raises :class:`DataError` when there are none."""
    root = Path(root)
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS and not d.startswith("."))
        for f in filenames:
            if f.endswith(".py") and not f.startswith("."):
                names.append((Path(dirpath) / f).relative_to(root).as_posix())
    if not names:
        raise DataError(f"no .py files under {str(root)!r}")
    return sorted(names)


def split_files(names: list[str], val_percent: float) -> tuple[list[str], list[str]]:
    """``(train, validation)``: ``name`` is validation iff ``is_validation(name, 0, val_percent)``
    (crc32 of ``f"{name}:0"``, see the module docstring); order is kept within each side."""
    check_split_args(4, val_percent)
    train, validation = [], []
    for name in names:
        (validation if is_validation(name, 0, val_percent) else train).append(name)
    return train, validation


def read_bytes(root: str | os.PathLike, name: str) -> bytes | None:
    """The bytes of file ``name`` under ``root``, or None when it is not UTF-8 text (the
    pipeline skips such files too, so train and evaluation see the same kind of text)."""
    data = (Path(root) / name).read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if b"\x00" in data else data


def prepare_train_folder(root: str | os.PathLike, names: list[str], dest: str | os.PathLike) -> Path:
    """A folder holding copies of ``root/name`` for every ``name`` (relative paths kept), made
    once: an existing ``dest`` is reused as it is. It is written under a temporary name and
    renamed, so a crash never leaves a half-copied folder that looks finished, and two
    processes racing both end with one complete folder."""
    dest = Path(dest)
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".incomplete-", dir=dest.parent))
    try:
        for name in names:
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(root) / name, target)
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.is_dir():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
