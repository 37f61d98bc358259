"""dsl.front.parser and dsl.front.build: every statement form of LANGUAGE.md 2.3, comments, precedence,
spans, and syntax errors that are DslSyntaxErrors with a position (never another exception)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from lark.exceptions import UnexpectedInput

from compiler.errors import DslError, DslSyntaxError, Span
from dsl.front import ast, build, parser
from dsl.front.build import parse, read_source

S = None  # spans are not compared (field(compare=False)); any value will do


def stmts(text: str):
    return parse(text, "m.model").statements


def one(text: str):
    (st,) = stmts(text)
    return st


def expr(text: str) -> ast.Expr:
    return one(f"z = {text}\n").expr


def syntax_error(text: str) -> DslSyntaxError:
    with pytest.raises(DslSyntaxError) as info:
        parse(text, "m.model")
    return info.value


# shorthand constructors for expected trees
def N(name):
    return ast.Name(name, S)


def Num(v):
    return ast.Num(float(v), S)


def B(op, a, b):
    return ast.Binary(op, a, b, S)


def Neg(a):
    return ast.Unary("-", a, S)


def Call(f, *args, **kwargs):
    return ast.Call(f, tuple(args), tuple(kwargs.items()), S, S)


# ---- input -------------------------------------------------------------------------------------

def test_input_scalar_and_dims():
    assert one("input x\n") == ast.Input("x", (), None, S, S)
    assert one("input X[N, 13]\n") == ast.Input("X", ("N", 13), None, S, S)
    assert one("input v[3]\n").dims == (3,)
    assert one("input T[N, M, 2]\n").dims == ("N", "M", 2)


@pytest.mark.parametrize("text, kind, names, standardize", [
    ("input y[N, 1] <- MEDV", "one", ("MEDV",), False),
    ("input X[N, 13] <- CRIM..LSTAT standardize", "range", ("CRIM", "LSTAT"), True),
    ("input X[N, 13] <- CRIM .. LSTAT", "range", ("CRIM", "LSTAT"), False),
    ("input X[N, 2] <- RM, LSTAT", "list", ("RM", "LSTAT"), False),
    ("input X[N, 3] <- a,b ,c standardize", "list", ("a", "b", "c"), True),
    ("input Y[N, 3] <- onehot(species)", "onehot", ("species",), False),
    ("input y[N] <- MEDV standardize", "one", ("MEDV",), True),
])
def test_input_bindings(text, kind, names, standardize):
    st = one(text + "\n")
    assert st.binding == ast.Binding(ast.Columns(kind, names, S), standardize, S)


# ---- param, const, equations, def, minimize, predict ----------------------------------------

@pytest.mark.parametrize("text, dist, args", [
    ("param W1[13, 10] ~ normal(0, 1)", "normal", (0.0, 1.0)),
    ("param k1 ~ uniform(-1, 1)", "uniform", (-1.0, 1.0)),
    ("param W[3, 2] ~ glorot", "glorot", ()),
    ("param W[3, 2] ~ he", "he", ()),
    ("param W[3, 2] ~ he()", "he", ()),
    ("param w ~ normal(-0.5, 1e-2)", "normal", (-0.5, 0.01)),
    ("param b1[10] = 0", "const", (0.0,)),
    ("param b = -1.5", "const", (-1.5,)),
    ("param b = .25", "const", (0.25,)),
    ("param b = 2E3", "const", (2000.0,)),
])
def test_param(text, dist, args):
    st = one(text + "\n")
    assert isinstance(st, ast.Param)
    assert st.init == ast.Init(dist, args, S)


def test_param_dims():
    assert one("param W1[13, 10] ~ normal(0, 1)\n").dims == (13, 10)
    assert one("param k ~ glorot\n").dims == ()


def test_const_equation_def_minimize_predict():
    assert one("const g = 9.81\n") == ast.Const("g", 9.81, S, S)
    assert one("const c = -2\n").value == -2.0
    assert one("L1 = k1 * x + b1\n") == ast.Assign(
        "L1", B("+", B("*", N("k1"), N("x")), N("b1")), S, S)
    assert one("def sq(a, b) = (a - b)^2\n") == ast.Def(
        "sq", ("a", "b"), B("^", B("-", N("a"), N("b")), Num(2)), S, S)
    assert one("def two() = 2\n") == ast.Def("two", (), Num(2), S, S)
    assert one("minimize loss\n") == ast.Minimize("loss", S, S)
    assert one("predict yhat\n") == ast.Predict("yhat", S, S)


def test_calls_with_keywords():
    assert expr("sum(x, axis = 1)") == Call("sum", N("x"), axis=Num(1))
    assert expr("softmax(z, axis = -1)") == Call("softmax", N("z"), axis=Neg(Num(1)))
    assert expr("mean((yhat - y)^2)") == Call("mean", B("^", B("-", N("yhat"), N("y")), Num(2)))
    assert expr("max(a, b)") == Call("max", N("a"), N("b"))
    assert expr("f()") == Call("f")
    e = syntax_error("z = sum(axis = 1, x)\n")
    assert "positional argument follows a keyword" in e.message and e.span.col == 19


# ---- data and train --------------------------------------------------------------------------

def test_data():
    assert one('data "data/boston.csv" split 0.8 seed 666\n') == ast.Data(
        "data/boston.csv", 0.8, 666, S)
    assert one('data "d.csv"\n') == ast.Data("d.csv", None, None, S)
    assert one('data "d.csv.gz" seed 3\n') == ast.Data("d.csv.gz", None, 3, S)
    assert one('data "d.csv" split 1\n').split == 1.0
    for bad in ("0", "1.5", "0.0"):
        e = syntax_error(f'data "d.csv" split {bad}\n')
        assert "split must be in (0, 1]" in e.message and e.span.line == 1


def test_train_block_with_every_setting():
    st = one("train {\n"
             "    optimizer adam(lr = 0.01, beta1 = 0.8, beta2 = 0.99, eps = 1e-7)\n"
             "    batch 16\n"
             "    epochs 5000\n"
             "    steps 100\n"
             "    seed 0\n"
             "    dtype float32\n"
             "    log every 50\n"
             "}\n")
    assert isinstance(st, ast.Train)
    got = {s.key: s.value for s in st.settings}
    name, args = got.pop("optimizer")
    assert name == "adam"
    assert [(k, v) for k, v, _ in args] == [("lr", 0.01), ("beta1", 0.8), ("beta2", 0.99),
                                            ("eps", 1e-7)]
    assert got == {"batch": 16, "epochs": 5000, "steps": 100, "seed": 0, "dtype": "float32",
                   "log_every": 50}


@pytest.mark.parametrize("text, name, args", [
    ("optimizer gd(0.1)", "gd", [(None, 0.1)]),
    ("optimizer sgd(lr = 0.01)", "sgd", [("lr", 0.01)]),
    ("optimizer sgd(0.01, momentum = 0.9)", "sgd", [(None, 0.01), ("momentum", 0.9)]),
    ("optimizer adam()", "adam", []),
    ("optimizer lbfgs", "lbfgs", []),  # no arguments: the brackets may go, as on the command line
    ("optimizer random_search(trials = 500, low = -2, high = 2)", "random_search",
     [("trials", 500.0), ("low", -2.0), ("high", 2.0)]),
])
def test_optimizers(text, name, args):
    (s,) = one("train {\n" + text + "\n}\n").settings
    assert s.key == "optimizer" and s.value[0] == name
    assert [(k, v) for k, v, _ in s.value[1]] == args


def test_train_block_layouts():
    assert one("train {\n}\n").settings == ()
    assert one("train {}\n").settings == ()
    assert len(one("train {\n\n  batch 2\n\n  seed 1\n\n}\n").settings) == 2
    assert len(one("train { batch 2\n}\n").settings) == 1


# ---- comments, blank lines, line ends --------------------------------------------------------

def test_comments_anywhere():
    text = ("# a header comment\n"
            "\n"
            "input x   # after a statement\n"
            "   # indented comment\n"
            "param k ~ uniform(-1, 1)#no space\n"
            "\n\n"
            "train {   # after the brace\n"
            "    # inside the block\n"
            "    batch 4   # after a setting\n"
            "}  # after the closing brace\n"
            "loss = (k * x)^2 # last, with no newline at the end")
    kinds = [type(s).__name__ for s in stmts(text)]
    assert kinds == ["Input", "Param", "Train", "Assign"]


def test_line_ends_and_blank_files():
    assert stmts("") == ()
    assert stmts("\n\n\n") == ()
    assert stmts("# only a comment") == ()
    assert len(stmts("input x\r\ninput y\r\n")) == 2
    assert len(stmts("input x")) == 1


def test_read_source_strips_a_bom(tmp_path):
    p = tmp_path / "bom.model"
    p.write_bytes(b"\xef\xbb\xbfinput x\n")
    assert read_source(str(p)) == "input x\n"
    p.write_bytes(b"input x\nparam \xff = 1\n")
    with pytest.raises(DslSyntaxError) as info:
        read_source(str(p))
    assert info.value.span == Span(str(p), 2, 7, 2, 8) and "0xff" in info.value.message


def test_two_statements_on_one_line_are_refused():
    e = syntax_error("input x input y\n")
    assert e.span.line == 1 and e.span.col == 9


# ---- precedence ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, tree", [
    ("-x^2", Neg(B("^", N("x"), Num(2)))),
    ("-x**2", Neg(B("^", N("x"), Num(2)))),
    ("a^b^c", B("^", N("a"), B("^", N("b"), N("c")))),
    ("a**b**c", B("^", N("a"), B("^", N("b"), N("c")))),
    ("a^-b", B("^", N("a"), Neg(N("b")))),
    ("2^-x^2", B("^", Num(2), Neg(B("^", N("x"), Num(2))))),
    ("a + b * c", B("+", N("a"), B("*", N("b"), N("c")))),
    ("a - b / c", B("-", N("a"), B("/", N("b"), N("c")))),
    ("a + X @ W", B("+", N("a"), B("@", N("X"), N("W")))),
    ("X @ W + b", B("+", B("@", N("X"), N("W")), N("b"))),
    ("a - b - c", B("-", B("-", N("a"), N("b")), N("c"))),
    ("a / b / c", B("/", B("/", N("a"), N("b")), N("c"))),
    ("a * b @ c / d", B("/", B("@", B("*", N("a"), N("b")), N("c")), N("d"))),
    ("-a * b", B("*", Neg(N("a")), N("b"))),
    ("a * -b", B("*", N("a"), Neg(N("b")))),
    ("--a", Neg(Neg(N("a")))),
    ("(a + b) * c", B("*", B("+", N("a"), N("b")), N("c"))),
    ("(-x)^2", B("^", Neg(N("x")), Num(2))),
    ("exp(x)^2", B("^", Call("exp", N("x")), Num(2))),
    ("-exp(x)", Neg(Call("exp", N("x")))),
    ("2 * x ^ 3 + 1", B("+", B("*", Num(2), B("^", N("x"), Num(3))), Num(1))),
    ("1e-3 * .5", B("*", Num(0.001), Num(0.5))),
])
def test_precedence(text, tree):
    assert expr(text) == tree


# ---- spans -----------------------------------------------------------------------------------

def test_statement_and_name_spans():
    text = ("input x\n"
            "\n"
            "param   k1 ~ uniform(-1, 1)\n"
            "  L1 = k1 * x + 1\n"
            "minimize L1\n")
    inp, param, assign, minimize = stmts(text)
    assert inp.span == Span("m.model", 1, 1, 1, 8)
    assert inp.name_span == Span("m.model", 1, 7, 1, 8)
    assert param.span.line == 3 and param.name_span == Span("m.model", 3, 9, 3, 11)
    assert param.init.span == Span("m.model", 3, 14, 3, 28)
    assert assign.span == Span("m.model", 4, 3, 4, 18)
    assert assign.name_span == Span("m.model", 4, 3, 4, 5)
    assert minimize.name_span == Span("m.model", 5, 10, 5, 12)


def test_expression_spans():
    e = one("loss = mean((yhat - y)^2)\n").expr
    assert e.span == Span("m.model", 1, 8, 1, 26)
    assert e.func_span == Span("m.model", 1, 8, 1, 12)
    power = e.args[0]
    assert power.span == Span("m.model", 1, 13, 1, 25)
    diff = power.left
    assert diff.span == Span("m.model", 1, 14, 1, 22)  # the `yhat - y` of LANGUAGE.md 3.4
    assert diff.left.span == Span("m.model", 1, 14, 1, 18)
    assert diff.right.span == Span("m.model", 1, 21, 1, 22)


def test_binding_and_train_spans():
    inp, train = stmts("input X[N, 2] <- a, b standardize\ntrain {\n  batch 3\n}\n")
    assert inp.binding.columns.span == Span("m.model", 1, 18, 1, 22)
    assert train.span.line == 2 and train.span.end_line == 4
    assert train.settings[0].span == Span("m.model", 3, 3, 3, 10)


# ---- syntax errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, line, col, words", [
    ("x = 1 +\n", 1, 8, "this expression is incomplete"),
    ("input x\ny = (x -\n", 2, 9, "this expression is incomplete"),
    ("input x\ny = 2 * (x /\n", 2, 13, "this expression is incomplete"),
    ("input x\ny = exp(x\n", 2, 10, "missing `)`"),
    ("input x\n\ny = ((x + 1)\n", 3, 13, "missing `)`"),
    ("input x\ny = x)\n", 2, 6, "unbalanced `)`"),
    ("input x\ny = 2 x\n", 2, 7, "two values with no operator"),
    ("input x\ninput X[N 3]\n", 2, 11, "a dimension list looks like"),
    ("input x\ninput X[]\n", 2, 9, "a dimension list looks like"),
    ("param w\n", 1, 8, "`param` needs `~ distribution` or `= number`"),
    ("input x\nparam w = x\n", 2, 11, "`param` needs"),
    ("input x\ntrain {\n  rate 0.1\n}\n", 3, 3, "unknown setting in `train { }`"),
    ("train {\n  batch 2\n  seed 1\n  lr 0.1\n}\n", 4, 3, "unknown setting"),
    ("input x\ntrain {\n  batch 2\n", 3, 10, "unclosed `train {` block"),
    ("input x\nx + 1\n", 2, 3, "a statement starts with a keyword"),
    ("input = 3\n", 1, 1, "`input` is a keyword and cannot be a name"),
    ("input x\nminimize[2] = x\n", 2, 1, "`minimize` is a keyword"),
    ("y = 3 $ 4\n", 1, 7, "unexpected character '$'"),
    ('data "unterminated\n', 1, 6, "unexpected"),
])
def test_syntax_errors(text, line, col, words):
    e = syntax_error(text)
    assert words in e.message, e.message
    assert (e.span.file, e.span.line, e.span.col) == ("m.model", line, col), e.span
    assert e.span.end_col > e.span.col


@pytest.mark.parametrize("text, line, word, keyword", [
    ("input x\nparm W[3] ~ normal(0, 1)\n", 2, "parm", "param"),
    ("inpt x\n", 1, "inpt", "input"),
    ("input x\nloss = x^2\nminimise loss\n", 3, "minimise", "minimize"),
    ('dat "d.csv"\n', 1, "dat", "data"),
])
def test_a_misspelt_keyword_is_named_with_the_one_meant(text, line, word, keyword):
    e = syntax_error(text)
    assert e.message == f"unknown keyword `{word}`" and e.hint == f"did you mean `{keyword}`?"
    assert (e.span.line, e.span.col, e.span.end_col) == (line, 1, 1 + len(word))


def test_a_first_word_far_from_any_keyword_keeps_the_general_message():
    e = syntax_error("input x\nfoo x\n")
    assert "a statement starts with a keyword" in e.message


def test_unlabelled_syntax_errors_read_well():
    e = syntax_error("train {\n  batch 2\n  steps\n}\n")
    assert e.message == "unexpected end of the line" and e.hint == "expected a whole number"


def test_deep_nesting_is_refused_before_anything_recurses():
    e = syntax_error("y = " + "-" * 300 + "1\n")
    assert "nested more than" in e.message and e.span.line == 1
    terms = " + ".join(["x"] * 1000)
    e = syntax_error(f"input x\ns = {terms}\n")
    assert "nested more than" in e.message and e.span.line == 2
    assert expr("(" * 1000 + "x" + ")" * 1000) == N("x")  # parentheses alone add no depth


_GARBAGE = [
    "\x00", "input \x00x\n", "input x[N,\n", "param W[3, 2] ~\n", "def f(a = a\n", "))))\n",
    "train {\n" * 5, '"\n', "input x <- \n", "input x <- onehot(\n", "1e\n", "x = 1e+\n",
    "é = 1\n", "x = 1.2.3\n", "minimize\n", "data\n", "const c = x\n", "x = [1, 2]\n",
    "x = a @@ b\n", "x = a ^^ b\n", "x = ***\n", "\t\tinput\t x\n", "x = f(,)\n",
]


@pytest.mark.parametrize("text", _GARBAGE)
def test_garbage_is_always_a_syntax_error_or_a_model(text):
    try:
        parse(text, "m.model")
    except DslError as e:
        assert e.span is not None and e.span.line >= 1 and e.span.col >= 1


# ---- the parser's tables, cached in the user's cache folder (issue 15) --------------------------

def _models() -> list[Path]:
    root = Path(__file__).resolve().parents[3]
    return sorted([*root.glob("examples/*.model"), *root.glob("tests/golden/*/*.model")])


def _flat(tree) -> list:
    """A tree as a flat list (iteratively: some goldens nest deeper than recursion allows)."""
    return [(t.data, t.meta.line, t.meta.column, [(c.type, str(c), c.line, c.column) if c is not None
                                                  else None for c in t.children if not hasattr(c, "data")])
            for t in tree.iter_subtrees_topdown()]


def _fresh_lark(monkeypatch, cache: Path):
    monkeypatch.setenv("DSL_CACHE_DIR", str(cache))
    parser._lark.cache_clear()
    return parser._lark()


def test_cached_tables_parse_as_the_built_parser(monkeypatch, tmp_path):
    built = _fresh_lark(monkeypatch, tmp_path)  # nothing cached: built, and its tables written
    (table,) = tmp_path.glob("parser.*.json")
    json.loads(table.read_text())  # data, not code
    loaded = _fresh_lark(monkeypatch, tmp_path)  # from the file this time
    assert loaded is not built
    for path in _models():
        text = path.read_text(encoding="utf-8", errors="replace").rstrip("\n") + "\n"
        try:
            want = built.parse(text)
        except UnexpectedInput as e:  # a golden syntax error: the same error, at the same place
            with pytest.raises(type(e)) as got:
                loaded.parse(text)
            assert (got.value.line, got.value.column) == (e.line, e.column), path
            continue
        assert _flat(loaded.parse(text)) == _flat(want), path
    parser._lark.cache_clear()


def _walked(text: str, file: str):
    """The AST as a walk over Lark's positioned tree built it before issue 15: the depth checked
    on the tree, then each node's method given its meta as span, children first."""
    tree = parser._lark().parse(text)
    parser._check_depth(tree, file)
    to_ast = build._ToAst(file)

    def walk(t):
        children = [walk(c) if hasattr(c, "data") else c for c in t.children]
        m = t.meta  # empty: `start` of a text with no statements
        span = None if m.empty else Span(file, m.line, m.column, m.end_line, m.end_column)
        return getattr(to_ast, t.data)(span, children)
    return ast.Program(file, tuple(walk(tree)))


def _outcome(make, text: str):
    try:
        return repr(make(text, "m.model"))  # spans included, unlike ==
    except DslSyntaxError as e:
        return e.message, e.span, e.hint


_EDGES = [
    "", "\n", "# only a comment\n", "x = ((a))\n", "x = (a + b)[1] * (c)\n", "x = -(a)\n",
    "y = " + "-" * 198 + "1\n", "y = " + "-" * 199 + "1\n", "y = " + "-" * 200 + "1\n",
    "z = " + " + ".join(["x"] * 198) + "\n", "z = " + " + ".join(["x"] * 199) + "\n",
    "z = " + "f(" * 99 + "x" + ")" * 99 + "\n", "z = " + "f(" * 100 + "x" + ")" * 100 + "\n",
    "z = " + "(" * 250 + "x" + ")" * 250 + "\n",
    "input x[N, 3] <- a..b standardize\ninput y <- c, d, e\ninput z <- onehot(k)\n",
    "def f(a, b) = a * (b + 1)\ndef g() = 1\nx = g()[:, 1:-2]\ny = x[0, :3, -1:, :]\n",
    "param w[2, 3] ~ normal(0, 1) in (-inf, 3] per source\nparam v = -2 in [-1, inf)\n",
    'data "a.csv" as foo split 0.5 seed 3\n', "x = a == b\ny = a != (b < c)\nz = a ^ -b ** c\n",
    "train {\n batch 2\n optimizer adam(lr = 0.1, 2)\n log every 3\n}\n",
    "x = f(\n a,\n b\n)\n", "input x[\n N,\n 3]\n",
    # mistakes a rule's method finds: the first in the walk's order, after a deep nesting
    "param a = 1 in [0, info)\n", "x = 1e999\nx = f(a = 1, 2)\n", 'data "a.csv" split 1.5\n',
    "x = f(a = 1e999, 2)\n", "x = 1e999\ny = " + "-" * 300 + "1\n",
    # blanks skipped within a token's match: before a token, a `\r` (which `_NL` may take), the
    # end of a line, a comment or a character no terminal matches
    " \t x\t=\f a  +\t\tb \r\n", "x = a \r\n", "x = a\r\ny = b \f\r\r\n", "x = a \r b\n",
    "x = a  # c\n\t \n", "x = (a \r\n \t+ b)\n", "x = a  $\n",
]


@pytest.mark.parametrize("text", [*_EDGES, *_models()], ids=str)
def test_the_ast_built_while_parsing_is_the_one_the_tree_walk_built(text):
    """Issue 15: the AST is built as Lark reduces, with no tree; every span and every mistake a
    method finds is the same as when walking Lark's tree with propagated positions."""
    if isinstance(text, Path):
        text = text.read_text(encoding="utf-8", errors="replace").rstrip("\n") + "\n"
    try:
        want = _outcome(_walked, text)
    except UnexpectedInput:  # a syntax error: reported before any building, as before
        with pytest.raises(DslSyntaxError):
            parse(text, "m.model")
        return
    assert _outcome(parse, text) == want


@pytest.fixture(scope="module")
def lark_lexing():
    """Lark with its own lexer, on the same grammar and options as `parser._lark()`."""
    from lark import Lark

    from grammar import grammar_text
    return Lark(grammar_text(), postlex=parser._CONTINUATION, **parser._OPTIONS)


def _token(t) -> tuple:
    return t.type, t.value, t.start_pos, t.line, t.column, t.end_line, t.end_column, t.end_pos


def _larks_tokens(lark_, text: str) -> tuple[list, bool]:
    """The tokens Lark's parser is fed (after the line continuation), and whether it parsed."""
    tokens = []
    interactive = lark_.parse_interactive(text)
    try:
        for t in interactive.iter_parse():
            tokens.append(_token(t))
        interactive.feed_eof()
    except UnexpectedInput:
        return tokens, False
    return tokens, True


@pytest.fixture(scope="module")
def table_data():
    """`parser._Tables`' data, as loaded from its file."""
    return json.loads(json.dumps(parser._table_data(parser._lark(), "key")))


def _tables_tokens(monkeypatch, tables, text: str) -> tuple[list, bool]:
    """The same for the parse on `tables`: the tokens `_run` is fed (by `_lex`, which drops
    the newlines inside brackets as the line continuation does)."""
    tokens = []
    lex = parser._lex

    def recording(*args):
        for t in lex(*args):
            if t.type != "$END":  # Lark's own end token is not lexed
                tokens.append(_token(t))
            yield t

    monkeypatch.setattr(parser, "_lex", recording)
    try:
        parser._run(tables, text, parser._callbacks(tables, build._ToAst("m.model"), "m.model", []))
    except parser._Unparsed:
        return tokens, False
    return tokens, True


@pytest.mark.parametrize("lexers", ["root", "own", "switching"])
@pytest.mark.parametrize("text", [*_EDGES, *_GARBAGE, "x = a ** b ^ c\n", *_models()], ids=str)
def test_the_lexer_makes_larks_tokens(monkeypatch, lark_lexing, table_data, text, lexers):
    """Issue 15: `_lex` on the plain tables lexes as Lark's contextual lexer does: the same
    tokens, keywords and positions, in every parser state, and it stops where Lark's parse
    fails (where Lark parses again to say why); whether the union of all terminals decides
    (fresh tables), each state's own union (all compiled), or the one and then the other."""
    if isinstance(text, Path):
        text = text.read_text(encoding="utf-8", errors="replace").rstrip("\n") + "\n"
    if lexers == "switching":
        monkeypatch.setattr(parser, "_ROOT_USES", 3)
    tables = parser._Tables(table_data)
    if lexers == "own":
        for lexer in tables.lexers:
            lexer.compile()
    assert _tables_tokens(monkeypatch, tables, text) == _larks_tokens(lark_lexing, text)


@pytest.mark.parametrize("damage", ["", "{not json", '{"data": 1, "memo": {}}', "[]"])
def test_damaged_tables_are_rebuilt(monkeypatch, tmp_path, damage):
    _fresh_lark(monkeypatch, tmp_path)
    (table,) = tmp_path.glob("parser.*.json")
    table.write_text(damage)
    _fresh_lark(monkeypatch, tmp_path)
    assert one("z = a + b\n").name == "z"
    assert json.loads(table.read_text())["data"]  # written again, whole
    parser._lark.cache_clear()


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="no file owners to compare")
@pytest.mark.parametrize("what", ["file", "folder"])
def test_tables_others_can_write_are_not_used(monkeypatch, tmp_path, what):
    """Tables are trusted as compiled modules are: other tables would read another model."""
    _fresh_lark(monkeypatch, tmp_path)
    (table,) = tmp_path.glob("parser.*.json")
    os.chmod(table if what == "file" else tmp_path, 0o666 if what == "file" else 0o777)

    def refuse(*args, **kwargs):
        raise AssertionError("tables loaded from a file others can write")

    monkeypatch.setattr(parser.Lark, "_load_from_dict", refuse)
    _fresh_lark(monkeypatch, tmp_path)
    assert one("z = a + b\n").name == "z"
    parser._lark.cache_clear()


def _fresh_tables(monkeypatch, cache: Path):
    monkeypatch.setenv("DSL_CACHE_DIR", str(cache))
    parser._tables.cache_clear()
    parser._lark.cache_clear()
    return parser._tables()


def _no_lark():
    raise AssertionError("Lark's parser used for a text that parses")


def test_plain_tables_are_cached_and_a_text_that_parses_needs_no_lark(monkeypatch, tmp_path):
    """Issue 15: the plain tables are taken from Lark's parser when absent and written as JSON
    data; loaded from there, every model in the repository parses as before with no Lark
    object, and a text that does not parse still gets Lark's error."""
    texts = [path.read_text(encoding="utf-8", errors="replace").rstrip("\n") + "\n"
             for path in _models()]
    built = _fresh_tables(monkeypatch, tmp_path)
    (table,) = tmp_path.glob("lalr.*.json")
    assert json.loads(table.read_text())["key"]  # data, not code
    want = [_outcome(parse, text) for text in texts]
    lark_ = parser._lark()
    parser._tables.cache_clear()
    monkeypatch.setattr(parser, "_lark", _no_lark)
    assert parser._tables() is not built  # loaded from the file
    parsed = 0
    for text, outcome in zip(texts, want):
        try:
            parser._check_depth(lark_.parse(text), "m.model")
        except (UnexpectedInput, DslSyntaxError):  # Lark says where: a syntax error, too deep
            continue
        assert _outcome(parse, text) == outcome
        parsed += 1
    assert parsed > 20
    monkeypatch.setattr(parser, "_lark", lambda: lark_)
    e = syntax_error("x = (1 + 2\n")
    assert "missing `)`" in e.message and e.notes
    parser._tables.cache_clear()


def _damages(table: Path) -> list[str]:
    key = json.loads(table.read_text())["key"]
    return ["", "{not json", "[]", "null", "{}", json.dumps({"key": key}),
            json.dumps({**json.loads(table.read_text()), "key": "another"})]


@pytest.mark.parametrize("damage", range(7))
def test_damaged_plain_tables_are_rebuilt(monkeypatch, tmp_path, damage):
    _fresh_tables(monkeypatch, tmp_path)
    (table,) = tmp_path.glob("lalr.*.json")
    whole = json.loads(table.read_text())
    table.write_text(_damages(table)[damage])
    _fresh_tables(monkeypatch, tmp_path)
    assert one("z = a + b\n").name == "z"
    assert json.loads(table.read_text()) == whole  # written again, whole
    parser._tables.cache_clear()


@pytest.mark.parametrize("change", ["grammar", "lark"])
def test_plain_tables_of_another_grammar_or_lark_are_not_used(monkeypatch, tmp_path, change):
    """Tables are keyed by the grammar's text and Lark's version (and the options): those of
    another are another file, and a file that holds another key is rebuilt."""
    _fresh_tables(monkeypatch, tmp_path)
    (mine,) = tmp_path.glob("lalr.*.json")
    if change == "grammar":
        text = parser.grammar_text()
        monkeypatch.setattr(parser, "grammar_text", lambda: text + "\n// another grammar\n")
    else:
        monkeypatch.setattr(parser.lark, "__version__", "0.0.0")
    _fresh_tables(monkeypatch, tmp_path)
    (other,) = set(tmp_path.glob("lalr.*.json")) - {mine}
    other.replace(mine)  # another's tables under this name
    monkeypatch.undo()
    _fresh_tables(monkeypatch, tmp_path)
    assert json.loads(mine.read_text())["key"] == parser._key(str(parser._TABLES_FORMAT))
    assert one("z = a + b\n").name == "z"
    parser._tables.cache_clear()


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="no file owners to compare")
@pytest.mark.parametrize("what", ["file", "folder"])
def test_plain_tables_others_can_write_are_not_used(monkeypatch, tmp_path, what):
    """Plain tables are trusted as Lark's are: planted ones (here, tables that would fail
    every parse) are neither loaded nor, in a folder others can write, replaced."""
    _fresh_tables(monkeypatch, tmp_path)
    (table,) = tmp_path.glob("lalr.*.json")
    table.write_text(json.dumps({**json.loads(table.read_text()), "states": []}))
    os.chmod(table if what == "file" else tmp_path, 0o666 if what == "file" else 0o777)
    _fresh_tables(monkeypatch, tmp_path)
    assert one("z = a + b\n").name == "z"
    assert bool(json.loads(table.read_text())["states"]) == (what == "file")
    parser._tables.cache_clear()


# ---- line continuation -----------------------------------------------------------------------

def test_a_newline_inside_brackets_continues_the_statement():
    one_line = stmts("input X[N, 3]\nloss = mean(sum(X, axis = 1) + 1)\nminimize loss\n")
    broken = stmts("input X[N,\n        3]\nloss = mean(  # a comment inside\n\n"
                   "    sum(X,\n        axis = 1)\n  + 1\n)\nminimize loss\n")
    assert broken == one_line
    assert broken[1].span == Span("m.model", 3, 1, 8, 2)
    assert broken[1].expr.args[0].left.span.line == 5  # sum(X, axis = 1) keeps its own lines


def test_a_newline_outside_brackets_still_ends_the_statement():
    e = syntax_error("input x\ny = x +\n  1\n")
    assert "this expression is incomplete" in e.message
    assert (e.span.line, e.span.col) == (2, 8)


def test_a_mistake_at_the_end_of_a_big_model_reads_its_brackets_once(monkeypatch):
    """Looking for a statement an open bracket swallowed scanned the text again for every
    statement line above the mistake: 48 s for a 10,000-node model (issue 15)."""
    scans = []
    stacks = parser._bracket_stacks
    monkeypatch.setattr(parser, "_bracket_stacks", lambda *a: scans.append(a) or stacks(*a))
    text = "".join(f"param w{i} ~ normal(0, 1)\nz{i} = w{i} * 2\n" for i in range(2000))
    e = syntax_error(text + "x = 1 2\n")
    assert "two values with no operator between them" in e.message and e.span.line == 4001
    assert len(scans) <= 2


def test_errors_inside_a_continued_statement_point_at_their_own_line():
    e = syntax_error("input x\ny = exp(x +\n        2 3)\n")
    assert "(found `3`)" in e.message
    assert (e.span.line, e.span.col) == (3, 11)


@pytest.mark.parametrize("text, line, col, words", [
    # the bracket swallows the next statement: reported where the first line ends, with a note
    ("input x\ny = exp(x\nminimize y\n", 2, 10, "missing `)` (found the end of the line)"),
    ("input x\ny = (x\n\n# c\nz = 3\n", 2, 7, "missing `)` (found the end of the line)"),
    ("input x\ny = (x +\nminimize y\n", 2, 9, "this expression is incomplete"),
    ("input x\ny = (x\n", 2, 7, "missing `)` (found the end of the file)"),
    ("input x\ny = exp((x\n", 2, 11, "missing `)`"),
])
def test_an_unclosed_bracket_is_found_where_it_was_left_open(text, line, col, words):
    e = syntax_error(text)
    assert words in e.message, e.message
    assert (e.span.line, e.span.col) == (line, col), e.span
    if "missing" in words:
        assert e.notes and e.notes[0][0].startswith("the `(` opened here")


def test_continuation_works_with_the_parser_loaded_from_cached_tables(monkeypatch, tmp_path):
    _fresh_lark(monkeypatch, tmp_path)  # built, tables written
    _fresh_lark(monkeypatch, tmp_path)  # loaded from the tables
    assert stmts("y = (1 +\n  2)\n") == stmts("y = (1 + 2)\n")
    parser._lark.cache_clear()


# ---- comparisons -----------------------------------------------------------------------------

def B(op, a, b):
    return ast.Binary(op, a, b, S)


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">="])
def test_comparisons_bind_looser_than_arithmetic(op):
    assert expr(f"a + 1 {op} -b * 2") == B(op, B("+", N("a"), Num(1)),
                                              B("*", ast.Unary("-", N("b"), S), Num(2)))


def test_a_comparison_is_an_argument_and_equals_is_not_a_keyword_argument():
    assert expr("where(s == 0, 1, x)") == ast.Call(
        "where", (B("==", N("s"), Num(0)), Num(1), N("x")), (), S, S)
    assert one("y = s == 0\n").expr == B("==", N("s"), Num(0))
    assert one("input x <-y\n").binding.columns.names == ("y",)  # `<-` is still the binding
    assert expr("a <-1") == B("<", N("a"), ast.Unary("-", Num(1), S))


@pytest.mark.parametrize("text", ["y = a < b < c\n", "y = a == b != c\n", "y = 0 <= x <= 1\n"])
def test_chained_comparisons_are_refused_with_a_hint(text):
    e = syntax_error(text)
    assert e.message.startswith("comparisons do not chain")
    assert "(a < b) * (b < c)" in e.hint


# ---- indexing and slicing --------------------------------------------------------------------

def test_subscripts_parse_with_their_bounds():
    e = expr("X[:, 0] + X[:, 1:3] + v[-2:] + v[:-1] + tanh(H)[:, :]")
    subs = []
    while isinstance(e, ast.Binary):
        subs.append(e.right.subscripts)
        e = e.left
    subs.append(e.subscripts)
    got = [tuple((s.start, s.stop, s.is_slice) for s in ss) for ss in reversed(subs)]
    assert got == [((None, None, True), (0, None, False)), ((None, None, True), (1, 3, True)),
                   ((-2, None, True),), ((None, -1, True),), ((None, None, True), (None, None, True))]


def test_indexing_binds_tighter_than_power_and_minus():
    e = expr("-X[:, 0]^2")
    assert isinstance(e, ast.Unary) and e.operand.op == "^"
    assert isinstance(e.operand.left, ast.Index)
