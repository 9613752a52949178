"""Word tasks over a generated vocabulary: last-letter concatenation and word sorting.

    last_letters  prompt  "last vobu ke tamin:"     answer  "uen"
    word_sort     prompt  "sort vobu ke tamin:"     answer  "ke tamin vobu"

Difficulty = the number of words, drawn without replacement from :func:`vocabulary` (a fixed
list of pronounceable lowercase pseudo-words, the same on every machine, so no word list has
to be downloaded). Sorting is by code point (plain ``sorted``: a prefix sorts first) and the
answer must list the words in exactly that order, separated by blanks.
"""

from __future__ import annotations

import dataclasses
import functools
import string

import numpy as np

from jaxlab.tasks.base import Example, Task, TaskError

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
LOWERCASE = frozenset(string.ascii_lowercase)
MAX_WORDS = 256
MAX_WORD_CHARS = 32


@functools.lru_cache(maxsize=8)
def vocabulary(size: int = 512, seed: int = 0) -> tuple[str, ...]:
    """``size`` distinct pseudo-words (1 to 3 consonant-vowel syllables, sometimes a final
    consonant), deterministic from ``seed``, in generation order."""
    if not 1 <= size <= 100_000:
        raise TaskError(f"vocabulary size={size} must be in [1, 100000]")
    rng = np.random.default_rng([seed, 0x70CAB])
    words: dict[str, None] = {}
    while len(words) < size:
        syllables = int(rng.integers(1, 4))
        word = "".join(CONSONANTS[int(rng.integers(len(CONSONANTS)))] + VOWELS[int(rng.integers(len(VOWELS)))]
                       for _ in range(syllables))
        if rng.random() < 0.4:
            word += CONSONANTS[int(rng.integers(len(CONSONANTS)))]
        words[word] = None
    return tuple(words)


def _parse_words(answer: str) -> list[str] | None:
    words = answer.split()
    if not words or len(words) > MAX_WORDS:
        return None
    if any(len(w) > MAX_WORD_CHARS or not set(w) <= LOWERCASE for w in words):
        return None
    return words


@dataclasses.dataclass(frozen=True)
class _WordTask(Task):
    knob = "words"
    max_difficulty = MAX_WORDS

    vocab_size: int = 512

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.vocab_size, int) or self.vocab_size < max(self.ood_difficulty[1],
                                                                          self.train_difficulty[1]):
            raise TaskError(f"{self.name}: vocab_size={self.vocab_size!r} must be an int >= the "
                            f"largest word count {max(self.ood_difficulty[1], self.train_difficulty[1])}")

    def _words(self, rng, difficulty) -> list[str]:
        vocab = vocabulary(self.vocab_size)
        if difficulty > len(vocab):
            raise TaskError(f"{self.name}: {difficulty} words asked from a vocabulary of {len(vocab)}")
        return [vocab[int(i)] for i in rng.choice(len(vocab), size=difficulty, replace=False)]


@dataclasses.dataclass(frozen=True)
class LastLetters(_WordTask):
    """The last letters of the words, concatenated in order."""

    name = "last_letters"

    train_difficulty: tuple[int, int] = (2, 4)
    ood_difficulty: tuple[int, int] = (5, 7)

    def _generate(self, rng, difficulty):
        words = self._words(rng, difficulty)
        meta = {"task": self.name, "difficulty": difficulty, "words": words}
        return Example(f"last {' '.join(words)}:", "".join(w[-1] for w in words), meta)

    def parse(self, answer):
        ok = len(answer) <= MAX_WORDS and set(answer) <= LOWERCASE
        return answer if ok else None

    def check(self, meta, parsed):
        return parsed == "".join(w[-1] for w in meta["words"])


@dataclasses.dataclass(frozen=True)
class WordSort(_WordTask):
    """The words in sorted order."""

    name = "word_sort"

    train_difficulty: tuple[int, int] = (2, 5)
    ood_difficulty: tuple[int, int] = (6, 8)

    def _generate(self, rng, difficulty):
        words = self._words(rng, difficulty)
        meta = {"task": self.name, "difficulty": difficulty, "words": words}
        return Example(f"sort {' '.join(words)}:", " ".join(sorted(words)), meta)

    def equivalence_key(self, example):
        """Any order of the same words is one problem (one sorted answer)."""
        return " ".join(sorted(example.meta["words"]))

    def parse(self, answer):
        return _parse_words(answer)

    def check(self, meta, parsed):
        return parsed == sorted(meta["words"])
