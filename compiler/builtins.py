"""The built-in functions the language knows: name, kind, arity, axis, one line of doc.

Only the table, without sympy: the checker reads it, and a command whose compiled module is
cached checks the model without importing sympy. `compiler.functions` holds the sympy side.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Builtin:
    name: str
    kind: str  # elementwise | binary | select | reduce | softmax | transpose
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
    Builtin("where", "select", 3, False,
            "where(cond, a, b): a where cond is not 0, else b; the gradient goes to the branch taken"),
    Builtin("clip", "select", 3, False,
            "clip(x, lo, hi): x limited to [lo, hi]; the gradient goes to whichever is returned"),
    Builtin("min", "binary", 2, False, "elementwise minimum; ties split the gradient"),
    Builtin("sum", "reduce", 1, True, "sum of all elements, or along `axis`"),
    Builtin("mean", "reduce", 1, True, "mean of all elements, or along `axis`"),
    Builtin("logsumexp", "reduce", 1, True, "log Σ exp, computed stably"),
    Builtin("softmax", "softmax", 1, True, "exp(x) / Σ exp(x) along `axis`"),
    Builtin("transpose", "transpose", 1, False, "the matrix transposed"),
]}

# The built-in constants: a name the model does not define itself stands for one of these.
CONSTANT_NAMES = ("pi", "e")
