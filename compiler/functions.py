"""The built-in functions: the table the checker reads, and the sympy side of each.

Elementwise functions are sympy functions. Activations whose derivative is best written through
their own value are `Function` subclasses with an `fdiff` (sigmoid' = sigmoid·(1 - sigmoid)), so
the backward pass reuses the forward value. Kinks have pinned subgradients, as in PyTorch:
relu'(0) = 0, abs'(0) = 0, and ties of max/min split the gradient in half.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p, log10


@dataclass(frozen=True)
class Builtin:
    name: str
    kind: str  # elementwise | binary | reduce | softmax | transpose
    arity: int
    axis: bool  # takes `axis = k`
    doc: str


BUILTINS: dict[str, Builtin] = {b.name: b for b in [
    Builtin("exp", "elementwise", 1, False, "e to the x"),
    Builtin("log", "elementwise", 1, False, "natural logarithm; log(0) = -inf as in numpy"),
    Builtin("sqrt", "elementwise", 1, False, "square root"),
    Builtin("abs", "elementwise", 1, False, "absolute value; abs'(0) = 0"),
    Builtin("sin", "elementwise", 1, False, "sine"),
    Builtin("cos", "elementwise", 1, False, "cosine"),
    Builtin("tanh", "elementwise", 1, False, "hyperbolic tangent; tanh' = 1 - tanh²"),
    Builtin("sigmoid", "elementwise", 1, False, "1 / (1 + e^-x); sigmoid' = s·(1 - s)"),
    Builtin("relu", "elementwise", 1, False, "max(x, 0); relu'(0) = 0"),
    Builtin("softplus", "elementwise", 1, False, "log(1 + e^x), computed stably"),
    Builtin("square", "elementwise", 1, False, "x²"),
    Builtin("atan", "elementwise", 1, False, "arctangent, in (-π/2, π/2)"),
    Builtin("asin", "elementwise", 1, False, "arcsine on [-1, 1]; NaN outside, as in numpy"),
    Builtin("acos", "elementwise", 1, False, "arccosine on [-1, 1]; NaN outside, as in numpy"),
    Builtin("sinh", "elementwise", 1, False, "hyperbolic sine"),
    Builtin("cosh", "elementwise", 1, False, "hyperbolic cosine"),
    Builtin("log10", "elementwise", 1, False, "base-10 logarithm"),
    Builtin("log1p", "elementwise", 1, False, "log(1 + x), accurate for small x"),
    Builtin("expm1", "elementwise", 1, False, "e^x - 1, accurate for small x"),
    Builtin("erf", "elementwise", 1, False, "the error function; erf' = 2/√π·e^(-x²)"),
    Builtin("max", "binary", 2, False, "elementwise maximum; ties split the gradient"),
    Builtin("min", "binary", 2, False, "elementwise minimum; ties split the gradient"),
    Builtin("sum", "reduce", 1, True, "sum of all elements, or along `axis`"),
    Builtin("mean", "reduce", 1, True, "mean of all elements, or along `axis`"),
    Builtin("logsumexp", "reduce", 1, True, "log Σ exp, computed stably"),
    Builtin("softmax", "softmax", 1, True, "exp(x) / Σ exp(x) along `axis`"),
    Builtin("transpose", "transpose", 1, False, "the matrix transposed"),
]}


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

    def _sympystr(self, printer):
        return "max(%s)" % ", ".join(printer._print(a) for a in self.args)


class minimum(sp.Function):
    """Elementwise min(a, b); a tie gives each side half the gradient, as PyTorch does."""

    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return sp.Heaviside(b - a, sp.S.Half) if argindex == 1 else sp.Heaviside(a - b, sp.S.Half)

    def _sympystr(self, printer):
        return "min(%s)" % ", ".join(printer._print(a) for a in self.args)


# The sympy side of each elementwise built-in.
ELEMENTWISE = {
    "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "abs": sp.Abs, "sin": sp.sin, "cos": sp.cos,
    "tanh": sp.tanh, "sigmoid": sigmoid, "relu": relu, "softplus": softplus,
    "square": lambda x: x**2, "max": maximum, "min": minimum,
    "atan": sp.atan, "asin": sp.asin, "acos": sp.acos, "sinh": sp.sinh, "cosh": sp.cosh,
    "log10": log10, "log1p": log1p, "expm1": expm1, "erf": sp.erf,
}

# The built-in constants: a name the model does not define itself stands for one of these.
CONSTANTS = {"pi": sp.pi, "e": sp.E}

_w = sp.Wild("w")


def stabilize(expr: sp.Expr) -> sp.Expr:
    """Rewrite forms that overflow into their stable equivalents before code generation."""
    return expr.replace(sp.log(sigmoid(_w)), -softplus(-_w)).replace(
        sp.log(1 - sigmoid(_w)), -softplus(_w))
