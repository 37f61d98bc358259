"""THE op registry: every operation of the language stated once, as one entry each.

An entry says what every stage needs to know about its op: its name, arity and keywords (`axis`),
its shape rule (the checker's rule of that name), how it lowers (into elementwise maths, or an IR
node of its own), its local derivative, its numpy printing, its maths printing (text and LaTeX),
and whether its numpy result is a view of its input. The checker, the lowering, the code printer,
the derivation printers and the graph view all read these entries; none keeps a table of its own.

Adding an elementwise function is one `Function(...)` line below (and its tests): sympy
differentiates it, and a printer that already knows the sympy function (`np.arctan`, `atan`,
`\\operatorname{atan}`) needs no template.

Tables only: nothing here imports sympy, so a command whose compiled module is cached checks a
model without it. The sympy side of an op is named by a dotted path and resolved when first asked
(`sympy_of`): a function of sympy's own (`sympy.atan`), or one of ours whose derivative is pinned
(`compiler.functions.sigmoid`).
"""
from __future__ import annotations

import importlib
import math
import operator
import sys
from dataclasses import dataclass
from functools import cache
from typing import Callable

import numpy as np

# A printing template: a format string over the printed arguments (`{0}`, `{1}`, ...; a spec
# picks how an argument is printed: `{0:mul}` parenthesized as a factor, `{0:add}` as a term,
# `{0:test}` as a condition, `{0:branch}` as a value of where), or None where the printer's
# own rule for the sympy function already writes it.
Template = str | None
STYLES = ("numpy", "text", "latex")


@dataclass(frozen=True)
class Function:
    """An elementwise function (or operator): lowered into the node's sympy expression, which
    sympy differentiates; its local derivative is the sympy function's own (`fdiff`)."""

    name: str
    arity: int
    doc: str  # one line, as docs/LANGUAGE.md's table of functions says it
    sympy: str  # dotted path of the sympy function, or a name in `operator` (`operator.add`)
    fold: Callable  # numpy's value on numbers: numbers are folded as numpy would compute them
    numpy: Template = None
    text: Template = None
    latex: Template = None
    shape: str = "same"  # the checker's shape rule: same | broadcast | select
    params: tuple[str, ...] = ()  # how the checker names the arguments in a shape mismatch
    helper: tuple[str, str] | None = None  # (name the numpy template calls, its definition)
    derivative: tuple[str, ...] = ()  # other ops its local derivative is written with
    kind = "elementwise"
    axis = False  # takes no `axis = k`
    view = False  # a ufunc's result is a new array

    def template(self, style: str) -> Template:
        return getattr(self, style)


@dataclass(frozen=True)
class Comparison(Function):
    """`a < b` as a number: 1 where it holds, else 0; a step, whose derivative is 0. `symbols`
    writes the test in each printing style."""

    symbols: tuple[str, str, str] = ("", "", "")  # numpy, text, latex

    def symbol(self, style: str) -> str:
        return self.symbols[STYLES.index(style)]


@dataclass(frozen=True)
class Structural:
    """An operation on whole arrays: an IR node of its own, whose derivative is a stated map."""

    name: str  # as the model writes it: `sum`, `@`, `index`
    arity: int
    doc: str
    ir: str  # the IR op it lowers to (`matmul` for `@`)
    shape: str  # the checker's shape rule: matmul | reduce | softmax | transpose | part
    axis: bool = False  # takes `axis = k`
    view: bool = False  # numpy returns a view of the input (transpose, index, slice)
    helper: tuple[str, str] | None = None  # (name the numpy code calls, its definition)
    kind = "structural"


def _fn(name, doc, sympy, fold, numpy=None, text=None, latex=None, **kw) -> Function:
    return Function(name, 1, doc, sympy, fold, numpy, text, latex, **kw)


def _sigmoid(x):
    return 0.5 + 0.5 * np.tanh(0.5 * x)


FUNCTIONS: dict[str, Function] = {f.name: f for f in [
    _fn("exp", "e to the x", "sympy.exp", np.exp),
    _fn("log", "natural logarithm; log(0) = -inf as in numpy", "sympy.log", np.log),
    _fn("sqrt", "square root", "sympy.sqrt", np.sqrt),
    _fn("abs", "absolute value; abs'(0) = 0", "sympy.Abs", np.abs,
        numpy="np.abs({0})", text="|{0}|"),
    _fn("sin", "sine", "sympy.sin", np.sin),
    _fn("cos", "cosine", "sympy.cos", np.cos),
    _fn("tanh", "hyperbolic tangent; tanh' = 1 - tanh²", "sympy.tanh", np.tanh),
    _fn("sigmoid", "1 / (1 + e^-x); sigmoid' = s·(1 - s)", "compiler.functions.sigmoid", _sigmoid,
        numpy="_sigmoid({0})", latex=r"\sigma\left({0}\right)", helper=("_sigmoid", '''def _sigmoid(a):
    """1/(1 + exp(-a)) as 0.5 + 0.5 tanh(a/2), which cannot overflow, in one new array."""
    out = np.multiply(a, 0.5)
    if not out.ndim:  # a scalar
        return 0.5 + 0.5*np.tanh(out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out
''')),
    _fn("relu", "max(x, 0); relu'(0) = 0", "compiler.functions.relu",
        lambda x: np.maximum(x, 0.0), numpy="np.maximum({0}, 0.0)"),
    _fn("softplus", "log(1 + e^x), computed stably", "compiler.functions.softplus",
        lambda x: np.logaddexp(0.0, x), numpy="np.logaddexp(0.0, {0})", derivative=("sigmoid",)),
    _fn("square", "x²", "compiler.functions.square", np.square),
    _fn("atan", "arctangent, in (-π/2, π/2)", "sympy.atan", np.arctan),
    _fn("asin", "arcsine on [-1, 1]; NaN outside, as in numpy", "sympy.asin", np.arcsin),
    _fn("acos", "arccosine on [-1, 1]; NaN outside, as in numpy", "sympy.acos", np.arccos),
    _fn("sinh", "hyperbolic sine", "sympy.sinh", np.sinh),
    _fn("cosh", "hyperbolic cosine", "sympy.cosh", np.cosh),
    _fn("log10", "base-10 logarithm", "sympy.codegen.cfunctions.log10", np.log10,
        latex=r"\log_{{10}}\left({0}\right)"),
    _fn("log1p", "log(1 + x), accurate for small x", "sympy.codegen.cfunctions.log1p", np.log1p,
        latex=r"\operatorname{{log1p}}\left({0}\right)"),
    _fn("expm1", "e^x - 1, accurate for small x", "sympy.codegen.cfunctions.expm1", np.expm1,
        latex=r"\operatorname{{expm1}}\left({0}\right)"),
    _fn("erf", "the error function; erf' = 2/√π·e^(-x²)", "sympy.erf", math.erf,
        numpy="_erf({0})",
        helper=("_erf", "from scipy.special import erf as _erf  # numpy has no error function")),
    _fn("erfc", "1 - erf(x), accurate where erf(x) is near 1", "sympy.erfc", math.erfc,
        numpy="_erfc({0})", helper=("_erfc", "from scipy.special import erfc as _erfc  # numpy has "
                                             "no complementary error function")),
    Function("max", 2, "elementwise maximum; ties split the gradient", "compiler.functions.maximum",
             np.maximum, "np.maximum({0}, {1})", "max({0}, {1})", r"\max\left({0}, {1}\right)",
             shape="broadcast"),
    Function("min", 2, "elementwise minimum; ties split the gradient", "compiler.functions.minimum",
             np.minimum, "np.minimum({0}, {1})", "min({0}, {1})", r"\min\left({0}, {1}\right)",
             shape="broadcast"),
    Function("where", 3, "where(cond, a, b): a where cond is not 0, else b; the gradient goes to "
             "the branch taken", "compiler.functions.where", lambda c, a, b: np.where(c != 0, a, b),
             "np.where({0:test}, {1:branch}, {2:branch})", "where({0:test}, {1}, {2})",
             r"\begin{{cases}} {1} & \text{{if }} {0:test} \\ {2} & \text{{otherwise}} "
             r"\end{{cases}}",
             shape="select", params=("the condition", "the value if true", "the value if false")),
    Function("clip", 3, "clip(x, lo, hi): x limited to [lo, hi]; the gradient goes to whichever "
             "is returned", "compiler.functions.clip", np.clip, "np.clip({0}, {1}, {2})", None,
             r"\operatorname{{clip}}\left({0}, {1}, {2}\right)",
             shape="select", params=("x", "lo", "hi")),
]}

# The operators of elementwise maths. Their sympy side is Python's own operator on sympy values;
# each printer writes them as sympy's Add, Mul and Pow.
OPERATORS: dict[str, Function] = {f.name: f for f in [
    Function("+", 2, "sum", "operator.add", np.add, shape="broadcast"),
    Function("-", 2, "difference", "operator.sub", np.subtract, shape="broadcast"),
    Function("*", 2, "elementwise product", "operator.mul", np.multiply, shape="broadcast"),
    Function("/", 2, "elementwise quotient", "operator.truediv", np.divide, shape="broadcast"),
    Function("^", 2, "elementwise power", "operator.pow", np.power, shape="broadcast"),
]}


def _cmp(symbol: str, name: str, fold, text: str, latex: str) -> Comparison:
    return Comparison(symbol, 2, f"a {symbol} b as 1 or 0", f"compiler.functions.{name}", fold,
                      shape="broadcast", symbols=(symbol, text, latex))


COMPARISONS: dict[str, Comparison] = {c.name: c for c in [
    _cmp("<", "less", np.less, "<", "<"),
    _cmp("<=", "less_equal", np.less_equal, "≤", r"\leq"),
    _cmp(">", "greater", np.greater, ">", ">"),
    _cmp(">=", "greater_equal", np.greater_equal, "≥", r"\geq"),
    _cmp("==", "equal", np.equal, "=", "="),
    _cmp("!=", "not_equal", np.not_equal, "≠", r"\neq"),
]}

STRUCTURAL: dict[str, Structural] = {s.name: s for s in [
    Structural("@", 2, "matrix product", "matmul", "matmul"),
    Structural("sum", 1, "sum of all elements, or along `axis`", "sum", "reduce", axis=True),
    Structural("mean", 1, "mean of all elements, or along `axis`", "mean", "reduce", axis=True),
    Structural("logsumexp", 1, "log Σ exp, computed stably", "logsumexp", "reduce", axis=True,
               helper=("_logsumexp", '''def _logsumexp(a, axis=None, keepdims=False):
    """log Σ exp(a), shifted by the maximum so that nothing overflows."""
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return out if keepdims else (np.squeeze(out, axis=axis) if axis is not None else out.reshape(()))
''')),
    Structural("softmax", 1, "exp(x) / Σ exp(x) along `axis`", "softmax", "softmax", axis=True,
               helper=("_softmax", '''def _softmax(a, axis):
    """exp(a) / Σ exp(a) along axis, shifted by the maximum so that nothing overflows."""
    e = np.exp(a - np.max(a, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)
''')),
    Structural("transpose", 1, "the matrix transposed", "transpose", "transpose", view=True),
    Structural("index", 1, "x[:, k]: one position of the last axis", "index", "part", view=True),
    Structural("slice", 1, "x[:, a:b]: a part of the last axis", "slice", "part", view=True),
]}

# What a model can call by name: the elementwise functions and the structural ops with a name.
BUILTINS: dict[str, Function | Structural] = {
    **FUNCTIONS, **{n: s for n, s in STRUCTURAL.items() if n.isidentifier()
                    and n not in ("index", "slice")}}

# Each IR op of a structural node, to its entry.
BY_IR: dict[str, Structural] = {s.ir: s for s in STRUCTURAL.values()}

# Everything lowered into elementwise maths, by the name the checker gives it.
ELEMENTWISE: dict[str, Function] = {**OPERATORS, **COMPARISONS, **FUNCTIONS}

# The built-in constants: a name the model does not define itself stands for one of these.
CONSTANTS = {"pi": "sympy.pi", "e": "sympy.E"}
CONSTANT_NAMES = tuple(CONSTANTS)


@cache
def resolve(path: str):
    """The object a dotted path names (`sympy.atan`, `operator.add`), imported when first asked."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def sympy_of(name: str):
    """The sympy side of an elementwise op or a constant: call it on sympy arguments."""
    return resolve(CONSTANTS[name] if name in CONSTANTS else ELEMENTWISE[name].sympy)


_TEMPLATED: dict[type, Function] = {}  # printed_by_template's answer
_TEMPLATED_AT = -1  # the number of modules imported when it was last filled


def printed_by_template() -> dict[type, Function]:
    """Each sympy class that a registry template prints, to its entry, among the classes of
    modules imported so far: no expression holds another, and importing sympy.codegen for
    log1p's class alone was 8 ms of a compile that prints no log1p. Filled again after an
    import (a model with log1p imports its class to lower it)."""
    global _TEMPLATED_AT
    if len(sys.modules) != _TEMPLATED_AT:
        _TEMPLATED_AT = len(sys.modules)
        for f in ELEMENTWISE.values():
            if f.sympy.rpartition(".")[0] in sys.modules and any(f.template(s) for s in STYLES):
                cls = resolve(f.sympy)
                if isinstance(cls, type):
                    _TEMPLATED[cls] = f
    return _TEMPLATED


def brought_by(name: str) -> list[str]:
    """The functions whose value or local derivative is written with `name` (softplus' is
    sigmoid): a node holding one of them needs `name`'s helper."""
    return [name, *(f.name for f in FUNCTIONS.values() if name in f.derivative)]


# The module-level helpers a generated module may need, by op name: (name called, definition).
HELPERS: dict[str, tuple[str, str]] = {
    op.name: op.helper for op in (*FUNCTIONS.values(), *STRUCTURAL.values()) if op.helper}
