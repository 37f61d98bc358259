"""Static shapes, read by every stage: the one Shape type, how it prints, how shapes broadcast.

It sits below the front end beside `compiler.errors` because the checker, the IR, the code
generator and the views all reason about the same shapes, and imports flow one way.
"""
from __future__ import annotations

from functools import lru_cache

Dim = int | str  # an integer size, or a size name such as N bound when data arrives
Shape = tuple[Dim, ...]


def fmt_shape(shape: Shape) -> str:
    """`[N, 3]`, or `scalar` for `()`: how every message and view writes a shape."""
    return "[" + ", ".join(str(d) for d in shape) + "]" if shape else "scalar"


def broadcast(*shapes: Shape) -> Shape:
    """numpy's broadcasting on static shapes (size names compared by name); a ValueError
    where numpy refuses, as `np.broadcast_shapes` does."""
    out = ()
    for s in shapes:  # most often every shape is () or one and the same: no work per axis
        if s and s != out:
            if out:
                return _axis_by_axis(shapes)
            out = tuple(s)
    return out


@lru_cache(maxsize=1 << 10)  # a few pairs of shapes, met at every node of a layer
def _axis_by_axis(shapes: tuple[Shape, ...]) -> Shape:
    n = max((len(s) for s in shapes), default=0)
    out: list[Dim] = [1] * n
    for s in shapes:
        for i, d in enumerate((1,) * (n - len(s)) + tuple(s)):
            if d != 1:
                if out[i] not in (1, d):
                    raise ValueError("shapes " + ", ".join(map(fmt_shape, shapes))
                                     + " do not broadcast")
                out[i] = d
    return tuple(out)


def elementwise_shape(a: Shape, b: Shape) -> Shape | None:
    """The language's rule (LANGUAGE.md 2.3), the part of numpy's that cannot surprise: equal
    shapes, a scalar, or one shape the trailing part of the other (nothing of size 1 is
    stretched); the longer shape, or None."""
    short, long = sorted((a, b), key=len)
    return long if long[len(long) - len(short):] == short else None


def summed_axes(have: Shape, want: Shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """How a gradient of shape `have` is summed back to an operand of shape `want` that
    broadcasting widened: the leading axes `want` lacks (summed away), then the axes of the
    rest where `want` has 1 and `have` does not (summed keeping them, numbered after the
    leading ones are gone)."""
    lead = max(len(have) - len(want), 0)
    rest = tuple(have)[lead:]
    offset = len(want) - len(rest)
    kept = tuple(i for i, d in enumerate(rest) if want[offset + i] == 1 and d != 1)
    return tuple(range(lead)), kept
