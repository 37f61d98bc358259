"""The AST dataclasses of `dsl.front.ast`, built as the parser reduces each rule."""
from __future__ import annotations

import math
import os

from compiler.errors import DslSyntaxError, Span
from dsl.front import ast
from dsl.front.files import open_regular
from dsl.front import parser


def parse(text: str, file: str = "<model>") -> ast.Program:
    """Parse `.model` text into an AST; every user mistake is a DslError with a span."""
    return ast.Program(file, tuple(parser.parse(text, file, _ToAst(file))))


def _span(file: str, token) -> Span:
    """A Lark token's span (1-based positions, end column exclusive)."""
    return Span(file, token.line, token.column, token.end_line, token.end_column)


class _ToAst:
    """The grammar's rules as AST nodes, bottom up: the method named after a rule gets the
    rule's span and its children, already built (`dsl.front.parser.parse`)."""

    def __init__(self, file: str):
        self.file = file

    def _s(self, token) -> Span:
        return _span(self.file, token)

    def start(self, span, children):
        return list(children)

    # ---- declarations --------------------------------------------------------------------

    def input_stmt(self, span, c):
        name, dims, binding = c
        return ast.Input(str(name), dims or (), binding, span, self._s(name))

    def binding(self, span, c):
        columns, standardize = c
        return ast.Binding(columns, standardize is not None, span)

    def col_one(self, span, c):
        return ast.Columns("one", (str(c[0]),), span)

    def col_range(self, span, c):
        return ast.Columns("range", (str(c[0]), str(c[1])), span)

    def col_list(self, span, c):
        return ast.Columns("list", tuple(str(t) for t in c), span)

    def col_onehot(self, span, c):
        return ast.Columns("onehot", (str(c[0]),), span)

    def dims(self, span, c):
        return tuple(int(t) if t.type == "INT" else str(t) for t in c)

    def param_dist(self, span, c):
        name, dims, init, bounds, per = c
        return ast.Param(str(name), dims or (), init, span, self._s(name), bounds,
                         per is not None)

    def param_const(self, span, c):
        name, dims, value, bounds, per = c
        init = ast.Init("const", (value,), span)
        return ast.Param(str(name), dims or (), init, span, self._s(name), bounds,
                         per is not None)

    def bounds(self, span, c):
        lo_open, lo, hi, hi_open = c
        return ast.Bounds(lo, hi, lo_open, hi_open, span)

    def lo_closed(self, span, c):
        return False

    hi_closed = lo_closed

    def lo_open(self, span, c):
        return True

    hi_open = lo_open

    def inf(self, span, c):
        if str(c[-1]) != "inf":
            raise DslSyntaxError(f"a bound is a number, `inf` or `-inf`, not `{c[-1]}`",
                                 self._s(c[-1]), "for example `param Km = 1 in [0, inf)`")
        return math.inf

    def neg_inf(self, span, c):
        return -self.inf(span, c)

    def per_source(self, span, c):
        return True

    def init(self, span, c):
        name, *args = c
        return ast.Init(str(name), tuple(a for a in args if a is not None), span)

    def const_stmt(self, span, c):
        name, value = c
        return ast.Const(str(name), value, span, self._s(name))

    def assign_stmt(self, span, c):
        name, expr = c
        return ast.Assign(str(name), expr, span, self._s(name))

    def def_stmt(self, span, c):
        name, *rest = c
        *params, expr = rest
        names = tuple(str(p) for p in params if p is not None)
        return ast.Def(str(name), names, expr, span, self._s(name))

    def minimize_stmt(self, span, c):
        return ast.Minimize(str(c[0]), span, self._s(c[0]))

    def predict_stmt(self, span, c):
        return ast.Predict(str(c[0]), span, self._s(c[0]))

    def report_stmt(self, span, c):
        return ast.Report(str(c[0]), span, self._s(c[0]))

    def target_stmt(self, span, c):
        return ast.Target(str(c[0]), span, self._s(c[0]))

    def data_stmt(self, span, c):
        path, _as_kw, name, _split_kw, split, _seed_kw, seed = c
        if split is not None and not 0 < split <= 1:
            raise DslSyntaxError(f"split must be in (0, 1], got {split:g}", span,
                                 "the fraction of rows used for training, e.g. `split 0.8`")
        return ast.Data(str(path)[1:-1], split, None if seed is None else int(seed), span,
                        None if name is None else str(name))

    def train_stmt(self, span, c):
        return ast.Train(tuple(c), span)

    def set_optimizer(self, span, c):
        name, *args = c
        return ast.Setting("optimizer", (str(name), tuple(a for a in args if a is not None)),
                           span)

    def opt_arg(self, span, c):
        return (None, c[0], span)

    def opt_kwarg(self, span, c):
        return (str(c[0]), c[1], span)

    def _int_setting(key):
        def method(self, span, c):
            return ast.Setting(key, int(c[-1]), span)
        return method

    set_batch = _int_setting("batch")
    set_epochs = _int_setting("epochs")
    set_steps = _int_setting("steps")
    set_seed = _int_setting("seed")
    set_log_every = _int_setting("log_every")

    def set_dtype(self, span, c):
        return ast.Setting("dtype", str(c[0]), span)

    def number(self, span, c):
        return _finite(c[0], span)

    def neg_number(self, span, c):
        return -_finite(c[-1], span)

    # ---- expressions ---------------------------------------------------------------------

    def num(self, span, c):
        return ast.Num(_finite(c[0], span), span)

    def name(self, span, c):
        return ast.Name(str(c[0]), span)

    def _binary(op):
        def method(self, span, c):
            return ast.Binary(op, c[0], c[-1], span)
        return method

    add = _binary("+")
    sub = _binary("-")
    mul = _binary("*")
    div = _binary("/")
    matmul = _binary("@")
    pow = _binary("^")
    eq = _binary("==")
    ne = _binary("!=")
    lt = _binary("<")
    le = _binary("<=")
    gt = _binary(">")
    ge = _binary(">=")

    def neg(self, span, c):
        return ast.Unary("-", c[0], span)

    def call(self, span, c):
        func, *args = c
        positional, keywords = [], []
        for a in args:
            if a is None:
                continue
            if isinstance(a, tuple):
                keywords.append(a)
            elif keywords:
                raise DslSyntaxError("a positional argument follows a keyword argument",
                                     a.span, "put positional arguments first: `sum(x, axis = 1)`")
            else:
                positional.append(a)
        return ast.Call(str(func), tuple(positional), tuple(keywords), span, self._s(func))

    def index(self, span, c):
        base, *subs = c
        return ast.Index(base, tuple(subs), span)

    def sub_slice(self, span, c):
        return ast.Subscript(c[0], c[1], True, span)

    def sub_at(self, span, c):
        return ast.Subscript(c[0], None, False, span)

    def signed_int(self, span, c):
        return int(c[0])

    def neg_int(self, span, c):
        return -int(c[-1])

    def kwarg(self, span, c):
        return (str(c[0]), c[1])


def _finite(token, span: Span) -> float:
    """A number literal as a float64; one too large for it (`1e999`) is refused, not made inf."""
    value = float(token)
    if math.isinf(value):
        raise DslSyntaxError(f"the number `{token}` is too large for a float64", span,
                             "the largest is about 1.8e308")
    return value


MAX_MODEL_BYTES = 1 << 22  # a model of 10,000 lines is about 300 KB


def read_source(path: str) -> str:
    """A model file's text; bytes that are not UTF-8 are a syntax error at their position, and
    a file above MAX_MODEL_BYTES is refused unread (parsing it would take minutes)."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_MODEL_BYTES:
            raise DslSyntaxError(f"model file {path} is {size:,} bytes, more than the limit of "
                                 f"{MAX_MODEL_BYTES:,}", Span(path, 1, 1, 1, 1),
                                 "is it a .model file? (see `Limits` in docs/LANGUAGE.md)")
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = raw[:e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        raise DslSyntaxError(f"byte 0x{raw[e.start]:02x} is not UTF-8 text",
                             Span(path, line, col, line, col + 1),
                             "a .model file is plain UTF-8 text",
                             source_line=before[before.rfind(b"\n") + 1:].decode("utf-8", "replace")
                             ) from None
