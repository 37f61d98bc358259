"""The sympy side of each built-in function (the table of them is `compiler.builtins`).

Elementwise functions are sympy functions. Activations whose derivative is best written through
their own value are `Function` subclasses with an `fdiff` (sigmoid' = sigmoid·(1 - sigmoid)), so
the backward pass reuses the forward value. Kinks have pinned subgradients, as in PyTorch:
relu'(0) = 0, abs'(0) = 0, and ties of max/min split the gradient in half.
"""
from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p, log10


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

# The sympy side of each of `compiler.builtins.CONSTANT_NAMES`.
CONSTANTS = {"pi": sp.pi, "e": sp.E}

_w = sp.Wild("w")


def stabilize(expr: sp.Expr) -> sp.Expr:
    """Rewrite forms that overflow into their stable equivalents before code generation."""
    return expr.replace(sp.log(sigmoid(_w)), -softplus(-_w)).replace(
        sp.log(1 - sigmoid(_w)), -softplus(_w))
