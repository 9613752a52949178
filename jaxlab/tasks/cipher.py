"""Shift-cipher decoding (McCoy et al. 2023, "Embers of Autoregression"): the plaintext is
asked back from its shift-cipher encoding.

    shift_cipher  'Decode this rot-13 text: "gur pynff"'  -> "the class"

The prompt is short (a byte model reads it many times in training; an instruct model reads it
as a request). Difficulty = the number of words. ``shift`` (1..25, default 13: rot-13) moves each letter
``shift`` places forward, a-z wrapping round (:func:`shift_text`); spaces stay. ``plaintext``
chooses where the message comes from:

    high   real text: ``difficulty`` consecutive words of the embedded corpus (a random window
           of :func:`corpus_word_stream`), lowercased letters only
    low    the same draw with the letters of every word shuffled (a word is reshuffled until it
           changes, when it can): the same word lengths and letters, text of low probability

The draw of ``low`` starts with exactly the draws of ``high``, so one generator state gives a
paired high / low example (same window, same letters; meta ``original`` is the real text in
both). ``max_chars`` bounds the plaintext (windows longer than it are redrawn).

The answer is read leniently, since a chat model writes 'The decoded text is: ...' or 'The
decoded text is "..."' (the answer line is the last non-blank line, as for every task): the
last double-quoted part of the line if it has one, else the text after its last colon if it has
one, else the line; then surrounding quotes, blanks and a final period removed, blanks
collapsed, lowercased. It must then be letters and single spaces only (at most ``MAX_ANSWER_CHARS``),
else it is malformed; it is right when it equals the plaintext.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import string

import numpy as np

from jaxlab.tasks.base import Example, Task, TaskError

PLAINTEXTS = ("high", "low")
MAX_ANSWER_CHARS = 512
_LOWER = string.ascii_lowercase
_WORD = re.compile(r"[A-Za-z]+")
_ANSWER = re.compile(r"[a-z]+(?: [a-z]+)*")


def shift_text(text: str, shift: int) -> str:
    """Each ASCII letter moved ``shift`` places forward in the alphabet (wrapping; case kept),
    other characters unchanged: shift_text("abz", 1) = "bca"; shift_text(x, 26 - k) decodes
    shift_text(x, k)."""
    k = int(shift) % 26
    table = str.maketrans(_LOWER + _LOWER.upper(),
                          _LOWER[k:] + _LOWER[:k] + (_LOWER[k:] + _LOWER[:k]).upper())
    return text.translate(table)


@functools.lru_cache(maxsize=1)
def corpus_word_stream() -> tuple[str, ...]:
    """Every word of the embedded corpus in reading order (maximal runs of ASCII letters,
    lowercased; documents joined in :func:`jaxlab.data.corpus.default_documents` order)."""
    from jaxlab.data.corpus import default_documents

    return tuple(w.lower() for _, text in default_documents() for w in _WORD.findall(text))


def scramble_word(word: str, rng: np.random.Generator, tries: int = 10) -> str:
    """The letters of ``word`` in a random order, reshuffled (up to ``tries`` times) until the
    order differs from the word's, when it can (a word of one repeated letter cannot)."""
    out = word
    for _ in range(tries):
        out = "".join(word[int(i)] for i in rng.permutation(len(word)))
        if out != word:
            return out
    return out


def normalize_answer(answer: str) -> str | None:
    """The decoded text in an answer line (module docstring), or None when it is malformed."""
    if len(answer) > 4 * MAX_ANSWER_CHARS:
        return None
    quoted = re.findall(r'"([^"]*)"', answer)
    text = quoted[-1] if quoted else answer.rsplit(":", 1)[-1]
    text = " ".join(text.split()).strip(" \"'`.").lower()
    text = " ".join(text.split())
    if not text or len(text) > MAX_ANSWER_CHARS or not _ANSWER.fullmatch(text):
        return None
    return text


@dataclasses.dataclass(frozen=True)
class ShiftCipher(Task):
    """Decode a ``shift``-cipher message of ``difficulty`` words (module docstring)."""

    name = "shift_cipher"
    knob = "words"
    min_difficulty = 1
    max_difficulty = 32

    train_difficulty: tuple[int, int] = (1, 3)
    ood_difficulty: tuple[int, int] = (4, 6)
    shift: int = 13
    plaintext: str = "high"
    max_chars: int = 40

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.shift, bool) or not isinstance(self.shift, (int, np.integer)) or not 1 <= self.shift <= 25:
            raise TaskError(f"shift_cipher: shift={self.shift!r} must be an int in [1, 25]")
        if self.plaintext not in PLAINTEXTS:
            raise TaskError(f"shift_cipher: plaintext={self.plaintext!r} must be one of {PLAINTEXTS}")
        if not isinstance(self.max_chars, (int, np.integer)) or not 8 <= self.max_chars <= MAX_ANSWER_CHARS:
            raise TaskError(f"shift_cipher: max_chars={self.max_chars!r} must be an int in [8, {MAX_ANSWER_CHARS}]")

    def prompt(self, ciphertext: str) -> str:
        return f'Decode this rot-{self.shift} text: "{ciphertext}"'

    def _generate(self, rng, difficulty):
        stream = corpus_word_stream()
        for _ in range(1000):
            start = int(rng.integers(len(stream) - difficulty))
            words = stream[start:start + difficulty]
            if len(" ".join(words)) <= self.max_chars:
                break
        else:
            raise TaskError(f"shift_cipher: no window of {difficulty} corpus words fits max_chars={self.max_chars}")
        original = " ".join(words)
        plain = original if self.plaintext == "high" else " ".join(scramble_word(w, rng) for w in words)
        cipher = shift_text(plain, self.shift)
        meta = {"task": self.name, "difficulty": difficulty, "shift": int(self.shift), "plaintext": plain,
                "ciphertext": cipher, "kind": self.plaintext, "original": original}
        return Example(self.prompt(cipher), plain, meta)

    def parse(self, answer):
        return normalize_answer(answer)

    def check(self, meta, parsed):
        return parsed == str(meta["plaintext"])
