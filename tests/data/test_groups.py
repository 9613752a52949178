"""Permutation groups and their word problems: orders, closure, identity, inverses,
associativity, and the running product of a known sequence."""

import math

import numpy as np
import pytest

from jaxlab.data import groups


@pytest.mark.parametrize("name, order", [("S3", 6), ("A4", 12), ("A5", 60), ("S5", 120)])
def test_group_tables_are_groups(name, order):
    g = groups.permutation_group(name)
    G = g.order
    assert G == order and g.table.shape == (G, G)
    # the elements are distinct permutations, even ones for A<n>
    assert len({tuple(e) for e in g.elements}) == G
    assert all(sorted(e) == list(range(g.elements.shape[1])) for e in g.elements)
    # closure and cancellation: every row and column of the table is a permutation of the group
    assert all(sorted(row) == list(range(G)) for row in g.table)
    assert all(sorted(col) == list(range(G)) for col in g.table.T)
    # the identity, and the table is composition (g_a o g_b)(i) = g_a(g_b(i))
    assert np.array_equal(g.elements[g.identity], np.arange(g.elements.shape[1]))
    assert np.array_equal(g.table[g.identity], np.arange(G)) and np.array_equal(g.table[:, g.identity], np.arange(G))
    rng = np.random.default_rng(0)
    a, b, c = rng.integers(0, G, size=(3, 200))
    assert np.array_equal(g.elements[g.table[a, b]], np.take_along_axis(g.elements[a], g.elements[b], axis=1))
    assert np.array_equal(g.table[g.table[a, b], c], g.table[a, g.table[b, c]])  # associative
    if name.startswith("A"):
        n = g.elements.shape[1]
        assert G == math.factorial(n) // 2


def test_running_product_of_a_known_sequence():
    s3 = groups.permutation_group("S3")
    index = {tuple(e): a for a, e in enumerate(s3.elements)}
    swap01, swap12 = index[(1, 0, 2)], index[(0, 2, 1)]
    p = groups.running_products(s3, np.array([[swap01, swap12, swap12, swap01]]))
    # p_2 = swap12 o swap01 maps 0 -> 2, 1 -> 0, 2 -> 1; then swap12 undoes itself, swap01 too
    assert [tuple(s3.elements[x]) for x in p[0]] == [(1, 0, 2), (2, 0, 1), (1, 0, 2), (0, 1, 2)]
    words, products = groups.sample_words(groups.permutation_group("A4"), np.random.default_rng(1), 4, 7)
    assert words.shape == products.shape == (4, 7)
    assert np.array_equal(products[:, 0], words[:, 0])


def test_bad_names_and_words_are_refused():
    with pytest.raises(ValueError, match="S<n> or A<n>"):
        groups.permutation_group("D4")
    with pytest.raises(ValueError, match="element indices"):
        groups.running_products(groups.permutation_group("S3"), np.array([[0, 6]]))
