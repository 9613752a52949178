"""Countdown: combine the given numbers with ``+ - * /`` and parentheses to hit the target.

    prompt  "cd 3 5 7 t 22:"        answer  "3*5+7"

Difficulty = how many numbers are given; every number must be used exactly as often as it is
given (the multiset of literals equals the given numbers). Instances are solvable by
construction: the generator builds a random expression tree over the numbers whose
intermediate values are positive integers (exact divisions only) and takes its value as the
target; that expression (minimal parentheses) is the reference answer. The verifier accepts
any expression that evaluates exactly (``fractions.Fraction``, so ``8/(3-8/3)`` is 24) to the
target.

Parsing hostile text: at most ``MAX_EXPRESSION_CHARS`` characters from ``0-9 + - * / ( )`` and
spaces, parenthesis depth at most ``MAX_DEPTH``, checked before ``ast.parse`` (which is only
parsing, never evaluation); then every AST node must be a binary ``+ - * /`` or an integer
literal (so ``**``, ``//``, unary minus, calls and names are rejected), with at most
``MAX_NODES`` nodes and literals below ``MAX_LITERAL``. Evaluation happens only after the
literal multiset matched the given numbers; division by zero scores 0.
"""

from __future__ import annotations

import ast
import dataclasses
from collections import Counter
from fractions import Fraction

import numpy as np

from jaxlab.tasks.base import Example, Task, TaskError

MAX_EXPRESSION_CHARS = 256
MAX_DEPTH = 32
MAX_NODES = 64
MAX_LITERAL = 10 ** 6
MAX_DRAWS = 10_000
ALLOWED_CHARS = frozenset("0123456789+-*/() ")
BINARY_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}

# An expression tree: an int leaf, or (op, left, right) with op in "+-*/".
Tree = int | tuple


def to_text(tree: Tree) -> str:
    """The expression with the fewest parentheses that keep its meaning (left-associative
    ``-`` and ``/`` parenthesise an equal-precedence right operand)."""
    if isinstance(tree, int):
        return str(tree)
    op, left, right = tree

    def prec(t):
        return 3 if isinstance(t, int) else PRECEDENCE[t[0]]

    left_text, right_text = to_text(left), to_text(right)
    if prec(left) < PRECEDENCE[op]:
        left_text = f"({left_text})"
    if prec(right) < PRECEDENCE[op] or (prec(right) == PRECEDENCE[op] and op in "-/"):
        right_text = f"({right_text})"
    return f"{left_text}{op}{right_text}"


def evaluate(tree: Tree) -> Fraction | None:
    """Exact value of the tree, or None on a division by zero."""
    if isinstance(tree, int):
        return Fraction(tree)
    op, left, right = tree
    a, b = evaluate(left), evaluate(right)
    if a is None or b is None:
        return None
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return None if b == 0 else a / b


def leaves(tree: Tree) -> list[int]:
    return [tree] if isinstance(tree, int) else leaves(tree[1]) + leaves(tree[2])


def parse_expression(text: str) -> Tree | None:
    """The tree of a whitelisted arithmetic expression (module docstring), or None."""
    if not text or len(text) > MAX_EXPRESSION_CHARS or not set(text) <= ALLOWED_CHARS:
        return None
    depth = 0
    for c in text:
        depth += (c == "(") - (c == ")")
        if depth < 0 or depth > MAX_DEPTH:
            return None
    if depth:
        return None
    try:
        body = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    nodes = list(ast.walk(body))
    if len(nodes) > MAX_NODES:
        return None
    for node in nodes:
        if isinstance(node, ast.BinOp):
            if type(node.op) not in BINARY_OPS:
                return None
        elif isinstance(node, ast.operator):
            continue
        elif not (isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value < MAX_LITERAL):
            return None

    def build(node):  # recursion depth <= MAX_NODES
        if isinstance(node, ast.Constant):
            return node.value
        return (BINARY_OPS[type(node.op)], build(node.left), build(node.right))

    return build(body)


def random_tree(rng: np.random.Generator, numbers: list[int], max_value: int) -> Tree:
    """A random tree using each number once, every intermediate value a positive integer
    <= ``max_value``: repeatedly merge two random subtrees with a random valid operator."""
    pool = [(n, n) for n in numbers]  # (tree, value)
    while len(pool) > 1:
        i, j = rng.choice(len(pool), size=2, replace=False)
        (x, vx), (y, vy) = pool[i], pool[j]
        pool = [p for k, p in enumerate(pool) if k not in (i, j)]
        if vx < vy:
            (x, vx), (y, vy) = (y, vy), (x, vx)
        options = [("+", x, y, vx + vy)]
        if vx != vy:
            options.append(("-", x, y, vx - vy))
        if vx * vy <= max_value and vy > 1:
            options.append(("*", x, y, vx * vy))
        if vy > 1 and vx % vy == 0:
            options.append(("/", x, y, vx // vy))
        op, left, right, value = options[int(rng.integers(len(options)))]
        if op in "+*" and rng.integers(2):
            left, right = right, left
        pool.append(((op, left, right), value))
    return pool[0][0]


@dataclasses.dataclass(frozen=True)
class Countdown(Task):
    """Numbers drawn from 1..``max_number``; targets in 1..``max_target``."""

    name = "countdown"
    knob = "numbers"
    min_difficulty = 2
    max_difficulty = 10

    train_difficulty: tuple[int, int] = (3, 4)
    ood_difficulty: tuple[int, int] = (5, 6)
    max_number: int = 20
    max_target: int = 200

    def __post_init__(self):
        super().__post_init__()
        if not 2 <= self.max_number < MAX_LITERAL or not 1 <= self.max_target:
            raise TaskError(f"countdown: max_number={self.max_number} must be in [2, {MAX_LITERAL}) and "
                            f"max_target={self.max_target} >= 1")

    def _generate(self, rng, difficulty):
        for _ in range(MAX_DRAWS):  # with the default settings nearly every draw lands in range
            numbers = [int(n) for n in rng.integers(1, self.max_number + 1, size=difficulty)]
            tree = random_tree(rng, numbers, max_value=self.max_target * self.max_number)
            target = evaluate(tree)
            if 1 <= target <= self.max_target:
                break
        else:
            raise TaskError(f"countdown: no target <= max_target={self.max_target} in {MAX_DRAWS} draws "
                            f"of {difficulty} numbers up to {self.max_number}; raise max_target")
        meta = {"task": self.name, "difficulty": difficulty, "numbers": numbers, "target": int(target)}
        prompt = f"cd {' '.join(map(str, numbers))} t {int(target)}:"
        return Example(prompt, to_text(tree), meta)

    def equivalence_key(self, example):
        """The same numbers in another order, with the same target, are one problem."""
        return f"{sorted(example.meta['numbers'])} t {example.meta['target']}"

    def parse(self, answer):
        return parse_expression(answer)

    def check(self, meta, parsed):
        if Counter(leaves(parsed)) != Counter(int(n) for n in meta["numbers"]):
            return False
        return evaluate(parsed) == int(meta["target"])
