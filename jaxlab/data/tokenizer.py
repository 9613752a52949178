"""Tokenizers: the protocol every post-training function takes, chat templates, and the byte
tokenizer (UTF-8 bytes are the tokens, plus three special ids).

The protocol (:class:`Tokenizer`; implementations: :class:`ByteTokenizer` here and
:class:`jaxlab.interop.tokenizer.HFTokenizer`, from a tokenizer.json or rebuilt from GGUF
metadata):

    vocab_size     int          ids are in [0, vocab_size) (a model's vocabulary may be larger)
    bos_id         int | None   begin-of-sequence id
    eos_id         int | None   the id a trained response ends with (``eos_ids[0]``)
    eos_ids        tuple[int]   every id that stops generation
    pad_id         int          fills rows past their end (never a target)
    add_bos        bool         the model's sequences begin with BOS
    chat_template  ChatTemplate how messages are laid out (:class:`ChatTemplate`)
    encode(text, *, bos=False, eos=False) -> int32 [T]
    decode(ids, *, stop_at_eos=False) -> str   (special ids dropped)

Byte tokenizer ids:

    id 0..255   the raw UTF-8 byte with that value
    id 256      PAD  (padding; never a target)
    id 257      BOS  (begins every document in the packed inputs)
    id 258      EOS  (ends every document in the packed targets)

``vocab_size = 259``. Any text round-trips exactly: ``decode(encode(s)) == s``.

Chat templates. A :class:`ChatTemplate` describes a conversation as text pieces around each
message; :func:`jaxlab.data.chat.render_messages` (the one place that renders) turns it into
(ids, trained) pieces. Two are known:

    "plain"   (bytes, and any tokenizer without a template)
              system / user:  "System: " / "User: " + content + "\\n"
              assistant:      "Assistant: " + content + [EOS id]
              generation prompt "Assistant: "; a text prompt is used as it is (no header)
    "chatml"  (a Jinja template containing ``<|im_start|>``, e.g. SmolLM2)
              every role:     "<|im_start|>" + role + "\\n" + content + "<|im_end|>" + "\\n"
              generation prompt "<|im_start|>assistant\\n"; a text prompt becomes one user
              message; a default system message is added when the conversation has none
              and the Jinja text has one (SmolLM2: "You are a helpful AI assistant named
              SmolLM, trained by Hugging Face")

In both, the trained tokens are an assistant turn's content and what ends it (the EOS id, or
the end-of-turn text "<|im_end|>"); headers, other roles and the newline after
"<|im_end|>" are context.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

PAD_ID = 256
BOS_ID = 257
EOS_ID = 258
NUM_BYTES = 256
VOCAB_SIZE = 259

ROLES = ("system", "user", "assistant")


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    """How a conversation is laid out (module docstring). A message of role r renders as

        prefix[r] + content + suffix[r]        with prefix[r] = ``header.format(role=r)``

    except that the assistant's suffix is ``[EOS id]`` when ``end`` is "eos", or
    ``end_text`` (trained) followed by ``after_end`` (context) when ``end`` is "text".

    name: "plain" | "chatml". headers: per-role prefix format strings (system, user,
    assistant). suffix: the text after system and user contents. default_system: a system
    message prepended when a conversation has none (None: never). text_prompt_as_user: a
    plain-text prompt becomes one user message (else it is used as it is, no header).
    """
    name: Literal["plain", "chatml"]
    headers: tuple[str, str, str]
    suffix: str
    end: Literal["eos", "text"]
    end_text: str = ""
    after_end: str = ""
    default_system: str | None = None
    text_prompt_as_user: bool = False

    def header(self, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {ROLES}")
        return self.headers[ROLES.index(role)].format(role=role)

    @property
    def generation_prompt(self) -> str:
        """The text a model continues to write an assistant turn."""
        return self.header("assistant")


PLAIN = ChatTemplate(name="plain", headers=("System: ", "User: ", "Assistant: "), suffix="\n",
                     end="eos")
CHATML = ChatTemplate(name="chatml", headers=("<|im_start|>{role}\n",) * 3, suffix="<|im_end|>\n",
                      end="text", end_text="<|im_end|>", after_end="\n", text_prompt_as_user=True)

_CHATML_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system(?:\n|\\n)(.+?)<\|im_end\|>", re.DOTALL)


def template_from_jinja(source: str | None) -> ChatTemplate:
    """The :class:`ChatTemplate` of a model's Jinja chat template text: "chatml" when it
    contains ``<|im_start|>`` (with the default system message it writes literally, if any),
    else "plain" (also for None: a tokenizer without a template)."""
    if not source or "<|im_start|>" not in source:
        return PLAIN
    match = _CHATML_DEFAULT_SYSTEM.search(source)
    default = match.group(1) if match and "{" not in match.group(1) else None
    return dataclasses.replace(CHATML, default_system=default)


@runtime_checkable
class Tokenizer(Protocol):
    """What post-training code needs of a tokenizer (module docstring)."""

    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    eos_ids: tuple[int, ...]
    pad_id: int
    add_bos: bool

    @property
    def chat_template(self) -> ChatTemplate: ...

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> np.ndarray: ...

    def decode(self, ids: Iterable[int] | np.ndarray, *, stop_at_eos: bool = False) -> str: ...


@dataclasses.dataclass(frozen=True)
class ByteTokenizer:
    """Stateless byte tokenizer (hashable, so it may live in a config)."""

    pad_id: ClassVar[int] = PAD_ID
    bos_id: ClassVar[int] = BOS_ID
    eos_id: ClassVar[int] = EOS_ID
    eos_ids: ClassVar[tuple[int, ...]] = (EOS_ID,)
    vocab_size: ClassVar[int] = VOCAB_SIZE
    add_bos: ClassVar[bool] = True
    chat_template: ClassVar[ChatTemplate] = PLAIN

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


BYTES = ByteTokenizer()


def special_ids(tok: Tokenizer) -> tuple[int, ...]:
    """The ids that carry no text: BOS, PAD and every stop id."""
    ids = [tok.bos_id, tok.pad_id, *tok.eos_ids]
    return tuple(dict.fromkeys(i for i in ids if i is not None))


def text_ids(tok: Tokenizer, ids_T: np.ndarray) -> np.ndarray:
    """``ids_T`` without special ids and ids outside the tokenizer's vocabulary (those of a
    padded model vocabulary), int32 [T']."""
    ids_T = np.asarray(ids_T, np.int64).reshape(-1)
    keep_T = (ids_T >= 0) & (ids_T < tok.vocab_size) & ~np.isin(ids_T, special_ids(tok))
    return ids_T[keep_T].astype(np.int32)


def ids_containing(tok: Tokenizer, text: str) -> tuple[int, ...]:
    """Every id whose own decoded text contains ``text`` (e.g. the ids that end a line)."""
    return tuple(i for i in range(tok.vocab_size)
                 if i not in special_ids(tok) and text in tok.decode([i]))
