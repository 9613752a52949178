"""Multi-digit integer arithmetic: ``"12+345="`` -> ``"357"``.

Difficulty = the number of digits of each operand (both operands have exactly that many; a
1-digit operand may be 0). The operator is drawn from ``ops`` (a subset of ``+-*``). The answer
is the exact integer in decimal (``-`` for a negative difference); the verifier compares the
value, so ``"0357"`` counts as 357 but ``"357.0"`` or ``"٣٥٧"`` (non-ASCII digits) do not.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxlab.tasks.base import Example, Task, TaskError, ascii_int

OPS = "+-*"


def apply_op(a: int, op: str, b: int) -> int:
    """``a op b`` for op in ``+ - *``."""
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def random_operand(rng: np.random.Generator, digits: int) -> int:
    """A uniform integer with exactly ``digits`` decimal digits (0..9 for one digit)."""
    low = 0 if digits == 1 else 10 ** (digits - 1)
    # Python ints: numpy's int64 cannot hold 19+ digits, so draw digit by digit above 18.
    if digits <= 18:
        return int(rng.integers(low, 10 ** digits))
    first = int(rng.integers(1, 10))
    rest = "".join(str(int(d)) for d in rng.integers(0, 10, size=digits - 1))
    return int(f"{first}{rest}")


@dataclasses.dataclass(frozen=True)
class Arithmetic(Task):
    """``a op b`` with ``difficulty``-digit operands; ``ops`` picks the operators."""

    name = "arithmetic"
    knob = "digits per operand"
    max_difficulty = 30

    train_difficulty: tuple[int, int] = (1, 3)
    ood_difficulty: tuple[int, int] = (4, 5)
    ops: str = "+-"

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.ops, str) or not self.ops or any(op not in OPS for op in self.ops):
            raise TaskError(f"arithmetic: ops={self.ops!r} must be a non-empty string of {OPS!r}")

    def _generate(self, rng, difficulty):
        a, b = random_operand(rng, difficulty), random_operand(rng, difficulty)
        op = self.ops[int(rng.integers(len(self.ops)))]
        meta = {"task": self.name, "difficulty": difficulty, "a": a, "op": op, "b": b}
        return Example(f"{a}{op}{b}=", str(apply_op(a, op, b)), meta)

    def equivalence_key(self, example):
        """``a+b`` and ``b+a`` (also ``*``) are one problem; ``-`` keeps its order."""
        a, op, b = example.meta["a"], example.meta["op"], example.meta["b"]
        if op in "+*":
            a, b = sorted((a, b))
        return f"{a}{op}{b}"

    def level_capacity(self, difficulty):
        """With n = operands of ``difficulty`` digits (10 for one digit, else 9 * 10^(d-1)):
        n (n + 1) / 2 unordered pairs for ``+`` and ``*``, n^2 ordered pairs for ``-``."""
        n = 10 if difficulty == 1 else 9 * 10 ** (difficulty - 1)
        return sum(n * n if op == "-" else n * (n + 1) // 2 for op in self.ops)

    def parse(self, answer):
        # The largest exact answer has 2 * max_difficulty digits (a product).
        return ascii_int(answer, 2 * self.max_difficulty + 2)

    def check(self, meta, parsed):
        return parsed == apply_op(int(meta["a"]), meta["op"], int(meta["b"]))
