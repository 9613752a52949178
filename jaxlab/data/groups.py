"""Finite permutation groups and their word problems (state tracking), in NumPy.

A group is its element table: the permutations of {0 .. n-1} it holds, in lexicographic order,
so an element is an index into that table. The product table is

    table[a, b] = index of (g_a o g_b),      (g_a o g_b)(i) = g_a(g_b(i))

(apply g_b, then g_a). Groups: ``S<n>`` (all n! permutations) and ``A<n>`` (the even ones,
n! / 2); S5 (120 elements) is not solvable, A4 (12) and S3 (6) are.

The word problem: a sequence of elements g_1 .. g_T and, at every position, the running
product (the state after applying the moves in order)

    p_1 = g_1,      p_t = g_t o p_{t-1}

so p_T = g_T o ... o g_1.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re

import numpy as np

_NAME = re.compile(r"^([SA])([1-9])$")


@dataclasses.dataclass(frozen=True)
class PermutationGroup:
    name: str
    elements: np.ndarray   # [G, n] int: element a maps i to elements[a, i]
    table: np.ndarray      # [G, G] int: table[a, b] = index of (g_a o g_b)
    identity: int

    @property
    def order(self) -> int:
        return int(self.elements.shape[0])


def _parity(perm: tuple[int, ...]) -> int:
    """0 for an even permutation, 1 for an odd one (by counting inversions)."""
    return sum(perm[i] > perm[j] for i in range(len(perm)) for j in range(i + 1, len(perm))) % 2


def permutation_group(name: str) -> PermutationGroup:
    """``S<n>`` or ``A<n>`` (1 <= n <= 9): its lexicographically ordered elements and product
    table (module docstring). Raises ValueError for another name."""
    match = _NAME.match(name)
    if not match:
        raise ValueError(f"group name must be S<n> or A<n> with 1 <= n <= 9, got {name!r}")
    kind, n = match.group(1), int(match.group(2))
    perms = [p for p in itertools.permutations(range(n)) if kind == "S" or _parity(p) == 0]
    elements = np.array(perms, dtype=np.int64).reshape(len(perms), n)
    index = {p: a for a, p in enumerate(perms)}
    # (g_a o g_b)(i) = g_a[g_b[i]]
    table = np.array([[index[tuple(elements[a][elements[b]])] for b in range(len(perms))]
                      for a in range(len(perms))], dtype=np.int64)
    assert len(perms) == (math.factorial(n) if kind == "S" else max(math.factorial(n) // 2, 1))
    return PermutationGroup(name, elements, table, index[tuple(range(n))])


def running_products(group: PermutationGroup, words_BT: np.ndarray) -> np.ndarray:
    """p [B, T]: p_1 = g_1, p_t = g_t o p_{t-1} for each row of element indices [B, T]."""
    words_BT = np.asarray(words_BT)
    if words_BT.ndim != 2 or words_BT.size and (words_BT.min() < 0 or words_BT.max() >= group.order):
        raise ValueError(f"words must be [B, T] element indices of {group.name} (0 .. {group.order - 1}), "
                         f"got shape {words_BT.shape}")
    out = np.empty_like(words_BT)
    state = np.full(words_BT.shape[0], group.identity, dtype=words_BT.dtype)
    for t in range(words_BT.shape[1]):
        state = group.table[words_BT[:, t], state]
        out[:, t] = state
    return out


def sample_words(group: PermutationGroup, rng: np.random.Generator, batch: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(words [B, T], running products [B, T]): elements drawn uniformly and independently."""
    words = rng.integers(0, group.order, size=(batch, length))
    return words, running_products(group, words)
