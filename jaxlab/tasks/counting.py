"""Counting over a list of letters, and its most frequent element.

    count          prompt  "count a in bacaad:"     answer  "3"
    most_frequent  prompt  "mode bacaad:"           answer  "a"

Difficulty = the list length. Letters are drawn uniformly from ``alphabet``. For ``count`` the
queried letter is drawn from the alphabet too (it may be absent: the answer is then 0); for
``most_frequent`` the list is made to have a unique most frequent letter (on a tie, one
occurrence of another tied letter becomes the first tied letter).
"""

from __future__ import annotations

import dataclasses
import string
from collections import Counter

import numpy as np

from jaxlab.tasks.base import Example, Task, TaskError, ascii_uint

LOWERCASE = frozenset(string.ascii_lowercase)


def _check_alphabet(task: str, alphabet) -> None:
    if (not isinstance(alphabet, str) or len(alphabet) < 2 or len(set(alphabet)) != len(alphabet)
            or not set(alphabet) <= LOWERCASE):
        raise TaskError(f"{task}: alphabet={alphabet!r} must be >= 2 distinct letters from a-z")


def random_letters(rng: np.random.Generator, alphabet: str, length: int) -> str:
    return "".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), size=length))


def unique_mode(letters: str, rng: np.random.Generator) -> str:
    """``letters`` with a unique most frequent letter: on a tie between letters t1 < t2 < ...
    (first-seen order), one random occurrence of t2 becomes t1."""
    counts = Counter(letters)
    top = max(counts.values())
    tied = [c for c in dict.fromkeys(letters) if counts[c] == top]
    if len(tied) == 1:
        return letters
    where = [i for i, c in enumerate(letters) if c == tied[1]]
    i = where[int(rng.integers(len(where)))]
    return letters[:i] + tied[0] + letters[i + 1:]


@dataclasses.dataclass(frozen=True)
class Count(Task):
    """How many times a letter occurs in a list of ``difficulty`` letters."""

    name = "count"
    knob = "list length"
    max_difficulty = 1_000

    train_difficulty: tuple[int, int] = (4, 12)
    ood_difficulty: tuple[int, int] = (16, 24)
    alphabet: str = "abcde"

    def __post_init__(self):
        super().__post_init__()
        _check_alphabet(self.name, self.alphabet)

    def _generate(self, rng, difficulty):
        letters = random_letters(rng, self.alphabet, difficulty)
        letter = self.alphabet[int(rng.integers(len(self.alphabet)))]
        meta = {"task": self.name, "difficulty": difficulty, "letters": letters, "letter": letter}
        return Example(f"count {letter} in {letters}:", str(letters.count(letter)), meta)

    def parse(self, answer):
        return ascii_uint(answer, 4)

    def check(self, meta, parsed):
        return parsed == meta["letters"].count(meta["letter"])


@dataclasses.dataclass(frozen=True)
class MostFrequent(Task):
    """The letter that occurs most often in a list of ``difficulty`` letters (unique)."""

    name = "most_frequent"
    knob = "list length"
    max_difficulty = 1_000

    train_difficulty: tuple[int, int] = (3, 11)
    ood_difficulty: tuple[int, int] = (15, 23)
    alphabet: str = "abcde"

    def __post_init__(self):
        super().__post_init__()
        _check_alphabet(self.name, self.alphabet)

    def _generate(self, rng, difficulty):
        letters = unique_mode(random_letters(rng, self.alphabet, difficulty), rng)
        meta = {"task": self.name, "difficulty": difficulty, "letters": letters}
        return Example(f"mode {letters}:", Counter(letters).most_common(1)[0][0], meta)

    def parse(self, answer):
        return answer if len(answer) == 1 and answer in LOWERCASE else None

    def check(self, meta, parsed):
        counts = Counter(meta["letters"])
        return counts[parsed] == max(counts.values())
