"""What a named value depends on: the one `ancestors`, for the checked model and the IR alike.

It sits below the front end beside `compiler.errors` because both the checker (unused params,
what a target reads) and the compiler (liveness, what the objective reaches) ask it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping


def ancestors(roots: Iterable[str],
              reads: Callable[[str], Iterable[str]] | Mapping[str, Iterable[str]]) -> set[str]:
    """Every name some root depends on, roots included, where `reads(name)` (or `reads[name]`)
    gives the names it reads directly; iterative, so a chain of 10,000 statements is fine. A
    table is followed without a Python call per name: code generation follows a graph of
    thousands of nodes a dozen times."""
    if isinstance(reads, Mapping):
        reads = reads.__getitem__
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(reads(n))
    return seen
