"""A Hugging Face ``tokenizer.json`` behind the tokenizer protocol of
:class:`jaxlab.data.tokenizer.Tokenizer` (the byte tokenizer's interface):

    encode(text, *, bos=False, eos=False) -> int32 [T]     decode(ids, *, stop_at_eos=False) -> str
    vocab_size, bos_id, eos_id, pad_id, eos_ids (every end-of-sequence id), add_bos,
    chat_template (a :class:`jaxlab.data.tokenizer.ChatTemplate` read from the Jinja text)

``encode`` adds no special tokens of its own (the tokenizer's post-processor is not applied):
``bos`` / ``eos`` add them explicitly, as with the byte tokenizer. ``decode`` drops special
tokens and ids outside the tokenizer's vocabulary (a model's vocabulary is often padded).

Special tokens are looked up, first found wins, in tokenizer_config.json and
special_tokens_map.json (token strings, mapped to ids by the vocabulary), then
generation_config.json and config.json (``bos_token_id``, ``eos_token_id``, ``pad_token_id``).
``eos_ids`` gathers the end-of-sequence ids of all four files (instruction-tuned models list
several in generation_config.json): use them as stop tokens. Without a pad token,
``pad_id = eos_id``. The Jinja ``chat_template`` of tokenizer_config.json picks the chat
template (:func:`jaxlab.data.tokenizer.template_from_jinja`); ``add_bos`` is
tokenizer_config.json's ``add_bos_token`` (default False). Needs the ``tokenizers`` package (imported on use).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from jaxlab.data.tokenizer import ChatTemplate, template_from_jinja

TOKENIZER_FILE = "tokenizer.json"
# files that describe a tokenizer, copied beside converted weights
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "generation_config.json")


class TokenizerError(ValueError):
    """A tokenizer folder or file that cannot be read (named in the message)."""


def _read_json(file: Path) -> dict:
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text())
    except ValueError as e:
        raise TokenizerError(f"{file} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise TokenizerError(f"{file} must hold a JSON object, got {type(data).__name__}")
    return data


def _token_string(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _ids(value) -> list[int]:
    """``*_token_id`` of config.json / generation_config.json: an int, a list of ints or null."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` with the byte tokenizer's method names (module docstring)."""

    def __init__(self, tokenizer, *, bos_id: int | None, eos_ids: tuple[int, ...],
                 pad_id: int | None, chat_template: str | None = None, add_bos: bool = False):
        self.tokenizer = tokenizer
        self.chat_template_source = chat_template  # the Jinja text the model was published with
        self.add_bos = add_bos  # whether the model's sequences begin with BOS
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.bos_id = bos_id
        self.eos_ids = eos_ids
        self.eos_id = eos_ids[0] if eos_ids else None
        self.pad_id = pad_id if pad_id is not None else self.eos_id
        self._chat_template = template_from_jinja(chat_template)

    @property
    def chat_template(self) -> ChatTemplate:
        """How conversations are laid out (from the Jinja text; "plain" without one)."""
        return self._chat_template

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> np.ndarray:
        """``[BOS]? + tokens(text) + [EOS]?`` as an int32 array of shape [T]."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if bos:
            if self.bos_id is None:
                raise TokenizerError("this tokenizer has no BOS token; encode with bos=False")
            ids = [self.bos_id] + ids
        if eos:
            if self.eos_id is None:
                raise TokenizerError("this tokenizer has no EOS token; encode with eos=False")
            ids = ids + [self.eos_id]
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: Iterable[int] | np.ndarray, *, stop_at_eos: bool = False) -> str:
        """The text of ``ids``, without special tokens or ids >= vocab_size.

        With ``stop_at_eos=True`` everything from the first id in ``eos_ids`` on is ignored.
        """
        ids_T = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids_T.size and ids_T.min() < 0:
            raise ValueError(f"token ids must be >= 0, got {int(ids_T.min())}")
        if stop_at_eos and self.eos_ids:
            stops = np.flatnonzero(np.isin(ids_T, self.eos_ids))
            if stops.size:
                ids_T = ids_T[: stops[0]]
        ids_T = ids_T[ids_T < self.vocab_size]
        return self.tokenizer.decode(ids_T.tolist(), skip_special_tokens=True)


def load_tokenizer(path: str | Path) -> HFTokenizer:
    """The tokenizer of a model folder holding ``tokenizer.json`` (module docstring)."""
    folder = Path(path)
    file = folder / TOKENIZER_FILE
    if not file.is_file():
        raise TokenizerError(
            f"{folder} has no {TOKENIZER_FILE}; jaxlab reads fast tokenizers only. Write one with "
            "transformers: AutoTokenizer.from_pretrained(src).save_pretrained(dst)")
    try:
        import tokenizers
    except ImportError:
        raise ImportError("loading a Hugging Face tokenizer needs the 'tokenizers' package: "
                          "pip install tokenizers") from None
    try:
        tok = tokenizers.Tokenizer.from_file(str(file))
    except Exception as e:  # the Rust parser reports malformed files as plain Exceptions
        raise TokenizerError(f"{file} is not a tokenizers file: {e}") from None

    named = [_read_json(folder / "tokenizer_config.json"), _read_json(folder / "special_tokens_map.json")]
    numbered = [_read_json(folder / "generation_config.json"), _read_json(folder / "config.json")]

    def ids_of(kind: str) -> list[int]:
        found = []
        for source, data in zip(("tokenizer_config.json", "special_tokens_map.json"), named, strict=True):
            token = _token_string(data.get(f"{kind}_token"))
            if token is not None:
                token_id = tok.token_to_id(token)
                if token_id is None:
                    raise TokenizerError(f"{folder / source} names {kind}_token {token!r}, which "
                                         f"is not in {TOKENIZER_FILE}")
                found.append(token_id)
        for data in numbered:
            found.extend(_ids(data.get(f"{kind}_token_id")))
        return list(dict.fromkeys(found))  # first-found order, no repeats

    bos, eos, pad = ids_of("bos"), ids_of("eos"), ids_of("pad")
    jinja = named[0].get("chat_template")
    return HFTokenizer(tok, bos_id=bos[0] if bos else None, eos_ids=tuple(eos),
                       pad_id=pad[0] if pad else None,
                       chat_template=jinja if isinstance(jinja, str) else None,
                       add_bos=named[0].get("add_bos_token") is True)
