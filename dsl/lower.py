"""The checked AST lowered to the compiler's graph IR.

Elementwise maths becomes one sympy expression per node; each structural operation becomes a
node of its own. `log(softmax(x))` is rewritten to `x - logsumexp(x)` here, where the structure
is still visible (LANGUAGE.md promises stable forms).
"""
from __future__ import annotations

import sympy as sp

from compiler.functions import ELEMENTWISE, stabilize
from compiler.ir import Graph, Node, symbol
from dsl.check import Checked, Typed

_STRUCTURAL = {"@": "matmul", "sum": "sum", "mean": "mean", "logsumexp": "logsumexp",
               "softmax": "softmax", "transpose": "transpose"}


def lower(m: Checked, text: str) -> Graph:
    g = Graph(m.file, objective=m.objective, predict=m.predict)
    lines = text.split("\n")
    for name in m.order:
        st = m.statements[name]
        source = lines[st.span.line - 1].split("#")[0].strip() if st.span.line <= len(lines) else ""
        if name in m.inputs:
            g.add(Node(name, "input", m.shapes[name], st.span, stmt=name, source=source))
        elif name in m.params:
            g.add(Node(name, "param", m.shapes[name], st.span, stmt=name, source=source))
        elif name in m.consts:
            g.add(Node(name, "const", (), st.span, stmt=name, source=source, value=st.value))
        else:
            _Statement(g, name, source).lower(m.nodes[name])
    return g


class _Statement:
    """Lowers one equation: structural sub-expressions become nodes `name.1`, `name.2`, ..."""

    def __init__(self, g: Graph, name: str, source: str):
        self.g, self.name, self.source = g, name, source
        self.count = 0

    def lower(self, t: Typed) -> None:
        if t.op in _STRUCTURAL:
            self._structural(t, self.name)
        else:
            expr = stabilize(self._scalar(t))
            self._elementwise(self.name, expr, t)

    def _fresh(self) -> str:
        self.count += 1
        return f"{self.name}.{self.count}"

    def _elementwise(self, name: str, expr: sp.Expr, t: Typed) -> str:
        inputs = tuple(sorted(s.name for s in expr.free_symbols))
        self.g.add(Node(name, "op", t.shape, t.span, "elementwise", inputs, expr, stmt=self.name,
                        source=self.source))
        return name

    def _operand(self, t: Typed) -> str:
        """A node name for a sub-expression feeding a structural op."""
        if t.op == "name":
            return t.name
        if t.op in _STRUCTURAL:
            return self._structural(t, self._fresh())
        return self._elementwise(self._fresh(), stabilize(self._scalar(t)), t)

    def _structural(self, t: Typed, name: str) -> str:
        op = _STRUCTURAL[t.op]
        inputs = tuple(self._operand(a) for a in t.args)
        self.g.add(Node(name, "op", t.shape, t.span, op, inputs, axis=t.axis, stmt=self.name,
                        source=self.source))
        return name

    def _scalar(self, t: Typed) -> sp.Expr:
        """The sympy expression of an elementwise tree; structural parts become symbols."""
        if t.op == "num":
            v = t.value
            return sp.Integer(int(v)) if float(v).is_integer() else sp.Float(repr(v))
        if t.op == "name":
            return symbol(t.name)
        if t.op == "neg":
            return -self._scalar(t.args[0])
        if t.op in ("+", "-", "*", "/", "^"):
            a, b = (self._scalar(x) for x in t.args)
            return {"+": a + b, "-": a - b, "*": a * b, "/": a / b, "^": a**b}[t.op]
        if t.op == "log" and t.args[0].op == "softmax":
            return self._log_softmax(t.args[0])
        if t.op in _STRUCTURAL:
            return symbol(self._structural(t, self._fresh()))
        return ELEMENTWISE[t.op](*(self._scalar(a) for a in t.args))

    def _log_softmax(self, t: Typed) -> sp.Expr:
        """log(softmax(x)) = x - logsumexp(x) along the same axis, kept broadcastable."""
        x = self._operand(t.args[0])
        axis = t.axis % len(t.shape) if t.shape else t.axis  # softmax of a vector has axis -1
        shape = tuple(1 if i == axis else d for i, d in enumerate(t.shape))
        lse = self._fresh()
        self.g.add(Node(lse, "op", shape, t.span, "logsumexp", (x,), axis=axis, keepdims=True,
                        stmt=self.name, source=self.source))
        return symbol(x) - symbol(lse)
