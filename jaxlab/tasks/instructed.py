"""Tasks phrased for an instruction-tuned model, read with a lenient answer parser.

    instructed_arithmetic  "What is 12+34? Answer with the number only."            -> "46"
    card_sum               "Cards: 7, K, 3. J, Q and K count as 10. What is the sum
                            of the cards? Answer with the number only."             -> "20"

A small chat model (SmolLM2-135M-Instruct) asked ``12+34=`` writes a sentence, which the strict
parsers of :mod:`jaxlab.tasks.arithmetic` score 0 whatever its value; asked in words it often
answers "12 + 34 = 46" or "The answer is 46.". These tasks therefore take as the answer the
last integer of the answer line (:func:`last_integer`; the answer line is the last non-blank
line, as for every task). A sentence that ends with the right value is right, one that ends
with another number (an unfinished sum, a restated operand) is wrong.

``card_sum`` has a RULE variant for out-of-distribution tests (Chu et al. 2025, "SFT Memorizes,
RL Generalizes", GeneralPoints): the prompt states what the face cards are worth, ``10, 10, 10``
in distribution and ``11, 12, 13`` out of it (``ood_face_values``). Every hand holds at least
one face card, so the rule always changes the answer; the OOD split is the test split's hands
under the other rule (same hands, other rule: the rule is the only change).

Both tasks are in :data:`jaxlab.tasks.TASKS` (the RL scorer looks a task up by the name in
its meta).
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from jaxlab.tasks.arithmetic import Arithmetic, apply_op
from jaxlab.tasks.base import Example, Task, TaskError

INSTRUCTION = "Answer with the number only."
MAX_INT_DIGITS = 64
# an optional sign, then digits with thousands commas ("1,234") or plain digits; ASCII only
_INTEGER = re.compile(r"-?(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)")


def last_integer(text: str, max_digits: int = MAX_INT_DIGITS) -> int | None:
    """The value of the last integer written in ``text``: the last match of an optional ``-``
    followed by ASCII digits (thousands commas allowed: "1,234" is 1234), else None. None too
    when it has more than ``max_digits`` digits (bounded work on hostile text).

        "12 + 34 = 46."  -> 46        "The answer is -3"  -> -3       "no number" -> None
    """
    matches = _INTEGER.findall(text)
    if not matches:
        return None
    token = matches[-1].replace(",", "")
    digits = token.lstrip("-")
    if not 1 <= len(digits) <= max_digits:
        return None
    return int(token)


@dataclasses.dataclass(frozen=True)
class InstructedArithmetic(Arithmetic):
    """:class:`~jaxlab.tasks.arithmetic.Arithmetic` asked in words, with the lenient parser
    (module docstring). Difficulty, splits and equivalent forms are those of arithmetic."""

    name = "instructed_arithmetic"

    def _generate(self, rng, difficulty):
        ex = super()._generate(rng, difficulty)
        m = ex.meta
        return Example(f"What is {m['a']}{m['op']}{m['b']}? {INSTRUCTION}", ex.answer, m)

    def parse(self, answer):
        return last_integer(answer, 2 * self.max_difficulty + 2)

    def check(self, meta, parsed):
        return parsed == apply_op(int(meta["a"]), meta["op"], int(meta["b"]))


RANKS = ("2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
FACES = ("J", "Q", "K")
N_NUMBER_RANKS = len(RANKS) - len(FACES)


def card_value(rank: str, face_values: tuple[int, int, int]) -> int:
    """A card's value: its number for 2..10, ``face_values`` = (J, Q, K) for a face card."""
    if rank in FACES:
        return int(face_values[FACES.index(rank)])
    return int(rank)


def rule_text(face_values: tuple[int, int, int]) -> str:
    """The rule sentence of a prompt: "J, Q and K count as 10." when the three are equal, else
    "J, Q and K count as 11, 12 and 13."."""
    j, q, k = (int(v) for v in face_values)
    if j == q == k:
        return f"J, Q and K count as {j}."
    return f"J, Q and K count as {j}, {q} and {k}."


def hands_with_a_face(n: int) -> int:
    """Distinct hands (multisets) of n cards from the 12 ranks holding at least one face card:

        C(12 + n - 1, n) - C(9 + n - 1, n)      (all multisets minus those of number cards)

    33 for n = 2, 199 for n = 3, 870 for n = 4."""
    return math.comb(len(RANKS) + n - 1, n) - math.comb(N_NUMBER_RANKS + n - 1, n)


@dataclasses.dataclass(frozen=True)
class CardSum(Task):
    """The sum of a hand of ``difficulty`` cards under the rule the prompt states.

    face_values: what J, Q and K are worth in the train and test splits; ood_face_values: in
    the OOD split (the rule variant). ``ood_difficulty`` is not used: the OOD split changes
    the rule, not the hand size (it must still be a valid range)."""

    name = "card_sum"
    knob = "cards"
    min_difficulty = 2
    max_difficulty = 12

    train_difficulty: tuple[int, int] = (3, 5)
    ood_difficulty: tuple[int, int] = (3, 5)
    face_values: tuple[int, int, int] = (10, 10, 10)
    ood_face_values: tuple[int, int, int] = (11, 12, 13)

    def __post_init__(self):
        super().__post_init__()
        for field in ("face_values", "ood_face_values"):
            value = tuple(getattr(self, field))
            if len(value) != 3 or not all(isinstance(v, (int, np.integer)) and 1 <= v <= 99 for v in value):
                raise TaskError(f"card_sum: {field}={value!r} must be three ints in [1, 99] (J, Q, K)")
            object.__setattr__(self, field, tuple(int(v) for v in value))
        if self.face_values == self.ood_face_values:
            raise TaskError("card_sum: the OOD rule must differ from the training rule")

    def example(self, hand: list[str], face_values: tuple[int, int, int]) -> Example:
        """The problem of one hand under one rule."""
        meta = {"task": self.name, "difficulty": len(hand), "hand": list(hand),
                "face_values": [int(v) for v in face_values]}
        prompt = (f"Cards: {', '.join(hand)}. {rule_text(face_values)} What is the sum of the cards? "
                  f"{INSTRUCTION}")
        return Example(prompt, str(sum(card_value(r, face_values) for r in hand)), meta)

    def _generate(self, rng, difficulty):
        hand = [RANKS[int(i)] for i in rng.integers(0, len(RANKS), size=difficulty)]
        if not any(r in FACES for r in hand):  # every hand holds a face card: the rule matters
            hand[int(rng.integers(difficulty))] = FACES[int(rng.integers(len(FACES)))]
        return self.example(hand, self.face_values)

    def equivalence_key(self, example):
        """The same cards in another order are one problem (one sum) under one rule."""
        return f"{sorted(example.meta['hand'])}|{example.meta['face_values']}"

    def level_capacity(self, difficulty):
        return hands_with_a_face(difficulty)

    def splits(self, seed, n_train, n_test, n_ood):
        """Train and test as :meth:`Task.splits` (with ``face_values``); ood: the first
        ``n_ood`` test hands under ``ood_face_values`` (needs n_ood <= n_test)."""
        if isinstance(n_ood, bool) or not isinstance(n_ood, (int, np.integer)) or not 0 <= n_ood <= n_test:
            raise TaskError(f"card_sum: n_ood={n_ood!r} must be an int in [0, n_test={n_test}] "
                            "(the OOD split re-asks test hands under the other rule)")
        out = super().splits(seed, n_train, n_test, 0)
        out["ood"] = [self.example(ex.meta["hand"], self.ood_face_values) for ex in out["test"][:n_ood]]
        return out

    def parse(self, answer):
        return last_integer(answer, 6)

    def check(self, meta, parsed):
        face_values = tuple(int(v) for v in meta["face_values"])
        return parsed == sum(card_value(str(r), face_values) for r in meta["hand"])
