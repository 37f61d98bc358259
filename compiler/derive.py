"""Local derivatives of every edge of the graph, and the order in which adjoints flow.

Elementwise nodes: sympy differentiates the node's scalar expression with respect to each input
symbol, and the result is written through the node's own value where it appears (sigmoid' comes
out as s·(1 - s), exp' as the node itself). The vector-Jacobian product is G ⊙ factor, summed
back over broadcast axes. Structural nodes: the stated map of the op's rule
(`compiler.structural`), each tested against sympy on explicit matrices of symbols.

Reverse accumulation: the adjoint of a node is the sum over its consumers of their local maps
applied to the consumer's adjoint, visited in reverse topological order; each adjoint is a named
symbol, so nothing swells and the work is linear in the number of nodes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
import sympy as sp

from compiler.deps import ancestors
from compiler.functions import relu
from compiler.ir import Graph, Node, symbol
from compiler.memo import rename, shape_of
from compiler.structural import StructuralMap, rule


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
            out.append(Local(node.name, i, rule=rule(node.op).numpy_map(g, node, k), index=k))
    return out


def needs_gradient(g: Graph, wrt: list[str]) -> set[str]:
    """Nodes on some path from a `wrt` leaf to the objective: only their adjoints are built."""
    if g.objective is None:
        return set()
    upstream = ancestors([g.objective], g.reads)
    downstream: set[str] = set(w for w in wrt if w in upstream)
    for n, node in g.nodes.items():  # topological order: inputs come first
        if n in upstream and not downstream.isdisjoint(node.inputs):
            downstream.add(n)
    return downstream


def backward_plan(g: Graph, wrt: list[str], needed: set[str] | None = None
                  ) -> list[tuple[Node, list[Local]]]:
    """Reverse accumulation: each op node on a path to `wrt`, in reverse topological order,
    with the local maps that push its adjoint to those of its inputs. `needed`: the
    `needs_gradient` of `wrt`, where the caller has it already."""
    needed = needs_gradient(g, wrt) if needed is None else needed
    return [(g.nodes[n], local_derivatives(g, g.nodes[n], needed))
            for n in reversed(list(g.nodes)) if n in needed and not g.nodes[n].is_leaf]
