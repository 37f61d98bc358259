"""The abstract syntax of a `.model` file: frozen dataclasses, every node with its span."""
from __future__ import annotations

from dataclasses import dataclass, field

from compiler.errors import Span
from compiler.shape import Shape


# ---- expressions -------------------------------------------------------------------------

@dataclass(frozen=True)
class Num:
    value: float
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Name:
    id: str
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Unary:
    op: str  # only "-"
    operand: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / ^ @, or a comparison == != < <= > >=
    left: Expr
    right: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    kwargs: tuple[tuple[str, Expr], ...]
    span: Span = field(compare=False)
    func_span: Span = field(compare=False)


@dataclass(frozen=True)
class Subscript:
    """One entry of `x[...]`: an index `k`, or a slice `start:stop` (either may be left out)."""

    start: int | None
    stop: int | None
    is_slice: bool
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Index:
    """`x[:, 0]`, `x[:, 1:3]`: a part of the last axis."""

    base: Expr
    subscripts: tuple[Subscript, ...]
    span: Span = field(compare=False)


Expr = Num | Name | Unary | Binary | Call | Index


# ---- statements --------------------------------------------------------------------------

@dataclass(frozen=True)
class Columns:
    """Which data columns feed an input: one, a range in header order, a list, or onehot."""

    kind: str  # "one" | "range" | "list" | "onehot"
    names: tuple[str, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Binding:
    columns: Columns
    standardize: bool
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Input:
    name: str
    dims: Shape
    binding: Binding | None
    span: Span = field(compare=False)
    name_span: Span = field(compare=False)


@dataclass(frozen=True)
class Init:
    """A param's start: a distribution (`normal`, `uniform`, `glorot`, `he`) or a constant."""

    dist: str  # "const" for `= NUMBER`
    args: tuple[float, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Bounds:
    """`in [lo, hi]`, each end closed or open; `inf` and `-inf` for no bound."""

    lo: float
    hi: float
    lo_open: bool
    hi_open: bool
    span: Span = field(compare=False)

    def __str__(self) -> str:
        def end(x: float) -> str:
            return "inf" if x == float("inf") else "-inf" if x == float("-inf") else f"{x:g}"
        return (("(" if self.lo_open else "[") + f"{end(self.lo)}, {end(self.hi)}"
                + (")" if self.hi_open else "]"))

    def holds(self, x: float) -> bool:
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return above and below


@dataclass(frozen=True)
class Param:
    name: str
    dims: Shape
    init: Init
    span: Span = field(compare=False)
    name_span: Span = field(compare=False)
    bounds: Bounds | None = None
    per_source: bool = False  # `per source`: one value for each data source of a global fit


@dataclass(frozen=True)
class Const:
    name: str
    value: float
    span: Span = field(compare=False)
    name_span: Span = field(compare=False)


@dataclass(frozen=True)
class Assign:
    name: str
    expr: Expr
    span: Span = field(compare=False)
    name_span: Span = field(compare=False)


@dataclass(frozen=True)
class Def:
    name: str
    params: tuple[str, ...]
    expr: Expr
    span: Span = field(compare=False)
    name_span: Span = field(compare=False)


@dataclass(frozen=True)
class Minimize:
    name: str
    span: Span = field(compare=False)
    name_span: Span = field(compare=False)


@dataclass(frozen=True)
class Predict:
    name: str
    span: Span = field(compare=False)
    name_span: Span = field(compare=False)


@dataclass(frozen=True)
class Report:
    """`report NAME`: after a fit, the scalar's value ± σ by the delta method."""

    name: str
    span: Span = field(compare=False)
    name_span: Span = field(compare=False)


@dataclass(frozen=True)
class Target:
    """`target NAME`: what the report scores the prediction against."""

    name: str
    span: Span = field(compare=False)
    name_span: Span = field(compare=False)


@dataclass(frozen=True)
class Data:
    path: str
    split: float | None
    seed: int | None
    span: Span = field(compare=False)
    name: str | None = None  # `as NAME`; several `data` statements make a global fit


@dataclass(frozen=True)
class Setting:
    """One line of a `train { }` block: `batch 16`, `optimizer adam(lr = 0.01)`, ..."""

    key: str  # optimizer | batch | epochs | steps | seed | dtype | log_every
    value: object  # int, str, or for optimizer (name, ((arg, value), ...))
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Train:
    settings: tuple[Setting, ...]
    span: Span = field(compare=False)


Statement = (Input | Param | Const | Assign | Def | Minimize | Predict | Target | Report | Data
             | Train)


@dataclass(frozen=True)
class Program:
    """A whole `.model` file as parsed (`dsl.model.Model` is the compiled, trainable one)."""

    file: str
    statements: tuple[Statement, ...]
