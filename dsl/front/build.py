"""The one walk from Lark's parse tree to the AST dataclasses of `dsl.front.ast`."""
from __future__ import annotations

import math
import os

from lark import Tree

from compiler.errors import DslSyntaxError, Span
from dsl.front import ast
from dsl.front.files import open_regular
from dsl.front.parser import parse_tree


def parse(text: str, file: str = "<model>") -> ast.Program:
    """Parse `.model` text into an AST; every user mistake is a DslError with a span."""
    return ast.Program(file, tuple(_ToAst(file).transform(parse_tree(text, file))))


def _span(file: str, item) -> Span:
    """A Lark token or rule meta (both carry 1-based positions, end column exclusive)."""
    return Span(file, item.line, item.column, item.end_line, item.end_column)


class _ToAst:
    """The tree's rules as AST nodes, bottom up: the method named after a rule gets the rule's
    meta (its span) and its children, already built. A plain walk rather than Lark's
    Transformer, whose method wrappers, made again at every call, cost more than the building
    (issue 15); the tree is at most `MAX_DEPTH` deep (dsl.front.parser)."""

    def __init__(self, file: str):
        self.file = file

    def transform(self, tree: Tree):
        children = [self.transform(c) if isinstance(c, Tree) else c for c in tree.children]
        method = getattr(self, tree.data, None)
        return Tree(tree.data, children, tree.meta) if method is None else method(tree.meta, children)

    def _s(self, item) -> Span:
        return _span(self.file, item)

    def start(self, meta, children):
        return list(children)

    # ---- declarations --------------------------------------------------------------------

    def input_stmt(self, meta, c):
        name, dims, binding = c
        return ast.Input(str(name), dims or (), binding, self._s(meta), self._s(name))

    def binding(self, meta, c):
        columns, standardize = c
        return ast.Binding(columns, standardize is not None, self._s(meta))

    def col_one(self, meta, c):
        return ast.Columns("one", (str(c[0]),), self._s(meta))

    def col_range(self, meta, c):
        return ast.Columns("range", (str(c[0]), str(c[1])), self._s(meta))

    def col_list(self, meta, c):
        return ast.Columns("list", tuple(str(t) for t in c), self._s(meta))

    def col_onehot(self, meta, c):
        return ast.Columns("onehot", (str(c[0]),), self._s(meta))

    def dims(self, meta, c):
        return tuple(int(t) if t.type == "INT" else str(t) for t in c)

    def param_dist(self, meta, c):
        name, dims, init, bounds, per = c
        return ast.Param(str(name), dims or (), init, self._s(meta), self._s(name), bounds,
                         per is not None)

    def param_const(self, meta, c):
        name, dims, value, bounds, per = c
        init = ast.Init("const", (value,), self._s(meta))
        return ast.Param(str(name), dims or (), init, self._s(meta), self._s(name), bounds,
                         per is not None)

    def bounds(self, meta, c):
        lo_open, lo, hi, hi_open = c
        return ast.Bounds(lo, hi, lo_open, hi_open, self._s(meta))

    def lo_closed(self, meta, c):
        return False

    hi_closed = lo_closed

    def lo_open(self, meta, c):
        return True

    hi_open = lo_open

    def inf(self, meta, c):
        if str(c[-1]) != "inf":
            raise DslSyntaxError(f"a bound is a number, `inf` or `-inf`, not `{c[-1]}`",
                                 self._s(c[-1]), "for example `param Km = 1 in [0, inf)`")
        return math.inf

    def neg_inf(self, meta, c):
        return -self.inf(meta, c)

    def per_source(self, meta, c):
        return True

    def init(self, meta, c):
        name, *args = c
        return ast.Init(str(name), tuple(a for a in args if a is not None), self._s(meta))

    def const_stmt(self, meta, c):
        name, value = c
        return ast.Const(str(name), value, self._s(meta), self._s(name))

    def assign_stmt(self, meta, c):
        name, expr = c
        return ast.Assign(str(name), expr, self._s(meta), self._s(name))

    def def_stmt(self, meta, c):
        name, *rest = c
        *params, expr = rest
        names = tuple(str(p) for p in params if p is not None)
        return ast.Def(str(name), names, expr, self._s(meta), self._s(name))

    def minimize_stmt(self, meta, c):
        return ast.Minimize(str(c[0]), self._s(meta), self._s(c[0]))

    def predict_stmt(self, meta, c):
        return ast.Predict(str(c[0]), self._s(meta), self._s(c[0]))

    def report_stmt(self, meta, c):
        return ast.Report(str(c[0]), self._s(meta), self._s(c[0]))

    def target_stmt(self, meta, c):
        return ast.Target(str(c[0]), self._s(meta), self._s(c[0]))

    def data_stmt(self, meta, c):
        path, _as_kw, name, _split_kw, split, _seed_kw, seed = c
        if split is not None and not 0 < split <= 1:
            raise DslSyntaxError(f"split must be in (0, 1], got {split:g}", self._s(meta),
                                 "the fraction of rows used for training, e.g. `split 0.8`")
        return ast.Data(str(path)[1:-1], split, None if seed is None else int(seed), self._s(meta),
                        None if name is None else str(name))

    def train_stmt(self, meta, c):
        return ast.Train(tuple(c), self._s(meta))

    def set_optimizer(self, meta, c):
        name, *args = c
        return ast.Setting("optimizer", (str(name), tuple(a for a in args if a is not None)),
                           self._s(meta))

    def opt_arg(self, meta, c):
        return (None, c[0], self._s(meta))

    def opt_kwarg(self, meta, c):
        return (str(c[0]), c[1], self._s(meta))

    def _int_setting(key):
        def method(self, meta, c):
            return ast.Setting(key, int(c[-1]), self._s(meta))
        return method

    set_batch = _int_setting("batch")
    set_epochs = _int_setting("epochs")
    set_steps = _int_setting("steps")
    set_seed = _int_setting("seed")
    set_log_every = _int_setting("log_every")

    def set_dtype(self, meta, c):
        return ast.Setting("dtype", str(c[0]), self._s(meta))

    def number(self, meta, c):
        return _finite(c[0], self._s(meta))

    def neg_number(self, meta, c):
        return -_finite(c[-1], self._s(meta))

    # ---- expressions ---------------------------------------------------------------------

    def num(self, meta, c):
        return ast.Num(_finite(c[0], self._s(meta)), self._s(meta))

    def name(self, meta, c):
        return ast.Name(str(c[0]), self._s(meta))

    def _binary(op):
        def method(self, meta, c):
            return ast.Binary(op, c[0], c[-1], self._s(meta))
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

    def neg(self, meta, c):
        return ast.Unary("-", c[0], self._s(meta))

    def call(self, meta, c):
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
        return ast.Call(str(func), tuple(positional), tuple(keywords), self._s(meta), self._s(func))

    def index(self, meta, c):
        base, *subs = c
        return ast.Index(base, tuple(subs), self._s(meta))

    def sub_slice(self, meta, c):
        return ast.Subscript(c[0], c[1], True, self._s(meta))

    def sub_at(self, meta, c):
        return ast.Subscript(c[0], None, False, self._s(meta))

    def signed_int(self, meta, c):
        return int(c[0])

    def neg_int(self, meta, c):
        return -int(c[-1])

    def kwarg(self, meta, c):
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
