"""Least-squares objectives recognised on the graph: `sum(r^2)`, `mean((f - y)^2)`,
`0.5 * sum(((f - y) / sigma)^2)`, `mean(square(...))`.

The objective must be a reduction over everything (`sum` or `mean`, times a positive number or
not) of an elementwise node whose expression is a product of even powers (and a positive
number): then that product's square root is the residual, and the objective equals
`factor · sum(residual²)` (or `factor · mean(residual²)`). Recognised on the IR, so the way the
text is written (a separate statement, `square`, `**`, a fraction) does not matter.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from compiler.deps import ancestors
from compiler.ir import Graph
from compiler.shape import Shape


@dataclass(frozen=True)
class LeastSquares:
    kind: str  # "sum" or "mean": objective == factor * kind(residual**2)
    factor: float
    node: str  # the elementwise node that is squared and reduced
    residual: sp.Expr  # over the symbols of that node's inputs
    shape: Shape  # of the residual: the node's shape
    weighted: bool  # divided by a value that depends on data only (given sigmas)


def least_squares(g: Graph) -> LeastSquares | None:
    """The objective as a sum or mean of squares, or None when it is not one."""
    if g.objective is None:
        return None
    node = g.nodes[g.objective]
    factor = sp.S.One
    if node.op == "elementwise":  # `0.5 * sum(...)`: a positive number times a reduction
        factor, rest = node.expr.as_coeff_Mul()
        if not (factor.is_Number and factor.is_positive and factor.is_finite and rest.is_Symbol):
            return None
        node = g.nodes[rest.name]
    if node.op not in ("sum", "mean") or node.axis is not None:
        return None
    squared = g.nodes[node.inputs[0]]
    if squared.op != "elementwise":
        return None
    residual = _square_root(squared.expr)
    if residual is None:
        return None
    return LeastSquares(node.op, float(factor), squared.name, residual, squared.shape,
                        _weighted(g, residual))


def _square_root(expr: sp.Expr) -> sp.Expr | None:
    """r with r² == expr when expr is a positive number times even powers, else None."""
    coeff, factors = expr.as_coeff_mul()
    if not (coeff.is_Number and coeff.is_positive and coeff.is_finite) or not factors:
        return None
    root = sp.sqrt(coeff)
    for f in factors:
        base, e = f.as_base_exp()
        if not (e.is_Integer and e % 2 == 0):
            return None
        root *= base ** (e // 2)
    return root


def _weighted(g: Graph, residual: sp.Expr) -> bool:
    """Is the residual divided by something that depends on no param (a chi-square with given
    sigmas, as `curve_fit(absolute_sigma=True)` reads it)?"""
    params = set(g.params)
    for f in sp.Mul.make_args(residual):
        base, e = f.as_base_exp()
        if e.is_negative and base.free_symbols and not any(
                params & ancestors([s.name], g.reads) for s in base.free_symbols):
            return True
    return False
