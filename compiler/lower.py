"""The checked AST lowered to the compiler's graph IR.

Elementwise maths becomes one sympy expression per node; each structural operation becomes a
node of its own. `log(softmax(x))` is rewritten to `x - logsumexp(x)` here, where the structure
is still visible (LANGUAGE.md promises stable forms).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import sympy as sp

from compiler.errors import DerivationError
from compiler.functions import LOG_SOFTMAX, stabilize
from compiler.ir import Graph, Node, symbol
from compiler.memo import rename
from compiler.ops import ELEMENTWISE, STRUCTURAL, sympy_of

if TYPE_CHECKING:  # the checked model's types, for annotations only: the compiler never imports dsl
    from dsl.front.check import Checked, Typed

# Elementwise maths nested deeper than this becomes inner nodes: sympy recurses through an
# expression, and Python refuses a line with more than 200 nested parentheses.
SPLIT_DEPTH = 30

def lower(m: Checked, text: str) -> Graph:
    g = Graph(m.file, objective=m.objective, predict=m.predict, reports=list(m.reports),
              target=m.target,
              bounds={n: _closed(p.bounds) for n, p in m.params.items() if p.bounds})
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
        self._made = None  # the names of structural parts `_maths` made, for `_scalar`

    def lower(self, t: Typed) -> None:
        if t.op in STRUCTURAL:
            self._structural(t, self.name)
        else:
            self._elementwise(self.name, *self._maths(t), t)

    def _maths(self, t: Typed) -> tuple[sp.Expr, tuple[str, ...], tuple[str, ...] | None]:
        """The stable sympy expression of an elementwise tree, built once per form (`_form`):
        a chain's neurons and an MLP's layers are one tree under other names, and building
        sympy's expression (`tanh` evaluates its argument's properties) costs more than the
        rest of lowering. The structural parts are made nodes first, in the order `_scalar`
        meets them. Returned with the names the tree reads, in the order it writes them, and
        the node's inputs where the form knows them (then the expression has a real value)."""
        holes: list[str] = []
        parts: list[Typed] = []
        form = _form(t, holes, parts)
        if form is None:  # split into inner nodes, or a log-softmax rewrite: no memo
            return self._stable(self._scalar(t), t), (), None
        names = [self._structural(h, self._fresh()) for h in parts]
        written = _written(form, holes, names)
        symbols = [symbol(n) for n in (*holes, *names)]
        key = (form, tuple(sorted(range(len(symbols)), key=lambda i: symbols[i].name)))
        known = _FORMS.get(key)
        if known is None:
            self._made = iter(names)
            expr, applied = self._stable(self._scalar(t), t, [])
            self._made = None
            if not expr.has(sp.I, sp.zoo, sp.AccumBounds):  # else lowering stops here
                free = expr.free_symbols
                _FORMS[key] = expr, symbols, applied, [k for k, x in enumerate(symbols) if x in free]
            return expr, written, None
        expr, slots, applied, free = known
        self._note(t, applied)
        inputs = tuple(sorted(symbols[k].name for k in free))
        return rename(expr, dict(zip(slots, symbols))), written, inputs

    def _stable(self, expr: sp.Expr, t: Typed, applied: list[str] | None = None):
        """`stabilize`, noting in the graph the rewrites it applied (the run report lists them);
        with `applied` given, those rules too (returned with the expression)."""
        out = applied if applied is not None else []
        expr = stabilize(expr, out)
        self._note(t, out)
        return expr if applied is None else (expr, applied)

    def _note(self, t: Typed, applied: list[str]) -> None:
        self.g.rewrites += [f"{self.name} (line {t.span.line}): {rule}" for rule in applied]

    def _fresh(self) -> str:
        self.count += 1
        return f"{self.name}.{self.count}"

    def _elementwise(self, name: str, expr: sp.Expr, written: tuple[str, ...],
                     inputs: tuple[str, ...] | None, t: Typed) -> str:
        """`inputs`: the symbols `expr` reads, by name, where its form gave them."""
        if inputs is None and expr.has(sp.I, sp.zoo, sp.AccumBounds):
            raise DerivationError(f"this has no real value: sympy makes it `{expr}`", t.span,
                                  "numpy would give NaN or inf here: check the signs under "
                                  "sqrt, log and fractional powers, and divisions by zero")
        if inputs is None:
            inputs = tuple(sorted(s.name for s in expr.free_symbols))
        self.g.add(Node(name, "op", t.shape, t.span, "elementwise", inputs, expr, stmt=self.name,
                        source=self.source, written=tuple(n for n in written if n in inputs)))
        return name

    def _operand(self, t: Typed) -> str:
        """A node name for a sub-expression feeding a structural op."""
        if t.op == "name":
            return t.name
        if t.op in STRUCTURAL:
            return self._structural(t, self._fresh())
        return self._elementwise(self._fresh(), *self._maths(t), t)

    def _structural(self, t: Typed, name: str) -> str:
        op = STRUCTURAL[t.op].ir
        inputs = tuple(self._operand(a) for a in t.args)
        self.g.add(Node(name, "op", t.shape, t.span, op, inputs, axis=t.axis, part=t.part,
                        stmt=self.name, source=self.source))
        return name

    def _scalar(self, t: Typed, depth: int = 0) -> sp.Expr:
        """The sympy expression of an elementwise tree; structural parts become symbols, and
        so do parts deeper than SPLIT_DEPTH (as inner nodes). Numbers are folded as numpy would."""
        if t.op == "num":
            return _number(t.value)
        if t.op == "name":
            return symbol(t.name)
        if t.op == "constant":
            return sympy_of(t.name)
        if depth > SPLIT_DEPTH and t.op not in STRUCTURAL:
            return symbol(self._elementwise(self._fresh(), self._stable(self._scalar(t), t), (),
                                            None, t))
        if t.op == "neg":
            return -self._scalar(t.args[0], depth + 1)
        if t.op in ("+", "-", "*", "/", "^"):
            a, b = (self._scalar(x, depth + 1) for x in t.args)
            if a.is_Number and b.is_Number:
                return _fold(t.op, a, b)
            if t.op == "/" and b.is_zero:  # numpy: ±inf, or nan for 0/0; sympy: zoo
                return a * sp.oo
            return sympy_of(t.op)(a, b)
        if t.op == "log" and t.args[0].op == "softmax":
            return self._log_softmax(t.args[0])
        if t.op in STRUCTURAL:  # made already by `_maths`, or made here
            return symbol(next(self._made) if self._made else self._structural(t, self._fresh()))
        args = [self._scalar(a, depth + 1) for a in t.args]
        if all(a.is_Number for a in args):
            return _fold(t.op, *args)
        return sympy_of(t.op)(*args)

    def _log_softmax(self, t: Typed) -> sp.Expr:
        """log(softmax(x)) = x - logsumexp(x) along the same axis, kept broadcastable."""
        x = self._operand(t.args[0])
        axis = t.axis % len(t.shape) if t.shape else t.axis  # softmax of a vector has axis -1
        shape = tuple(1 if i == axis else d for i, d in enumerate(t.shape))
        lse = self._fresh()
        self.g.add(Node(lse, "op", shape, t.span, "logsumexp", (x,), axis=axis, keepdims=True,
                        stmt=self.name, source=self.source))
        self.g.rewrites.append(f"{self.name} (line {t.span.line}): {LOG_SOFTMAX}")
        return symbol(x) - symbol(lse)


# (form, the order of its names) -> the expression, the symbols it was built with, the rewrites,
# and the places among those symbols of the ones the expression reads
_FORMS: dict[tuple, tuple[sp.Expr, list[sp.Symbol], list[str]]] = {}


def _form(t: Typed, names: list[str], parts: list[Typed]) -> tuple | None:
    """The form of an elementwise tree that `_scalar` would build without inner nodes: its ops,
    numbers and constants, each name as its place in `names` (first appearance; the structural
    parts come after them), each structural part as a hole (added to `parts`, in the order
    `_scalar` meets them). None where `_scalar` would split a deep tree or rewrite a
    log-softmax. Iterative: a tree may be deep."""
    slots = {n: k for k, n in enumerate(names)}
    out: list = []
    stack: list = [(t, 0)]
    while stack:
        t, depth = stack.pop()
        if t is None:
            out.append(")")
        elif t.op == "num":
            out.append(("num", repr(t.value)))
        elif t.op == "name":
            if t.name not in slots:
                slots[t.name] = len(names)
                names.append(t.name)
            out.append(slots[t.name])
        elif t.op == "constant":
            out.append(("constant", t.name))
        elif t.op in STRUCTURAL:
            out.append("hole")
            parts.append(t)
        elif depth > SPLIT_DEPTH or (t.op == "log" and t.args[0].op == "softmax"):
            return None
        else:
            out.append((t.op, len(t.args)))
            stack.append((None, 0))
            stack.extend((a, depth + 1) for a in reversed(t.args))
    return tuple(out)


def _written(form: tuple, names: list[str], parts: list[str]) -> tuple[str, ...]:
    """The names an elementwise tree reads, in the order the statement writes them: `form`
    numbers each name by its place in `names` and marks each structural part (`parts`, in
    order) as a hole."""
    made = iter(parts)
    out: dict[str, None] = {}
    for x in form:
        if isinstance(x, int):
            out.setdefault(names[x])
        elif x == "hole":
            out.setdefault(next(made))
    return tuple(out)


def _closed(b) -> tuple[float, float]:
    """Bounds as the closed interval of float64s they hold: an open end at a finite value moves
    to the next float inside (`(0, inf)` is [5e-324, inf]), so a solver's closed bounds and a
    projection keep the start's strict inequality."""
    lo = float(np.nextafter(b.lo, np.inf)) if b.lo_open and math.isfinite(b.lo) else float(b.lo)
    hi = float(np.nextafter(b.hi, -np.inf)) if b.hi_open and math.isfinite(b.hi) else float(b.hi)
    return lo, hi


def _number(v: float) -> sp.Expr:
    """A float64 as sympy: whole numbers as Integer (so `x^2` stays a square), nan and inf."""
    if math.isnan(v):
        return sp.nan
    if math.isinf(v):
        return sp.oo if v > 0 else -sp.oo
    return sp.Integer(int(v)) if float(v).is_integer() else sp.Float(repr(v))


def _fold(op: str, *args: sp.Expr) -> sp.Expr:
    """Numbers combined with numbers, folded in float64 as numpy would compute them at run time:
    sympy's exact arithmetic would work out 9^9^9 digit by digit, and makes (-8)^(1/3), sqrt(-1)
    and log(0) complex or zoo where numpy gives nan or -inf."""
    with np.errstate(all="ignore"):
        return _number(float(ELEMENTWISE[op].fold(*(np.float64(float(a)) for a in args))))
