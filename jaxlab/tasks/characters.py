"""Character-level questions about a word (CharBench, Uzan and Pinter 2025): count a letter,
locate it.

    char_count   'How many times does the letter "r" appear in the word "error"?
                  Answer with the number only.'                                      -> "3"
    char_locate  'At which position is the first "r" in the word "error"? Count the
                  letters from 1. Answer with the number only.'                      -> "2"

Difficulty = the word's length in letters. Words come from ``source``: "corpus" (the
lowercase alphabetic words of the embedded corpus, :func:`corpus_words`; real words, which a
BPE tokenizer cuts into long tokens) or "random" (uniform random letters, cut into short
tokens). ``char_count`` asks about a letter of the word (the answer is >= 1); ``char_locate``
asks for the 1-based position of the n-th occurrence of a letter: with
``occurrences="first"`` the target is a first occurrence (n = 1, "the first"), with "any" it
is a uniformly drawn position of the word and n is its occurrence number ("the second" ...).

Both prompts are a question in words ending with "Answer with the number only." and are read
with the lenient integer parser of the instructed tasks
(:func:`jaxlab.tasks.instructed.last_integer`: the last integer of the answer line), so a chat
model that answers "The letter r appears 3 times." is scored on its number.

``meta`` holds what the analysis needs: the word, the letter, ``word_offset`` (the index in
the prompt of the word's first letter), and for ``char_locate`` the target's ``position``
(1-based in the word) and ``occurrence``; for ``char_count`` the 1-based ``positions`` of
every occurrence. The target character of a locate example is
``prompt[word_offset + position - 1]`` (:func:`target_char_index`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import string

import numpy as np

from jaxlab.tasks.base import Example, Task, TaskError
from jaxlab.tasks.instructed import INSTRUCTION, last_integer

SOURCES = ("corpus", "random")
OCCURRENCES = ("first", "any")
MIN_WORD, MAX_WORD = 2, 20
_WORD = re.compile(r"[A-Za-z]+")
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


@functools.lru_cache(maxsize=1)
def corpus_word_counts() -> dict[str, int]:
    """{word: count} of the lowercase alphabetic words of the embedded corpus
    (:func:`jaxlab.data.corpus.default_documents`): maximal runs of ASCII letters, lowercased,
    of MIN_WORD..MAX_WORD letters. Sorted by word."""
    from collections import Counter

    from jaxlab.data.corpus import default_documents

    counts = Counter()
    for _, text in default_documents():
        counts.update(w.lower() for w in _WORD.findall(text) if MIN_WORD <= len(w) <= MAX_WORD)
    return dict(sorted(counts.items()))


@functools.lru_cache(maxsize=None)
def corpus_words(length: int) -> tuple[str, ...]:
    """The distinct corpus words of ``length`` letters, sorted (:func:`corpus_word_counts`)."""
    return tuple(w for w in corpus_word_counts() if len(w) == length)


def ordinal(n: int) -> str:
    """ "first" .. "tenth", then "11th", "12th", "21st" ..."""
    if n < 1:
        raise ValueError(f"an ordinal needs n >= 1, got {n}")
    if n <= len(_ORDINALS):
        return _ORDINALS[n - 1]
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def target_char_index(meta: dict) -> int:
    """The index in the prompt of a ``char_locate`` example's target character:
    word_offset + position - 1."""
    return int(meta["word_offset"]) + int(meta["position"]) - 1


@dataclasses.dataclass(frozen=True)
class _WordTask(Task):
    knob = "word length"
    min_difficulty = 3
    max_difficulty = 16

    train_difficulty: tuple[int, int] = (4, 8)
    ood_difficulty: tuple[int, int] = (9, 12)
    source: str = "corpus"

    def __post_init__(self):
        super().__post_init__()
        if self.source not in SOURCES:
            raise TaskError(f"{self.name}: source={self.source!r} must be one of {SOURCES}")

    def word(self, rng: np.random.Generator, length: int) -> str:
        if self.source == "random":
            return "".join(string.ascii_lowercase[int(i)] for i in rng.integers(0, 26, size=length))
        words = corpus_words(length)
        if not words:
            raise TaskError(f"{self.name}: the corpus has no word of {length} letters; use source='random' "
                            "or another range")
        return words[int(rng.integers(len(words)))]

    def level_capacity(self, difficulty):
        if self.source == "random":
            return None
        return sum(len(set(w)) for w in corpus_words(difficulty))

    def parse(self, answer):
        return last_integer(answer, 4)


@dataclasses.dataclass(frozen=True)
class CharCount(_WordTask):
    """How many times a letter of the word occurs in it (module docstring)."""

    name = "char_count"

    def _generate(self, rng, difficulty):
        word = self.word(rng, difficulty)
        letter = word[int(rng.integers(len(word)))]
        head = f'How many times does the letter "{letter}" appear in the word "'
        prompt = f'{head}{word}"? {INSTRUCTION}'
        positions = [i + 1 for i, c in enumerate(word) if c == letter]
        meta = {"task": self.name, "difficulty": difficulty, "word": word, "letter": letter,
                "word_offset": len(head), "positions": positions, "source": self.source}
        return Example(prompt, str(len(positions)), meta)

    def check(self, meta, parsed):
        return parsed == str(meta["word"]).count(str(meta["letter"]))


@dataclasses.dataclass(frozen=True)
class CharLocate(_WordTask):
    """The 1-based position of the n-th occurrence of a letter in the word (module docstring).

    occurrences: "first" (the target is a letter's first occurrence) or "any" (any position)."""

    name = "char_locate"
    occurrences: str = "first"

    def __post_init__(self):
        super().__post_init__()
        if self.occurrences not in OCCURRENCES:
            raise TaskError(f"char_locate: occurrences={self.occurrences!r} must be one of {OCCURRENCES}")

    def _generate(self, rng, difficulty):
        word = self.word(rng, difficulty)
        if self.occurrences == "first":
            candidates = [i for i, c in enumerate(word) if word.index(c) == i]
        else:
            candidates = list(range(len(word)))
        i = candidates[int(rng.integers(len(candidates)))]
        letter = word[i]
        n = word[: i + 1].count(letter)
        head = f'At which position is the {ordinal(n)} "{letter}" in the word "'
        prompt = f'{head}{word}"? Count the letters from 1. {INSTRUCTION}'
        meta = {"task": self.name, "difficulty": difficulty, "word": word, "letter": letter, "occurrence": n,
                "position": i + 1, "word_offset": len(head), "source": self.source}
        return Example(prompt, str(i + 1), meta)

    def level_capacity(self, difficulty):
        if self.source == "random":
            return None
        if self.occurrences == "first":
            return super().level_capacity(difficulty)
        return difficulty * len(corpus_words(difficulty))

    def check(self, meta, parsed):
        word, letter, n = str(meta["word"]), str(meta["letter"]), int(meta["occurrence"])
        where = [i + 1 for i, c in enumerate(word) if c == letter]
        return 1 <= n <= len(where) and parsed == where[n - 1]
