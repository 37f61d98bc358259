"""The graph IR: one node per operation, in a deterministic topological order.

A `.model` statement lowers to one or more nodes. Elementwise maths stays whole inside one node
as a sympy expression over the scalar symbols of its inputs (sympy differentiates it); each
structural operation (`@`, reductions, softmax, transpose, index, slice) is a node of its own,
whose derivative
is a stated map. Nodes a statement needs in between are named `stmt.1`, `stmt.2`, ...: a dot
cannot appear in a user's name, so they never collide.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import sympy as sp

from compiler.errors import Span
from compiler.shape import Shape

LEAF_KINDS = ("input", "param", "const")


@dataclass
class Node:
    name: str
    kind: str  # input | param | const | op
    shape: Shape
    span: Span
    op: str | None = None  # elementwise, or the IR op of one of compiler.ops.STRUCTURAL
    inputs: tuple[str, ...] = ()
    expr: sp.Expr | None = None  # elementwise: over symbol(input) for each input
    axis: int | None = None  # reductions and softmax; None reduces everything
    keepdims: bool = False
    stmt: str = ""  # the statement this node belongs to
    source: str = ""  # that statement's text, for comments in generated code
    value: float | None = None  # const
    part: tuple[int, int] | None = None  # index and slice: [start, stop) of the last axis
    written: tuple[str, ...] = ()  # elementwise: the inputs in the order the statement writes them

    def part_code(self) -> str:
        """The subscript of an index or slice as numpy writes it: `:, 0` or `:, 1:3`."""
        start, stop = self.part
        last = str(start) if self.op == "index" else f"{start}:{stop}"
        return ", ".join([":"] * (len(self.shape) - (self.op == "slice")) + [last])

    @property
    def is_leaf(self) -> bool:
        return self.kind in LEAF_KINDS


@dataclass
class Graph:
    file: str
    nodes: dict[str, Node] = field(default_factory=dict)  # insertion order is topological
    objective: str | None = None
    predict: str | None = None
    reports: list[str] = field(default_factory=list)  # scalars given ± σ after a fit
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)  # param -> (lo, hi)
    target: str | None = None  # a node of data only, that the report scores `predict` against
    rewrites: list[str] = field(default_factory=list)  # stable forms applied, for the report
    # kind -> its nodes, in order: code generation asks for the params and inputs of a graph of
    # thousands of nodes dozens of times (nodes are added only by `add`, which forgets them)
    _of_kind: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False,
                                           compare=False)

    def add(self, node: Node) -> Node:
        self.nodes[node.name] = node
        self._of_kind.clear()
        return node

    def of_kind(self, kind: str) -> list[str]:
        names = self._of_kind.get(kind)
        if names is None:
            names = self._of_kind[kind] = [n for n, node in self.nodes.items() if node.kind == kind]
        return list(names)

    @property
    def params(self) -> list[str]:
        return self.of_kind("param")

    @property
    def inputs(self) -> list[str]:
        return self.of_kind("input")

    def reads(self, name: str) -> tuple[str, ...]:
        """The nodes `name` reads directly (`compiler.deps.ancestors` follows them)."""
        return self.nodes[name].inputs

    def size_names(self) -> dict[str, tuple[str, int]]:
        """Each size name, with the first input and axis that carries it."""
        out: dict[str, tuple[str, int]] = {}
        for n in self.inputs:
            for axis, d in enumerate(self.nodes[n].shape):
                if isinstance(d, str):
                    out.setdefault(d, (n, axis))
        return out


@lru_cache(maxsize=None)
def symbol(name: str) -> sp.Symbol:
    """The scalar symbol that stands for one element of a node inside elementwise maths (one
    object per name: sympy's own constructor is slow), made by the uncached constructor that
    `sp.Symbol(name, real=True)` calls through sympy's cache: this cache already keeps one per
    name, and the second lookup was half of the 3.5 us a symbol cost."""
    return sp.Symbol.__xnew__(sp.Symbol, name, real=True)

