"""The one Shape type's rules (compiler/shape.py), with numpy as the oracle: `broadcast` is
`np.broadcast_shapes` on static shapes, the language's rule is the part of it that cannot
surprise, and `summed_axes` sums a gradient back to exactly the operand's shape."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from compiler.shape import broadcast, elementwise_shape, fmt_shape, summed_axes

concrete = st.lists(st.integers(1, 3), max_size=4).map(tuple)
named = st.lists(st.one_of(st.integers(1, 3), st.sampled_from("NMK")), max_size=4).map(tuple)


@st.composite
def widened(draw, dims=concrete):
    """A shape and some that broadcast against it: its trailing parts, some dims made 1."""
    full = draw(dims)
    out = [full]
    for _ in range(draw(st.integers(1, 3))):
        part = full[draw(st.integers(0, len(full))):]
        out.append(tuple(1 if draw(st.booleans()) else d for d in part))
    return draw(st.permutations(out))


def numpy_broadcast(*shapes):
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        return None


def mine(*shapes):
    try:
        return broadcast(*shapes)
    except ValueError:
        return None


@given(st.one_of(widened(), st.lists(concrete, min_size=1, max_size=3)))
def test_broadcast_is_numpys_on_concrete_sizes(shapes):
    assert mine(*shapes) == numpy_broadcast(*shapes)


@given(st.one_of(widened(named), st.lists(named, min_size=1, max_size=3)))
def test_size_names_broadcast_as_distinct_sizes(shapes):
    """A size name is a size unknown until data arrives: it agrees only with itself (and 1)."""
    size = {"N": 101, "M": 102, "K": 103}  # none of them equal to a literal size
    concrete_shapes = [tuple(size.get(d, d) for d in s) for s in shapes]
    expect = numpy_broadcast(*concrete_shapes)
    got = mine(*shapes)
    assert (None if got is None else tuple(size.get(d, d) for d in got)) == expect


def test_a_mismatch_names_the_shapes():
    with pytest.raises(ValueError, match=r"shapes \[N, 2\], \[3\] do not broadcast"):
        broadcast(("N", 2), (3,))
    with pytest.raises(ValueError, match=r"shapes \[3\], scalar, \[3\], \[4\] do not broadcast"):
        broadcast((3,), (), (3,), (4,))  # after shapes all alike, which take no work per axis


@given(st.one_of(widened(named), st.lists(named, min_size=2, max_size=2)).map(lambda s: s[:2]))
def test_the_language_accepts_part_of_numpys_rule(pair):
    a, b = pair
    shape = elementwise_shape(a, b)
    if shape is not None:
        assert shape == mine(a, b) and shape in (a, b)
        short = min(a, b, key=len)
        assert shape[len(shape) - len(short):] == short  # the other's trailing part


@pytest.mark.parametrize("a, b, shape", [
    (("N", 10), (10,), ("N", 10)),  # a bias against rows
    ((), ("N", 3), ("N", 3)),  # a scalar against anything
    (("N", 3), ("N", 3), ("N", 3)),
    (("N", 1), ("N",), None),  # numpy would give [N, N]: the bug the rule is there for
    ((1, 3), ("N", 3), None),  # numpy would stretch the 1
    (("N",), ("M",), None),
])
def test_the_language_rule(a, b, shape):
    assert elementwise_shape(a, b) == shape == elementwise_shape(b, a)


@given(widened().map(lambda s: (s[0], s[1])), st.data())
def test_summed_axes_sum_a_gradient_back_to_the_operand(pair, data):
    """For an operand `a` of shape `want` broadcast against a value of shape `have`, the
    gradient of sum(G ⊙ broadcast(a)) is G summed over `summed_axes`: check it on a random
    direction (the map is linear, so this holds exactly) and check the shape."""
    want = pair[1]
    have = np.broadcast_shapes(*pair)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    g, delta = rng.normal(size=have), rng.normal(size=want)
    lead, kept = summed_axes(have, want)
    grad = g.sum(axis=lead).sum(axis=kept, keepdims=True)
    assert grad.shape == want
    assert np.isclose((grad * delta).sum(), (g * np.broadcast_to(delta, have)).sum())


def test_fmt_shape():
    assert fmt_shape(()) == "scalar"
    assert fmt_shape(("N", 3)) == "[N, 3]"
    assert fmt_shape((1,)) == "[1]"
