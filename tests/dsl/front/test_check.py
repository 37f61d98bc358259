"""dsl.front.check: names, defs, order, cycles, shapes and warnings; every error kind as a golden file.

Golden files in the stanc3 manner: `tests/golden/bad/NAME.model` and `NAME.err`, the exact text
`dsl check tests/golden/bad/NAME.model` prints on stderr when run from the repository root.
Files named `warn_*` are models that check (exit 0) with warnings; every other one exits 1.
Rewrite the `.err` files with `DSL_UPDATE_GOLDEN=1` and review the diff.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from compiler.errors import DslError, SemanticError
from dsl.front.check import check
from dsl.cli import main
from dsl.front.build import parse
from dsl.training.config import configure
from tests.golden_util import compare

ROOT = Path(__file__).resolve().parents[3]
BAD = ROOT / "tests" / "golden" / "bad"
BAD_MODELS = sorted(p.name for p in BAD.glob("*.model"))


def run_cli(argv, capsys) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's --help / --version
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def checked(text: str):
    """The model as `dsl check` sees it: checked, its `train { }` block read by training."""
    return configure(check(parse(text, "m.model")))


def error_of(text: str) -> DslError:
    with pytest.raises(DslError) as info:
        checked(text)
    return info.value


# ---- golden bad files ------------------------------------------------------------------------

@pytest.mark.parametrize("name", BAD_MODELS)
def test_golden_bad(name, at_root, capsys):
    rel = f"tests/golden/bad/{name}"
    rc, out, err = run_cli(["check", rel], capsys)
    assert "Traceback" not in err and "internal error" not in err
    if name.startswith("warn_"):
        assert rc == 0 and "ok" in out and "warning:" in err
    else:
        assert rc == 1 and out == "" and err.startswith(rel + ":")
    compare(str(BAD / name.replace(".model", ".err")), err)


def test_every_error_kind_has_a_golden_file():
    wanted = {
        "defined_twice", "unknown_name", "unknown_function", "cycle", "broadcast_column",
        "matmul_inner_dims", "wrong_arity", "wrong_arity_def", "axis_out_of_range",
        "objective_not_scalar", "unknown_init", "keyword_as_name", "builtin_as_name",
        "def_recursive", "def_mutual_recursion", "syntax_incomplete", "syntax_missing_paren",
        "syntax_bad_dims", "syntax_unknown_setting", "binary_bytes", "long_line",
        "sum_1000_terms", "def_inlined_too_large", "warn_unused_param", "warn_unused_node",
        "bounds_start_outside", "bounds_empty", "bounds_draw_outside", "bounds_not_a_number",
    }
    have = {n[:-len(".model")] for n in BAD_MODELS}
    assert wanted <= have, wanted - have
    for name in have:
        assert (BAD / f"{name}.err").exists(), f"{name}.err is missing"


def err_text(name: str) -> str:
    return (BAD / f"{name}.err").read_text(encoding="utf-8")


def test_broadcast_error_is_the_one_in_the_contract():
    """LANGUAGE.md 3.4, word for word: location, message, the line, carets, the hint."""
    assert err_text("broadcast_column") == (
        "tests/golden/bad/broadcast_column.model:12:14: error: shape mismatch in `-`: "
        "yhat is [N, 1] but y is [N]\n"
        "    loss = mean((yhat - y)^2)\n"
        "                 ^^^^^^^^\n"
        "  hint: numpy would broadcast these to [N, N]; declare y as [N, 1]\n")


def test_golden_texts_say_what_the_contract_asks():
    """Guards against a careless DSL_UPDATE_GOLDEN=1: the key facts of each message."""
    twice = err_text("defined_twice")
    assert ":4:1: error: `w` is defined twice" in twice and ":3:7: note:" in twice
    assert "did you mean `W1`?" in err_text("unknown_name")
    assert "unknown function `sigmod`" in err_text("unknown_function")
    assert "did you mean `sigmoid`?" in err_text("unknown_function")
    cycle = err_text("cycle")
    assert "cycle in the graph: a -> b -> a" in cycle
    assert "cycle.model:2:1: error" in cycle and "cycle.model:3:1: note" in cycle
    assert "[N, 13] @ [12, 10]" in err_text("matmul_inner_dims")
    assert "`exp` takes 1 argument, got 2" in err_text("wrong_arity")
    assert "`sq` takes 2 arguments, got 1" in err_text("wrong_arity_def")
    assert "axis must be a whole number in [-2, 1]" in err_text("axis_out_of_range")
    assert "must be a scalar, but it is [N, 1]" in err_text("objective_not_scalar")
    assert "did you mean `normal`?" in err_text("unknown_init")
    assert "`param` is a keyword" in err_text("keyword_as_name")
    assert "`onehot` is a keyword" in err_text("keyword_onehot_as_name")
    assert "`exp` is a built-in function" in err_text("builtin_as_name")
    assert "calls itself (f -> f)" in err_text("def_recursive")
    assert "calls itself (f -> g -> f)" in err_text("def_mutual_recursion")
    assert "this expression is incomplete" in err_text("syntax_incomplete")
    assert "missing `)`" in err_text("syntax_missing_paren")
    assert "a dimension list looks like `[N, 13]`" in err_text("syntax_bad_dims")
    assert "unknown setting in `train { }` (found `learning_rate`)" in err_text("syntax_unknown_setting")
    assert "unclosed `train {` block" in err_text("syntax_unclosed_train")
    assert "no operator between them" in err_text("syntax_juxtaposition")
    assert "not UTF-8" in err_text("binary_bytes")
    assert "unknown name `kk`" in err_text("long_line")
    assert "param `unused_w` does not affect the objective" in err_text("warn_unused_param")
    assert "node `spare` is not used" in err_text("warn_unused_node")


def test_long_lines_are_cut_around_the_span():
    for name in ("long_line", "sum_1000_terms"):
        lines = err_text(name).splitlines()
        assert all(len(line) < 200 for line in lines), name
        shown, carets = lines[1], lines[2]
        assert carets.strip() and set(carets.strip()) == {"^"}
        # the carets sit under the named span
        assert shown[len(carets) - len(carets.lstrip()):].startswith(
            "kk" if name == "long_line" else "x")


def test_compile_reports_the_same_errors(at_root, capsys):
    for name in ("cycle.model", "broadcast_column.model", "syntax_incomplete.model"):
        rc, out, err = run_cli(["compile", f"tests/golden/bad/{name}"], capsys)
        assert rc == 1 and out == ""
        assert err == err_text(name[:-len(".model")])


# ---- edge cases decided here -----------------------------------------------------------------

def test_empty_file_is_a_model_with_nothing(tmp_path, monkeypatch, capsys):
    """Decision: an empty (or comment-only) file is a valid model of 0 names; `check` succeeds."""
    monkeypatch.chdir(tmp_path)
    for i, text in enumerate(["", "\n\n", "# only a comment", "# a\n\n   # b\n"]):
        Path(f"e{i}.model").write_text(text)
        rc, out, err = run_cli(["check", f"e{i}.model"], capsys)
        assert (rc, out, err) == (0, f"e{i}.model: ok, 0 names\n", "")
    m = checked("")
    assert m.order == [] and m.objective is None and m.predict is None and m.warnings == []


def test_deeply_nested_parentheses_are_fine(tmp_path, capsys):
    path = tmp_path / "nested.model"
    path.write_text("input x\nparam k = 1\nloss = " + "(" * 500 + "k * x" + ")" * 500 + "^2\n"
                    "minimize loss\n")
    rc, out, err = run_cli(["check", str(path)], capsys)
    assert rc == 0 and err == "" and "node   loss  scalar" in out


def test_deeply_nested_calls_are_a_clean_error(tmp_path, capsys):
    path = tmp_path / "calls.model"
    path.write_text("input x\ny = " + "exp(" * 400 + "x" + ")" * 400 + "\n")
    rc, out, err = run_cli(["check", str(path)], capsys)
    assert rc == 1 and "nested more than" in err and "Traceback" not in err


def test_a_long_sum_split_over_statements_is_fine():
    lines = ["input x", "param k = 1", "s0 = k * x"]
    lines += [f"s{i} = s{i - 1} + " + " + ".join(["x"] * 100) for i in range(1, 10)]
    lines += ["loss = s9^2", "minimize loss"]
    m = checked("\n".join(lines))
    assert m.order[-1] == "loss" and m.shapes["loss"] == ()


def _nested_def(depth: int) -> str:
    """Issue 13's inlining bomb: `def g(a) = sin(a)*cos(a) + a` nested `depth` deep."""
    call = "k * x"
    for _ in range(depth):
        call = f"g({call})"
    return (f"input x\nparam k = 1\ndef g(a) = sin(a)*cos(a) + a\ny = {call}\nloss = y^2\n"
            "minimize loss\n")


def test_a_def_nested_9_deep_is_refused_before_compiling():
    e = error_of(_nested_def(9))
    assert isinstance(e, SemanticError) and e.span.line == 4
    assert "`y` is too large to derive" in e.message and "10,000" in e.message
    assert "defs are expanded inline" in e.hint
    assert checked(_nested_def(6)).order[-1] == "loss"  # 3,643 terms, 2 names: accepted


def _product(n: int, split: bool) -> str:
    lines = ["input x"] + [f"param p{i} = 1" for i in range(n)]
    if split:  # the same product, ten factors a node
        parts = [" * ".join(f"sin(p{i})" for i in range(j, j + 10)) for j in range(0, n, 10)]
        lines += [f"u{j} = {part}" for j, part in enumerate(parts)]
        lines.append("y = x * " + " * ".join(f"u{j}" for j in range(len(parts))))
    else:
        lines.append("y = x * " + " * ".join(f"(sin(p{i}))" for i in range(n)))
    return "\n".join(lines + ["loss = y^2", "minimize loss"]) + "\n"


def test_a_product_of_many_names_is_refused_and_its_split_form_accepted():
    """Each name a statement reads is one derivative of the whole statement: 100 params in one
    product are 30,000 units of work (minutes of sympy); ten nodes of ten are a few hundred."""
    e = error_of(_product(100, split=False))
    assert "too large to derive" in e.message and "101 names it reads" in e.message
    assert "split it into several statements" in e.hint
    assert checked(_product(100, split=True)).order[-1] == "loss"


def test_the_whole_model_has_a_derivation_budget(monkeypatch):
    import dsl.front.check as check_module
    monkeypatch.setattr(check_module, "MAX_MODEL_WORK", 50)
    lines = ["input x", "param k = 1", "z0 = k * x"]
    lines += [f"z{i} = sin(z{i - 1}) * k" for i in range(1, 20)]
    e = error_of("\n".join(lines + ["minimize z19"]) + "\n")
    assert "the model is too large to derive" in e.message and "50" in e.message
    assert e.span.line > 3 and "largest statement" in e.hint


# ---- names, defs and order -------------------------------------------------------------------

def test_order_does_not_matter_and_the_sort_is_topological():
    m = checked("minimize loss\nloss = (b - y)^2\nb = a * 2\na = k * x\nparam k = 1\ninput y\n"
                "input x\n")
    pos = {n: i for i, n in enumerate(m.order)}
    assert pos["k"] < pos["a"] < pos["b"] < pos["loss"] and pos["x"] < pos["a"]
    assert m.objective == "loss"


def test_defs_are_inlined_and_their_parameters_are_local():
    m = checked("input x\nparam w = 2\ndef sq(x) = x * x\ndef f(a, w) = sq(a) + w\n"
                "loss = f(w, x)\nminimize loss\n")
    t = m.nodes["loss"]
    assert t.op == "+"
    names = set()
    stack = [t]
    while stack:
        n = stack.pop()
        if n.op == "name":
            names.add(n.name)
        stack.extend(n.args)
    assert names == {"w", "x"}  # the def's own `x` and `w` are its arguments, not the globals
    assert "sq" not in m.statements and "f" not in m.statements


def test_def_name_clashes_and_repeated_parameters():
    assert "defined twice" in error_of("def f(a) = a\nf = 2\n").message
    assert "appears twice" in error_of("def f(a, a) = a\n").message


def test_unknown_name_inside_a_def():
    e = error_of("def f(a) = a + bb\ninput b\ny = f(b)\n")
    assert e.message == "unknown name `bb`" and e.span.line == 1


def test_a_short_name_with_one_letter_wrong_gets_a_suggestion():
    """suggest()'s one cutoff, 0.5 (compiler/errors.py): `bl` for `b1` is offered, as in
    `derive --wrt`; at difflib's default 0.6 the checker used to offer nothing."""
    e = error_of("input x\nparam b1 = 0\nparam b2 = 0\ny = x + bl\n")
    assert e.message == "unknown name `bl`" and e.hint == "did you mean `b1`?"


def test_cycle_of_one_and_of_three():
    assert "a -> a" in error_of("a = a + 1\n").message
    e = error_of("input x\na = c * x\nb = a + 1\nc = b - 1\n")
    assert e.message == "cycle in the graph: a -> c -> b -> a"
    assert e.span.line == 2 and [s.line for _, s in e.notes] == [4, 3]


def test_second_minimize_and_unknown_targets():
    e = error_of("input x\nminimize x\nminimize x\n")
    assert "a second `minimize`" in e.message and e.notes[0][1].line == 2
    assert error_of("input x\npredict xx\n").message == "unknown name `xx`"


def test_keywords_and_builtins_as_names():
    for text in ("param exp = 1\n", "const sum = 2\n", "input softmax\n", "def relu(a) = a\n",
                 "input standardize\n"):
        e = error_of(text)
        assert "cannot be a name" in e.message, text


# ---- shapes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("expr, shape", [
    ("X @ W", ("N", 4)),
    ("X @ W + b", ("N", 4)),
    ("b + X @ W", ("N", 4)),
    ("2 * X", ("N", 3)),
    ("sum(X)", ()),
    ("mean(X, axis = 0)", (3,)),
    ("sum(X, axis = 1)", ("N",)),
    ("sum(X, axis = -1)", ("N",)),
    ("logsumexp(X @ W, axis = 1)", ("N",)),
    ("softmax(X @ W, axis = 1)", ("N", 4)),
    ("transpose(X)", (3, "N")),
    ("transpose(X) @ X", (3, 3)),
    ("max(X, 0)", ("N", 3)),
    ("sigmoid(X) - relu(X)^2", ("N", 3)),
    ("-v", ("N",)),
    ("v * v", ("N",)),
    ("X @ u", ("N",)),
])
def test_shapes(expr, shape):
    m = checked(f"input X[N, 3]\ninput v[N]\nparam W[3, 4] ~ glorot\nparam b[4] = 0\n"
                f"param u[3] = 1\nz = {expr}\n")
    assert m.shapes["z"] == shape


@pytest.mark.parametrize("expr, words", [
    ("X + v", "shape mismatch in `+`: X is [N, 3] but v is [N]"),
    ("X * W", "shape mismatch in `*`"),
    ("c - v", "c is [N, 1] but v is [N]"),
    ("W @ X", "`@` inner dims differ: [3, 4] @ [N, 3]"),
    ("X @ 2", "`@` needs vectors or matrices"),
    ("sum(X, axis = 2)", "axis must be a whole number"),
    ("sum(X, axis = 0.5)", "axis must be a whole number"),
    ("sum(X, axes = 1)", "`sum` has no argument `axes`"),
    ("exp(X, axis = 1)", "`exp` has no argument `axis`"),
    ("softmax(X)", "needs an axis"),
    ("max(X)", "`max` takes 2 arguments, got 1"),
    ("transpose(X, X)", "`transpose` takes 1 argument, got 2"),
])
def test_shape_errors(expr, words):
    e = error_of(f"input X[N, 3]\ninput v[N]\ninput c[N, 1]\nparam W[3, 4] ~ glorot\nz = {expr}\n")
    assert isinstance(e, SemanticError)
    assert words in e.message
    assert e.span.line == 5


def test_column_against_flat_hint_for_a_node():
    e = error_of("input X[N, 3]\ninput v[N]\nparam W[3, 1] = 0\nz = (X @ W) - v\n")
    assert e.hint == "numpy would broadcast these to [N, N]; declare v as [N, 1]"
    e = error_of("input X[N, 3]\ninput v[N]\nparam W[3, 1] = 0\nz = (X @ W) - 2 * v\n")
    assert e.hint == "numpy would broadcast these to [N, N]; make both [N, 1] or both [N]"


def test_a_size_name_in_a_param_is_told_the_column_count_that_fixes_it():
    """Issue 13 item 16: `D` bound by a binding's columns is the number to write in the param."""
    e = error_of('data "d.csv"\ninput X[N, D] <- a, b, c, d\nparam W[D, 1] = 0\n')
    assert e.hint == "`D` is 4 here (the columns of `X`): write `param W[4, 1]`"
    e = error_of('data "d.csv"\ninput X[N, D] <- a..d\nparam W[D, 1] = 0\n')
    assert "count of a..d (the columns of `X`) in place of `D`" in e.hint
    e = error_of("param W[N, 2] = 0\n")
    assert e.hint == "a param's dims are whole numbers, known before data"


def test_declarations_are_checked():
    assert "size name `N`" in error_of("param W[N, 2] = 0\n").message
    assert "at least 1" in error_of("input x[0]\n").message
    assert "at most 2 dims" in error_of('data "d.csv"\ninput x[N, 2, 2] <- a..b\n').message
    assert "`normal` takes 2 arguments, got 1" in error_of("param w ~ normal(1)\n").message
    assert "`glorot` takes 0 arguments" in error_of("param w[2, 2] ~ glorot(1)\n").message
    assert "sigma >= 0" in error_of("param w ~ normal(0, -1)\n").message
    assert "lo <= hi" in error_of("param w ~ uniform(1, -1)\n").message


def test_train_block_is_validated():
    base = "input x\nparam k = 1\nloss = (k * x)^2\nminimize loss\ntrain {\n%s\n}\n"
    cases = {
        "optimizer sgdd(lr = 0.1)": "unknown optimizer `sgdd`",
        "optimizer sgd(rate = 0.1)": "`sgd` has no argument `rate`",
        "optimizer gd(0.1, 0.2)": "`gd` takes at most 1 arguments",
        "optimizer sgd(lr = -1)": "the learning rate must be positive",
        "optimizer sgd(momentum = 1)": "momentum must be in [0, 1)",
        "optimizer adam(beta1 = 1)": "beta1 must be in [0, 1)",
        "optimizer random_search(trials = 2.5)": "trials must be a whole number",
        "optimizer random_search(10, 1, -1)": "random_search needs low < high",
        "dtype float16": "unknown dtype `float16`",
        "batch 0": "`batch` must be at least 1",
        "epochs 3\n steps 4": "set `epochs` or `steps`, not both",
        "seed 1\n seed 2": "`seed` is set twice",
    }
    for body, words in cases.items():
        e = error_of(base % body)
        assert words in e.message, (body, e.message)
    assert error_of(base % "optimizer sgdd(lr = 0.1)").hint == "did you mean `sgd`?"


def test_train_block_values():
    m = checked("input x\nparam k = 1\nloss = (k * x)^2\nminimize loss\ntrain {\n"
                " optimizer adam(0.05, beta2 = 0.99)\n batch 8\n steps 300\n seed 7\n"
                " dtype float32\n log every 10\n}\n")
    t = m.train
    assert t.optimizer.name == "adam"
    assert t.optimizer.args == {"lr": 0.05, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8}
    assert (t.batch, t.steps, t.epochs, t.seed, t.dtype, t.log_every) == (8, 300, None, 7,
                                                                          "float32", 10)
    d = checked("input x\n").train
    # no optimizer named: chosen when the model is compiled (dsl.training.train.choose_optimizer)
    assert d.optimizer is None and d.dtype == "float64"


# ---- warnings --------------------------------------------------------------------------------

def test_warnings_for_unused_params_and_nodes():
    m = checked("input x\nparam k = 1\nparam j = 2\nparam q = 3\nloss = (k * x)^2\n"
                "other = j * x\nshown = q + 1\nminimize loss\npredict shown\n")
    messages = sorted(w.message for w in m.warnings)
    assert messages == ["node `other` is not used",
                        "param `j` does not affect the objective `loss`",
                        "param `q` does not affect the objective `loss`"]
    assert all(w.span is not None for w in m.warnings)


def test_no_warnings_for_a_tidy_model():
    m = checked((ROOT / "examples" / "boston_mlp.model").read_text())
    assert m.warnings == []
    assert m.order.index("L1") < m.order.index("h") < m.order.index("yhat") < m.order.index("loss")
    assert m.shapes["yhat"] == ("N", 1)


# ---- target ----------------------------------------------------------------------------------

TARGETED = """input x[N]
input s[N]
param w = 0
y = (s - 1) * (s - 2) / 2
p = sigmoid(w * x)
loss = -mean(y * log(p) + (1 - y) * log(1 - p))
minimize loss
predict p
"""


def test_target_names_a_node_of_data_only():
    assert checked(TARGETED + "target y\n").target == "y"
    assert checked(TARGETED + "target s\n").target == "s"
    assert checked(TARGETED).target is None


@pytest.mark.parametrize("tail, message", [
    ("target loss\n", "the target `loss` depends on param `w`"),
    ("target w\n", "the target `w` depends on param `w`"),
    ("target yy\n", "unknown name `yy`"),
    ("target y\ntarget s\n", "a second `target` statement"),
])
def test_bad_targets(tail, message):
    with pytest.raises(SemanticError) as e:
        checked(TARGETED + tail)
    assert e.value.message == message


def test_target_needs_predict_and_its_shape():
    with pytest.raises(SemanticError) as e:
        checked(TARGETED.replace("predict p\n", "") + "target y\n")
    assert e.value.message == "`target` needs a `predict` statement"
    with pytest.raises(SemanticError) as e:
        checked(TARGETED + "input t[N, 1]\ntarget t\n")
    assert e.value.message == "the target `t` is [N, 1] but the prediction `p` is [N]"


def test_target_is_a_keyword():
    with pytest.raises(SemanticError) as e:
        checked("input target\nloss = target^2\nminimize loss\n")
    assert e.value.message == "`target` is a keyword and cannot be a name"
