"""Local derivatives of every edge of the graph, and the order in which adjoints flow.

Elementwise nodes: sympy differentiates the node's scalar expression with respect to each input
symbol, and the result is written through the node's own value where it appears (sigmoid' comes
out as s·(1 - s), exp' as the node itself). The vector-Jacobian product is G ⊙ factor, summed
back over broadcast axes. Structural nodes: a short table of stated maps (`STRUCTURAL_MAPS`),
each tested against sympy on explicit matrices of symbols.

Reverse accumulation: the adjoint of a node is the sum over its consumers of their local maps
applied to the consumer's adjoint, visited in reverse topological order; each adjoint is a named
symbol, so nothing swells and the work is linear in the number of nodes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
import sympy as sp

from compiler.deps import ancestors
from compiler.errors import InternalError
from compiler.functions import relu
from compiler.ir import Graph, Node, symbol
from compiler.memo import rename, shape_of


@dataclass(frozen=True)
class Local:
    """∂node/∂input, as the map that carries the node's adjoint G back to the input."""

    node: str
    input: str
    expr: sp.Expr | None = None  # elementwise: the node's expression
    rule: StructuralMap | None = None  # structural: a stated map
    index: int = 0  # which operand of the node (`x @ x` has two Locals for x)

    @cached_property
    def factor(self) -> sp.Expr | None:
        """Elementwise: G ⊙ factor. Derived when asked for: code generation asks only for the
        first node of each shape (the others reuse its printed lines)."""
        return None if self.expr is None else _factor(self.expr, self.node, self.input)


@dataclass(frozen=True)
class StructuralMap:
    """A map G ↦ ... as numpy code and as maths; `{G}`, `{a}`, `{b}`, `{y}`, `{k}`, `{n}`,
    `{pad}` stand for the adjoint, the inputs, the node's value, the axis, the reduced count
    and the zeros around a slice (np.pad's widths)."""

    numpy: str
    maths: str
    needs_full_g: bool = True  # G must have the node's full shape (not a lazy broadcast)
    view: bool = False  # numpy's result is a view of G (shares its memory)


def _m(numpy: str, maths: str, needs_full_g: bool = True, view: bool = False) -> StructuralMap:
    return StructuralMap(numpy, maths, needs_full_g, view)


# (op, which input, ndim of the first input, ndim of the second) -> map. numpy's matmul rules.
_MATMUL = {
    (0, 2, 2): _m("{G} @ {b}.T", "G·{b}ᵀ"),
    (1, 2, 2): _m("{a}.T @ {G}", "{a}ᵀ·G"),
    (0, 2, 1): _m("np.outer({G}, {b})", "G·{b}ᵀ"),
    (1, 2, 1): _m("{a}.T @ {G}", "{a}ᵀ·G"),
    (0, 1, 2): _m("{b} @ {G}", "{b}·G"),
    (1, 1, 2): _m("np.outer({a}, {G})", "{a}ᵀ·G"),
    (0, 1, 1): _m("{G} * {b}", "G·{b}"),
    (1, 1, 1): _m("{G} * {a}", "G·{a}"),
}

STRUCTURAL_MAPS = {
    ("sum", False): _m("{G}", "G, broadcast to the shape of {a}", needs_full_g=False,
                         view=True),
    ("sum", True): _m("np.expand_dims({G}, {k})", "G, repeated along axis {k}", view=True),
    ("mean", False): _m("{G} / {n}", "G / {n}, broadcast to the shape of {a}", needs_full_g=False),
    ("mean", True): _m("np.expand_dims({G}, {k}) / {n}", "G / {n}, repeated along axis {k}"),
    ("logsumexp", False): _m("np.exp({a} - {y}) * {G}", "softmax({a}) ⊙ G", needs_full_g=False),
    ("logsumexp", True): _m("np.exp({a} - np.expand_dims({y}, {k})) * np.expand_dims({G}, {k})",
                            "softmax({a}) ⊙ G, along axis {k}"),
    ("logsumexp_keep", True): _m("np.exp({a} - {y}) * {G}", "softmax({a}) ⊙ G, along axis {k}",
                                 needs_full_g=False),
    ("softmax", True): _m("{y} * ({G} - np.sum({G} * {y}, axis={k}, keepdims=True))",
                          "{y} ⊙ (G - Σ_{k} G ⊙ {y})", needs_full_g=False),
    ("transpose", False): _m("{G}.T", "Gᵀ", view=True),
    # a scatter: G placed in the part of the last axis that was taken, zeros elsewhere
    ("slice", False): _m("np.pad({G}, {pad})", "G in the slice, 0 elsewhere"),
    ("index", False): _m("np.pad(np.expand_dims({G}, -1), {pad})", "G in the column, 0 elsewhere"),
}


def structural_map(g: Graph, node: Node, index: int) -> StructuralMap:
    if node.op == "matmul":
        a, b = (g.nodes[i] for i in node.inputs)
        return _MATMUL[(index, len(a.shape), len(b.shape))]
    op = "logsumexp_keep" if node.op == "logsumexp" and node.keepdims else node.op
    key = (op, node.axis is not None)
    if key not in STRUCTURAL_MAPS:
        raise InternalError(f"no derivative map for {node.op} (axis {node.axis})")
    return STRUCTURAL_MAPS[key]


def elementwise_factor(node: Node, wrt: str) -> sp.Expr:
    """∂node/∂wrt by sympy, written through the node's own value where it appears."""
    return _factor(node.expr, node.name, wrt)


_FACTORS: dict[tuple, tuple[sp.Expr, list[sp.Symbol]]] = {}


def _factor(expr: sp.Expr, name: str, wrt: str) -> sp.Expr:
    """Worked out once per shape of (expr, name, wrt) (`compiler.memo`): a chain's neurons
    and an MLP's layers differ only in their names, and sympy's diff is slow."""
    key, symbols = shape_of((expr,), (symbol(name), symbol(wrt)))
    known = _FACTORS.get(key)
    if known is not None:
        d, names = known
        return rename(d, dict(zip(names, symbols)))
    d = sp.diff(expr, symbol(wrt))
    if not expr.is_Symbol:
        d = d.subs(expr, symbol(name))
    if isinstance(expr, relu):  # relu(a) > 0 exactly where a > 0: the step read off the value,
        d = d.subs(sp.Heaviside(expr.args[0], 0), sp.Heaviside(symbol(name), 0))  # not `a`
    d = sp.factor_terms(d)
    _FACTORS[key] = d, symbols
    return d


def local_derivatives(g: Graph, node: Node, wanted=None) -> list[Local]:
    """One Local per input of an op node that is `wanted` (all when None). An input used twice
    by an elementwise node is one symbol, so one Local; `x @ x` gives two."""
    out = []
    for k, i in enumerate(node.inputs):
        if wanted is not None and i not in wanted:
            continue
        if node.op == "elementwise":
            out.append(Local(node.name, i, expr=node.expr))
        else:
            out.append(Local(node.name, i, rule=structural_map(g, node, k), index=k))
    return out


def needs_gradient(g: Graph, wrt: list[str]) -> set[str]:
    """Nodes on some path from a `wrt` leaf to the objective: only their adjoints are built."""
    if g.objective is None:
        return set()
    upstream = ancestors([g.objective], g.reads)
    downstream: set[str] = set(w for w in wrt if w in upstream)
    for n, node in g.nodes.items():  # topological order: inputs come first
        if n in upstream and any(i in downstream for i in node.inputs):
            downstream.add(n)
    return downstream


def backward_plan(g: Graph, wrt: list[str]) -> list[tuple[Node, list[Local]]]:
    """Reverse accumulation: each op node on a path to `wrt`, in reverse topological order,
    with the local maps that push its adjoint to those of its inputs."""
    needed = needs_gradient(g, wrt)
    return [(g.nodes[n], local_derivatives(g, g.nodes[n], needed))
            for n in reversed(list(g.nodes)) if n in needed and not g.nodes[n].is_leaf]
