"""Tower of Hanoi move lists (the puzzle of "The Illusion of Thinking"; difficulty = disks).

    prompt  "hanoi AAA>C:"          answer  "AC AB CB AC BA BC AC"

The prompt gives, for disks 1..n from the smallest, the peg each one sits on (every legal
position is determined by that: larger disks lie below smaller ones), then the goal peg that
must end up holding all disks. ``random_start=False`` gives the classic puzzle (all disks on
A, goal C, one instance per n); the default draws a random position and goal (3^n * 3 minus
the solved ones per n), so train and test hold different instances.

A move ``XY`` takes the top disk of peg X onto peg Y; moves are separated by blanks. The
reference is the optimal solution (2^n - 1 moves from the classic start); the verifier
accepts any legal sequence that ends with every disk on the goal peg, checked by simulation,
with at most ``2^(n+1)`` moves.
"""

from __future__ import annotations

import dataclasses

from jaxlab.tasks.base import MAX_RESPONSE_CHARS, Example, Task, TaskError

PEGS = "ABC"
MOVES = frozenset(a + b for a in PEGS for b in PEGS if a != b)


def move_cap(disks: int) -> int:
    """The most moves a verified answer may have: 2^(n+1), twice the longest optimal solution."""
    return 2 ** (disks + 1)


def solve(position: str, goal: str) -> list[str]:
    """The optimal moves from ``position`` (peg of disk 1..n, smallest first) to all disks on
    ``goal``: the largest misplaced disk k must move once, so move disks < k out of the way
    (onto the third peg), move k, then move the disks < k onto the goal."""
    pos = [PEGS.index(p) for p in position]
    moves: list[str] = []

    def tower(k: int, target: int) -> None:  # disks 0..k onto target; depth <= n
        if k < 0:
            return
        if pos[k] == target:
            tower(k - 1, target)
            return
        spare = 3 - pos[k] - target
        tower(k - 1, spare)
        moves.append(PEGS[pos[k]] + PEGS[target])
        pos[k] = target
        tower(k - 1, target)

    tower(len(pos) - 1, PEGS.index(goal))
    return moves


def simulate(position: str, goal: str, moves: list[str]) -> bool:
    """Whether ``moves`` are all legal from ``position`` and end with every disk on ``goal``."""
    n = len(position)
    stacks = {p: [] for p in PEGS}  # bottom .. top, disks numbered 1..n
    for disk in range(n, 0, -1):
        stacks[position[disk - 1]].append(disk)
    for move in moves:
        src, dst = stacks[move[0]], stacks[move[1]]
        if not src or (dst and dst[-1] < src[-1]):
            return False
        dst.append(src.pop())
    return len(stacks[goal]) == n


@dataclasses.dataclass(frozen=True)
class Hanoi(Task):
    """Move every disk onto the goal peg; ``random_start`` picks random positions and goals."""

    name = "hanoi"
    knob = "disks"
    max_difficulty = 10  # 2^11 moves of 3 characters already exceed MAX_RESPONSE_CHARS

    train_difficulty: tuple[int, int] = (2, 5)
    ood_difficulty: tuple[int, int] = (6, 7)
    random_start: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.random_start, bool):
            raise TaskError(f"hanoi: random_start={self.random_start!r} must be a bool")

    def _generate(self, rng, difficulty):
        if self.random_start:
            while True:
                position = "".join(PEGS[int(i)] for i in rng.integers(0, 3, size=difficulty))
                goal = PEGS[int(rng.integers(3))]
                if position != goal * difficulty:
                    break
        else:
            position, goal = "A" * difficulty, "C"
        meta = {"task": self.name, "difficulty": difficulty, "position": position, "goal": goal}
        return Example(f"hanoi {position}>{goal}:", " ".join(solve(position, goal)), meta)

    def level_capacity(self, difficulty):
        """3^n positions times 3 goals, less the 3 already solved; 1 for the classic start."""
        return 3 ** difficulty * 3 - 3 if self.random_start else 1

    def parse(self, answer):
        if len(answer) > MAX_RESPONSE_CHARS:
            return None
        moves = answer.split()
        if not moves or len(moves) > move_cap(self.max_difficulty) or any(m not in MOVES for m in moves):
            return None
        return moves

    def check(self, meta, parsed):
        position, goal = meta["position"], meta["goal"]
        return len(parsed) <= move_cap(len(position)) and simulate(position, goal, parsed)
