"""The sympy side of the functions of `compiler.ops` that sympy lacks, and the rules every printer
of them shares (`OpPrinter`, `print_condition`).

Elementwise functions are sympy functions. Activations whose derivative is best written through
their own value are `Function` subclasses with an `fdiff` (sigmoid' = sigmoid·(1 - sigmoid)), so
the backward pass reuses the forward value. Kinks have pinned subgradients, as in PyTorch:
relu'(0) = 0, abs'(0) = 0, and ties of max/min split the gradient in half.
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from compiler.ops import COMPARISONS as _COMPARISONS, printed_by_template


class sigmoid(sp.Function):
    """The logistic function; its derivative is written through its own value."""

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0]) * (1 - sigmoid(self.args[0]))

    @classmethod
    def eval(cls, x):
        if x == 0:  # structurally: `is_zero` asks the assumptions system, slow per node
            return sp.S.Half


class relu(sp.Function):
    """max(x, 0) with relu'(0) = 0."""

    def fdiff(self, argindex=1):
        return sp.Heaviside(self.args[0], 0)

    @classmethod
    def eval(cls, x):
        if x.is_number and x.is_real:
            return sp.Max(x, 0)


class softplus(sp.Function):
    """log(1 + e^x); softplus' = sigmoid."""

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])


class maximum(sp.Function):
    """Elementwise max(a, b); a tie gives each side half the gradient, as PyTorch does."""

    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return sp.Heaviside(a - b, sp.S.Half) if argindex == 1 else sp.Heaviside(b - a, sp.S.Half)


class minimum(sp.Function):
    """Elementwise min(a, b); a tie gives each side half the gradient, as PyTorch does."""

    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return sp.Heaviside(b - a, sp.S.Half) if argindex == 1 else sp.Heaviside(a - b, sp.S.Half)


class ComparisonBase(sp.Function):
    """(The name ends in `Base` so that sympy's printers find `_print_ComparisonBase` for every
    subclass.) A comparison as a number: 1 where it holds, else 0 (as numpy compares, so a NaN compares
    false except under `!=`). A step: its derivative is 0 everywhere."""

    nargs = 2
    symbol = ""  # `<`, ...: set by each subclass
    holds = staticmethod(lambda a, b: False)

    def fdiff(self, argindex=1):
        return sp.S.Zero

    @classmethod
    def eval(cls, a, b):
        if a.is_Number and b.is_Number:
            return sp.S.One if cls.holds(float(a), float(b)) else sp.S.Zero


def print_condition(printer, expr: sp.Expr) -> str:
    """A test as written, in the comparison symbols of the printer's `style`: a comparison
    itself, any other value as `value != 0`. One rule for code and maths."""
    add = PRECEDENCE["Add"]
    if isinstance(expr, ComparisonBase):
        a, b = (printer.parenthesize(x, add) for x in expr.args)
        return f"{a} {_COMPARISONS[expr.symbol].symbol(printer.style)} {b}"
    return f"{printer.parenthesize(expr, add)} {_COMPARISONS['!='].symbol(printer.style)} 0"


def _compare(name: str, symbol: str) -> type:
    holds = _COMPARISONS[symbol].fold
    return type(name, (ComparisonBase,), {"symbol": symbol, "holds": staticmethod(holds),
                                          "__doc__": f"`a {symbol} b` as 1 or 0."})


less = _compare("less", "<")
less_equal = _compare("less_equal", "<=")
greater = _compare("greater", ">")
greater_equal = _compare("greater_equal", ">=")
equal = _compare("equal", "==")
not_equal = _compare("not_equal", "!=")


class where(sp.Function):
    """where(cond, a, b): a where cond is not 0, else b. Its derivative selects too, so the
    branch not taken sends nothing back, not even the NaN of a `sqrt` of a negative number."""

    nargs = 3

    @classmethod
    def eval(cls, c, a, b):
        if c.is_Number:
            return a if c != 0 else b  # NaN is not 0, as in numpy
        if a == b:
            return a
        if isinstance(c, ComparisonBase) and a == 1 and b == 0:
            return c

    def _eval_derivative(self, s):
        c, a, b = self.args
        return where(c, a.diff(s), b.diff(s))


class clip(sp.Function):
    """clip(x, lo, hi) = min(max(x, lo), hi), as numpy: hi when lo > hi. Each argument gets the
    gradient where it is the value returned (x at a bound, as PyTorch)."""

    nargs = 3

    def fdiff(self, argindex=1):
        x, lo, hi = self.args
        lt, le = less, less_equal
        if argindex == 1:
            return le(lo, x) * le(x, hi)
        if argindex == 2:
            return lt(x, lo) * le(lo, hi)
        return lt(hi, x) * le(lo, hi) + lt(hi, lo)


def square(x: sp.Expr) -> sp.Expr:
    """x², as sympy writes a square (so `x^2` and `square(x)` are the same expression)."""
    return x**2


class OpPrinter:
    """A printer mixin: an op with a template in `compiler.ops` for the printer's `style`
    (numpy, text or latex) is printed by it; anything else by the printer's own rules."""

    style = ""

    def _print(self, expr, **kwargs):
        op = printed_by_template().get(type(expr))
        template = op.template(self.style) if op is not None else None
        if template is None:
            return super()._print(expr, **kwargs)
        text = template.format(*(_Arg(self, a) for a in expr.args))
        exp = kwargs.get("exp")  # LaTeX prints f(x)² as f(x)^{2}
        return text if exp is None else f"{text}^{{{exp}}}"


class _Arg:
    """An argument of a template, printed as its format spec says (see `compiler.ops`)."""

    def __init__(self, printer, expr):
        self.printer, self.expr = printer, expr

    def __format__(self, spec: str) -> str:
        p, e = self.printer, self.expr
        if spec == "mul":
            return p.parenthesize(e, PRECEDENCE["Mul"])
        if spec == "add":
            return p.parenthesize(e, PRECEDENCE["Add"])
        if spec == "test":
            return print_condition(p, e)
        if spec == "branch" and e.is_Integer:  # `np.where(c, 1, 0)` would be an integer array
            return f"{float(e)!r}"
        return p._print(e)


_w = sp.Wild("w")


LOG_SOFTMAX = "log(softmax(x)) as x - logsumexp(x)"  # lowered to nodes, not a sympy rule
STABLE_FORMS = (
    ("log(sigmoid(x)) as -softplus(-x)", sp.log(sigmoid(_w)), -softplus(-_w)),
    ("log(1 - sigmoid(x)) as -softplus(x)", sp.log(1 - sigmoid(_w)), -softplus(_w)),
)


def stabilize(expr: sp.Expr, applied: list[str] | None = None) -> sp.Expr:
    """Rewrite forms that overflow into their stable equivalents before code generation; the
    rules that changed something are added to `applied`."""
    if not expr.has(sp.log):  # both forms are logs; matching the patterns costs more than this
        return expr
    for rule, form, stable in STABLE_FORMS:
        new = expr.replace(form, stable)
        if new != expr and applied is not None:
            applied.append(rule)
        expr = new
    return expr
