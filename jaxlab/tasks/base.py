"""The task interface: a generator with a difficulty knob, a prompt format, an exact verifier.

A task is a frozen dataclass (hashable, so it can sit in a config) with

    generate(rng, difficulty) -> Example(prompt, answer, meta)
    verify(example_or_meta, response) -> 1.0 or 0.0        (exact; never raises on the response)
    reward(example_or_meta, response) -> [0, 1]             (partial credit; default: verify)
    format_reward(response) -> 1.0 or 0.0                   (the answer is well formed)
    splits(seed, n_train, n_test, n_ood) -> {"train": [...], "test": [...], "ood": [...]}

The answer convention, shared by every task: ``response`` is the completion only (the text
the model wrote after the prompt, without the EOS the runner appends), and the answer is its
last non-blank line with surrounding blanks removed. A response that is one line is therefore
the answer itself; earlier lines (a scratchpad) are ignored.

Responses are hostile input. ``verify`` rejects (scores 0) a response longer than
``MAX_RESPONSE_CHARS`` before looking at it; each task parses the answer with bounded length,
depth and magnitude and only ASCII digits count as digits (``str.isdigit`` also accepts
e.g. Arabic-Indic digits, so it is never used); nothing is ever ``eval``-ed. A malformed
answer scores 0; ``verify`` raises only for a programming error (a ``meta`` of another task or
a response that is not text).
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

MAX_RESPONSE_CHARS = 4096
SPLITS = ("train", "test", "ood")
# Errors a parser of hostile text may hit; they mean "malformed", never a crash.
PARSE_ERRORS = (ValueError, ArithmeticError, RecursionError, MemoryError, SyntaxError)


class TaskError(ValueError):
    """A task name, difficulty, split size or meta that cannot be used, with what is allowed."""


@dataclasses.dataclass(frozen=True)
class Example:
    """One instance: the ``prompt`` the model sees, a reference ``answer`` (one line; training
    text is ``prompt + answer`` then EOS), and ``meta``: everything the verifier needs, JSON
    serialisable, with at least ``task`` and ``difficulty``."""

    prompt: str
    answer: str
    meta: dict

    def to_record(self) -> dict[str, str]:
        """``{"prompt", "answer", "meta"}`` strings (meta as sorted-key JSON), the tfds record."""
        return {"prompt": self.prompt, "answer": self.answer, "meta": json.dumps(self.meta, sort_keys=True)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Example:
        """The inverse of :meth:`to_record`; accepts the ``bytes`` values a tfds source returns."""
        def text(x):
            return x.decode("utf-8") if isinstance(x, bytes) else str(x)
        return cls(text(record["prompt"]), text(record["answer"]), json.loads(text(record["meta"])))


def extract_answer(response: str) -> str | None:
    """The answer in a completion: its last non-blank line, stripped; None when the response
    is blank or longer than ``MAX_RESPONSE_CHARS``."""
    if len(response) > MAX_RESPONSE_CHARS:
        return None
    for line in reversed(response.splitlines()):
        line = line.strip()
        if line:
            return line
    return None


def ascii_uint(text: str, max_digits: int) -> int | None:
    """A non-negative integer written with 1..max_digits ASCII digits, else None (no sign,
    no blanks, no underscores, no non-ASCII digits)."""
    if not 1 <= len(text) <= max_digits or any(c not in "0123456789" for c in text):
        return None
    return int(text)


def ascii_int(text: str, max_digits: int) -> int | None:
    """Like :func:`ascii_uint` with an optional leading ``-``."""
    if text.startswith("-"):
        value = ascii_uint(text[1:], max_digits)
        return None if value is None else -value
    return ascii_uint(text, max_digits)


def stable_hash(text: str) -> int:
    """A process-independent 32-bit hash (Python's ``hash`` of a str is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


def _check_range(name: str, value) -> tuple[int, int]:
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
          and value[0] <= value[1])
    if not ok:
        raise TaskError(f"{name}={value!r} must be a pair (low, high) of ints with low <= high")
    return int(value[0]), int(value[1])


@dataclasses.dataclass(frozen=True)
class Task:
    """Base of every task. Subclasses set ``name``, the difficulty bounds and implement
    ``_generate``, ``parse`` and ``check``.

    train_difficulty: inclusive (low, high) range of the train and test splits.
    ood_difficulty: inclusive (low, high) range of the harder out-of-distribution split.
    """

    name: ClassVar[str] = ""
    knob: ClassVar[str] = "difficulty"  # what the difficulty counts (digits, disks, words ...)
    min_difficulty: ClassVar[int] = 1
    max_difficulty: ClassVar[int] = 1_000

    train_difficulty: tuple[int, int] = (1, 1)
    ood_difficulty: tuple[int, int] = (2, 2)

    def __post_init__(self):
        for field in ("train_difficulty", "ood_difficulty"):
            low, high = _check_range(field, getattr(self, field))
            if low < self.min_difficulty or high > self.max_difficulty:
                raise TaskError(f"{self.name}: {field}={(low, high)} must lie in "
                                f"[{self.min_difficulty}, {self.max_difficulty}] ({self.knob})")
            object.__setattr__(self, field, (low, high))

    # --- to implement -------------------------------------------------------------------
    def _generate(self, rng: np.random.Generator, difficulty: int) -> Example:
        raise NotImplementedError

    def parse(self, answer: str) -> Any:
        """The parsed answer text, or None when it is malformed (format only, no meta)."""
        raise NotImplementedError

    def check(self, meta: dict, parsed: Any) -> bool:
        """Whether a parsed answer solves the instance described by ``meta``."""
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------------------
    def generate(self, rng: np.random.Generator, difficulty: int) -> Example:
        """One instance at ``difficulty`` (an int in [min_difficulty, max_difficulty])."""
        if (not isinstance(difficulty, (int, np.integer)) or isinstance(difficulty, bool)
                or not self.min_difficulty <= difficulty <= self.max_difficulty):
            raise TaskError(f"{self.name}: difficulty={difficulty!r} ({self.knob}) must be an int in "
                            f"[{self.min_difficulty}, {self.max_difficulty}]")
        return self._generate(rng, int(difficulty))

    def _meta(self, example) -> dict:
        if isinstance(example, Example):
            meta = example.meta
        elif isinstance(example, Mapping):
            meta = example
        elif isinstance(example, (str, bytes)):
            meta = json.loads(example)
        else:
            raise TypeError(f"{self.name}: expected an Example, a meta dict or its JSON, got "
                            f"{type(example).__name__}")
        if meta.get("task") != self.name:
            raise TaskError(f"{self.name}: meta of task {meta.get('task')!r} given to the "
                            f"{self.name!r} verifier")
        return dict(meta)

    def _parsed_answer(self, response) -> Any:
        if isinstance(response, bytes):
            response = response.decode("utf-8", errors="replace")
        if not isinstance(response, str):
            raise TypeError(f"{self.name}: a response must be str or bytes, got {type(response).__name__}")
        answer = extract_answer(response)
        if answer is None:
            return None
        try:
            return self.parse(answer)
        except PARSE_ERRORS:
            return None

    def verify(self, example, response) -> float:
        """1.0 when the answer in ``response`` (module docstring) solves ``example`` (an
        :class:`Example`, its meta dict, or the meta JSON), else 0.0."""
        meta = self._meta(example)
        parsed = self._parsed_answer(response)
        if parsed is None:
            return 0.0
        try:
            return 1.0 if self.check(meta, parsed) else 0.0
        except PARSE_ERRORS:
            return 0.0

    def reward(self, example, response) -> float:
        """Partial credit in [0, 1] for RL (``rl.reward=partial``). By default the exact
        :meth:`verify` (1.0 or 0.0); tasks with a graded score (``doc_extract``: field F1)
        override it."""
        return self.verify(example, response)

    def format_reward(self, response) -> float:
        """1.0 when ``response`` holds a well-formed answer for this task (right or wrong)."""
        return 0.0 if self._parsed_answer(response) is None else 1.0

    def equivalence_key(self, example: Example) -> str:
        """Examples with equal keys are the same problem (a commuted sum, the same numbers in
        another order...); :meth:`splits` keeps at most one of each key across all splits.
        By default the prompt; tasks with equivalent forms override it."""
        return example.prompt

    def level_capacity(self, difficulty: int) -> int | None:
        """How many problems (distinct equivalence keys) exist at ``difficulty``, or None when
        that is too many to matter; tasks with small levels override it."""
        return None

    def splits(self, seed: int, n_train: int, n_test: int, n_ood: int) -> dict[str, list[Example]]:
        """Deterministic splits from ``seed``, with the same difficulty mix in train and test.

        Quotas: train and test take the same share of each level of ``train_difficulty``
        (:func:`level_shares`: equal shares, except that a level with few problems is capped
        at ``CAPACITY_USE`` of them and the rest is spread over the other levels); ood takes
        equal shares of ``ood_difficulty``, the harder range of the task's knob. Each split's
        quota of a level is its share times its size, rounded by largest remainder
        (:func:`level_quotas`). No two examples of the splits share an
        :meth:`equivalence_key` (test is drawn first, then ood, then train); each split is
        shuffled. Raises :class:`TaskError` when a level holds too few distinct problems."""
        sizes = {"test": n_test, "ood": n_ood, "train": n_train}
        for split, n in sizes.items():
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
                raise TaskError(f"n_{split}={n!r} must be an int >= 0")
        ranges = {"train": self.train_difficulty, "test": self.train_difficulty, "ood": self.ood_difficulty}
        totals = {"train": n_train + n_test, "test": n_train + n_test, "ood": n_ood}
        seen: set[str] = set()
        out = {}
        for split, n in sizes.items():
            low, high = ranges[split]
            levels = list(range(low, high + 1))
            shares = level_shares({d: self.level_capacity(d) for d in levels}, int(totals[split]),
                                  where=f"{self.name} ({self.knob} in [{low}, {high}])")
            rng = np.random.default_rng([int(seed), stable_hash(self.name), SPLITS.index(split)])
            examples = []
            for difficulty, quota in level_quotas(int(n), shares).items():
                found, budget = 0, 50 * quota + 1000
                while found < quota:
                    if budget == 0:
                        raise TaskError(
                            f"{self.name}: found only {found} distinct {split} problems of {quota} asked "
                            f"at {self.knob} {difficulty}; ask fewer or widen the range")
                    budget -= 1
                    example = self.generate(rng, difficulty)
                    key = self.equivalence_key(example)
                    if key not in seen:
                        seen.add(key)
                        examples.append(example)
                        found += 1
            out[split] = [examples[i] for i in rng.permutation(len(examples))]
        return {split: out[split] for split in SPLITS}


CAPACITY_USE = 0.8  # the most of a level's distinct problems the splits may take together


def level_shares(capacity: Mapping[int, int | None], total: int, *, where: str = "") -> dict[int, float]:
    """The share p_d of each level d in a split of the ``total`` problems drawn from these levels:

        p_d = c_d / total   for the capped levels, where c_d = CAPACITY_USE * capacity_d is
                            below the equal share of what the capped levels leave
        p_d = (1 - sum of capped p) / (number of other levels)   otherwise

    (water filling; None capacity is unbounded). When every level is capped, p_d =
    capacity_d / sum of capacities. Raises :class:`TaskError` when the levels hold fewer than
    ``total`` distinct problems."""
    free, shares, budget = list(capacity), {}, 1.0
    while free:
        even = budget / len(free)
        capped = [d for d in free if capacity[d] is not None
                  and CAPACITY_USE * capacity[d] < even * total]
        if not capped:
            break
        for d in capped:
            shares[d] = CAPACITY_USE * capacity[d] / total
            budget -= shares[d]
            free.remove(d)
    if not free and total > 0 and budget > 1e-9:
        # every level is capped: take up to all of each, in proportion to its size
        held = sum(capacity.values())
        if total > held:
            raise TaskError(f"{where}: {total} problems asked but the levels hold only {held} "
                            f"distinct problems; ask fewer or widen the range")
        return {d: capacity[d] / held for d in capacity}
    for d in free:
        shares[d] = budget / len(free)
    return {d: shares[d] for d in capacity}


def level_quotas(n: int, shares: Mapping[int, float]) -> dict[int, int]:
    """``n`` split over levels in proportion to ``shares`` by largest remainder: floor(n p_d)
    each, then one more for the largest fractional parts (ties to the lower level)."""
    exact = {d: n * p for d, p in shares.items()}
    quotas = {d: int(np.floor(x + 1e-9)) for d, x in exact.items()}
    by_remainder = sorted(shares, key=lambda d: (-(exact[d] - quotas[d]), d))
    for d in by_remainder[: n - sum(quotas.values())]:
        quotas[d] += 1
    return quotas
