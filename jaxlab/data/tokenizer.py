"""Byte-level tokenizer: UTF-8 bytes are the tokens, plus three special ids.

    id 0..255   the raw UTF-8 byte with that value
    id 256      PAD  (padding; never a target)
    id 257      BOS  (begins every document in the packed inputs)
    id 258      EOS  (ends every document in the packed targets)

``vocab_size = 259``. Any text round-trips exactly: ``decode(encode(s)) == s``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import ClassVar

import numpy as np

PAD_ID = 256
BOS_ID = 257
EOS_ID = 258
NUM_BYTES = 256
VOCAB_SIZE = 259


@dataclasses.dataclass(frozen=True)
class ByteTokenizer:
    """Stateless byte tokenizer (hashable, so it may live in a config)."""

    pad_id: ClassVar[int] = PAD_ID
    bos_id: ClassVar[int] = BOS_ID
    eos_id: ClassVar[int] = EOS_ID
    vocab_size: ClassVar[int] = VOCAB_SIZE

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> np.ndarray:
        """``[BOS]? + list(text.encode("utf-8")) + [EOS]?`` as an int32 array of shape [T]."""
        body_T = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)
        parts = ([np.array([self.bos_id], np.int32)] if bos else []) + [body_T]
        if eos:
            parts.append(np.array([self.eos_id], np.int32))
        return np.concatenate(parts)

    def decode(self, ids: Iterable[int] | np.ndarray, *, stop_at_eos: bool = False) -> str:
        """The text of the byte ids in ``ids``; ids >= 256 (PAD, BOS, EOS, or ids of a padded
        model vocabulary) are dropped, invalid UTF-8 becomes U+FFFD (``errors="replace"``).

        With ``stop_at_eos=True`` everything from the first EOS on is ignored.
        """
        ids_T = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids_T.size and ids_T.min() < 0:
            raise ValueError(f"token ids must be >= 0, got {int(ids_T.min())}")
        if stop_at_eos:
            eos_at = np.flatnonzero(ids_T == self.eos_id)
            if eos_at.size:
                ids_T = ids_T[: eos_at[0]]
        bytes_T = ids_T[ids_T < NUM_BYTES].astype(np.uint8)
        return bytes_T.tobytes().decode("utf-8", errors="replace")
