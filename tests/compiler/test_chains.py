"""compiler.chains: statement-level chains as data, checked against the compiled gradients.

Every factor is a map G ↦ ...; evaluating the adjoint recurrence of a derivation with numpy (a
small evaluator below) must give the gradient the generated module computes. `--expand` is
checked symbolically against the tutorial's hand derivation.
"""
import ast
import pathlib

import numpy as np
import pytest
import sympy as sp

from compiler import chains, structural
from compiler.chains import ADJOINT, MAX_PATHS, Chains
from compiler.errors import QueryError
from compiler.functions import maximum, minimum, relu, sigmoid, softplus
from compiler.ir import symbol
from dsl.training.runtime import compile_file
from tests.gradcheck import load_model, random_point

ROOT = pathlib.Path(__file__).resolve().parents[2]


def graph_of(name: str):
    return compile_file(str(ROOT / "examples" / f"{name}.model"), use_cache=False).graph


def chains_of(tmp_path, text: str):
    m = load_model(tmp_path, text)
    return m, Chains(m.graph)


# ---- a numpy evaluator for factors -----------------------------------------------------------

def _sig(a):
    return 1 / (1 + np.exp(-a))


def _softmax(a, axis=None):
    e = np.exp(a - np.max(a, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def evaluate(e, env: dict, sizes: dict):
    """A factor's sympy expression evaluated with numpy: names from `env`, size names from
    `sizes`, the adjoint as env[ADJOINT]."""
    ev = lambda x: evaluate(x, env, sizes)  # noqa: E731
    if e == ADJOINT:
        return env[ADJOINT]
    if e.is_Number:
        return float(e)
    if isinstance(e, sp.Symbol):
        return float(sizes[e.name]) if e.is_integer and e.is_positive else env[e.name]
    lazy = (structural.SumAlong, structural.Repeat, structural.OpCallBase, structural.Total)
    args = [ev(a) for a in e.args] if not isinstance(e, lazy) else None
    if e.is_Add:
        return sum(args[1:], args[0])
    if e.is_Mul:
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if e.is_Pow:
        return args[0] ** args[1]
    simple = {sigmoid: _sig, sp.exp: np.exp, sp.log: np.log, sp.tanh: np.tanh, sp.sin: np.sin,
              sp.cos: np.cos, softplus: lambda a: np.logaddexp(0, a),
              relu: lambda a: np.maximum(a, 0),
              sp.Abs: np.abs, sp.sign: np.sign, maximum: np.maximum, minimum: np.minimum}
    if e.func in simple:
        return simple[e.func](*args)
    if e.func == sp.Heaviside:
        x, h0 = args
        return np.where(x > 0, 1.0, np.where(x < 0, 0.0, h0))
    if isinstance(e, structural.Ones):
        return np.ones(tuple(int(a) for a in args))
    if isinstance(e, structural.MatProd):  # two vectors: G·vᵀ is an outer product
        return np.outer(*args) if np.ndim(args[0]) == np.ndim(args[1]) == 1 else args[0] @ args[1]
    if isinstance(e, structural.Tr):
        return args[0].T
    if isinstance(e, structural.RowSum):
        return np.sum(args[0], axis=0)
    axis = int(e.args[1]) if len(e.args) > 1 and not isinstance(e, structural.Total) else None
    x = ev(e.args[0])
    if isinstance(e, structural.Total):
        return np.sum(x)
    if isinstance(e, structural.SumAlong):
        return np.sum(x, axis=axis, keepdims=True)
    if isinstance(e, structural.Repeat):
        return np.expand_dims(x, axis) if np.ndim(x) else x
    if isinstance(e, structural.MeanOf):
        return np.mean(x, axis=axis)
    if isinstance(e, structural.SumOf):
        return np.sum(x, axis=axis)
    if isinstance(e, structural.SoftmaxOf):
        return _softmax(x, axis)
    if isinstance(e, structural.LogSumExpOf):
        mx = np.max(x, axis=axis, keepdims=True)
        return np.squeeze(mx, axis) + np.log(np.sum(np.exp(x - mx), axis=axis)) \
            if axis is not None else float(mx.max() + np.log(np.sum(np.exp(x - mx))))
    raise AssertionError(f"no evaluator for {e.func}")


def fit(value, shape):
    """Sum a broadcast contribution back to `shape` (as the adjoint recurrence's + does)."""
    value = np.asarray(value, dtype=float)
    while value.ndim > len(shape):
        value = value.sum(axis=0)
    for ax, d in enumerate(shape):
        if d == 1 and value.shape[ax] != 1:
            value = value.sum(axis=ax, keepdims=True)
    return np.broadcast_to(value, shape)


def gradient_from_chain(d, env, sizes):
    """Run the derivation's adjoint recurrence with numpy."""
    adj = {d.objective: np.array(1.0)}
    for a in d.adjoints:
        total = 0.0
        for f in a.terms:
            scope = dict(env)
            scope[ADJOINT] = adj[f.node]
            total = total + evaluate(f.map, scope, sizes)
        adj[a.node] = fit(total, np.shape(env[a.node]))
    return adj[d.wrt]


MODELS = {
    "seed": None,
    "mlp": None,
    "rm": None,
    "diamond": """
input x
param w = 0.5
a = w * x
b = sigmoid(a)
c = a^2
loss = b + c
minimize loss
""",
    "classifier": """
input X[N, 3]
input Y[N, 4]
param W[3, 4] ~ normal(0, 1)
param c[4] = 0
param t = 1.5
z = X @ W + c
p = softmax(z / t, axis = 1)
loss = -mean(sum(Y * log(p + 0.001), axis = 1)) + 0.1 * sum(transpose(W) @ W)
minimize loss
""",
    "lse": """
input X[N, 3]
param W[3, 4] ~ normal(0, 1)
param v[4] ~ normal(0, 1)
z = X @ W
m = logsumexp(z, axis = 1)
q = relu(z) @ v + max(m, 0.3) * softplus(sum(z, axis = 1)) + mean(z, axis = 0) @ v
loss = mean(q^2) + logsumexp(v)
minimize loss
""",
    "matrices": """
input v[3]
param A[3, 3] ~ normal(0, 1)
const c = 2.5
def sq(a) = a * a
u = A @ v
w = transpose(A) @ A
q = u @ u
r = sum(w, axis = 0)
t = logsumexp(r, axis = 0)
loss = q + c * sum(sq(u)) + t + max(q, 1) * sum(A @ transpose(A))
minimize loss
""",
    "bias": """
input x[N]
input y[N]
param k = 0.3
param b = 0.1
yhat = k * x + b
loss = mean((yhat - y)^2) + sum(exp(-yhat)) / 10
minimize loss
""",
}


def _model(tmp_path, key):
    if MODELS[key] is None:
        name = {"seed": "seed_graph", "mlp": "boston_mlp", "rm": "boston_rm"}[key]
        text = (ROOT / "examples" / f"{name}.model").read_text()
        text = "\n".join(l for l in text.splitlines() if not l.startswith("data"))
        text = text.replace("<- CRIM..LSTAT standardize", "").replace("<- MEDV", "")
        text = text.replace("<- RM", "")
        return load_model(tmp_path, text, name)
    return load_model(tmp_path, MODELS[key], key)


@pytest.mark.parametrize("key", list(MODELS))
def test_chains_give_the_compiled_gradients(tmp_path, key):
    m = _model(tmp_path, key)
    sizes = {"N": 5}
    point = random_point(m, sizes=sizes, seed=3)
    result = m.eval(point)
    env = {k: np.asarray(v, dtype=float) for k, v in result.values.items()}
    c = Chains(m.graph)
    for wrt in [*m.graph.params, *m.graph.inputs]:
        d = c.derive(wrt)
        got = gradient_from_chain(d, env, sizes) if d.n_paths else np.zeros_like(env[wrt])
        np.testing.assert_allclose(got, result.gradients[wrt], rtol=1e-8, atol=1e-10,
                                   err_msg=f"{key}: d{d.objective}/d{wrt}")


# ---- the seed's chain, as data ---------------------------------------------------------------

def test_seed_chain_is_the_tutorials():
    d = chains.derive(graph_of("seed_graph"), "k1")
    assert d.n_paths == 1 and not d.summarised
    assert [(f.node, f.input) for f in d.paths[0]] == [
        ("loss", "L2"), ("L2", "s"), ("s", "L1"), ("L1", "k1")]
    L2, y, k2, s, x = (symbol(n) for n in ("L2", "y", "k2", "s", "x"))
    exprs = [f.expr for f in d.paths[0]]
    assert sp.simplify(exprs[0] - 2 * (L2 - y)) == 0
    assert exprs[1] == k2
    assert exprs[2] == s * (1 - s)  # through the node's own value, not an exp
    assert exprs[3] == x
    assert all(not f.is_map for f in d.factors)


def test_matrix_factors_are_maps():
    g = graph_of("boston_mlp")
    c = Chains(g)
    X, W2, h = (symbol(n) for n in ("X", "W2", "h"))
    assert c.factor("L1", "W1").map == structural.MatProd(structural.Tr(X), ADJOINT)
    assert c.factor("L1", "W1").is_map
    assert c.factor("yhat", "h").map == structural.MatProd(ADJOINT, structural.Tr(W2))
    assert c.factor("L1", "b1").map == structural.RowSum(ADJOINT, structural.size_symbol("N"))
    assert c.factor("h", "L1").expr == h * (1 - h)
    # mean((yhat - y)^2): the statement's inner nodes composed, G/N pushed through the square
    f = c.factor("loss", "yhat")
    N = structural.size_symbol("N")
    assert sp.simplify(f.map - 2 * ADJOINT * (symbol("yhat") - symbol("y")) / N) == 0
    assert set(c.reads["L1"]) == {"X", "W1", "b1"}  # L1.1 is inside the statement


def test_joining_paths_are_listed_and_summed(tmp_path):
    m, c = chains_of(tmp_path, MODELS["diamond"])
    d = c.derive("w")
    assert d.n_paths == 2
    assert [[(f.node, f.input) for f in p] for p in d.paths] == [
        [("loss", "b"), ("b", "a"), ("a", "w")], [("loss", "c"), ("c", "a"), ("a", "w")]]
    assert [(f.node, f.input) for f in d.factors] == [
        ("loss", "b"), ("b", "a"), ("a", "w"), ("loss", "c"), ("c", "a")]
    a_adj = [a for a in d.adjoints if a.node == "a"][0]
    assert [(f.node, f.input) for f in a_adj.terms] == [("b", "a"), ("c", "a")]


def _diamonds(n: int) -> str:
    lines = ["input x", "param w = 0.5", "h0 = w * x"]
    for i in range(1, n + 1):
        lines += [f"a{i} = sin(h{i - 1})", f"b{i} = cos(h{i - 1})", f"h{i} = a{i} * b{i}"]
    return "\n".join(lines + [f"loss = h{n}^2", "minimize loss", ""])


def test_many_paths_are_summarised_as_adjoints(tmp_path):
    m, c = chains_of(tmp_path, _diamonds(4))
    d = c.derive("w")
    assert d.n_paths == 16 > MAX_PATHS and d.summarised
    assert d.paths == []
    assert [a.node for a in d.adjoints][0] == "h4" and d.adjoints[-1].node == "w"
    h2 = [a for a in d.adjoints if a.node == "h2"][0]
    assert [(f.node, f.input) for f in h2.terms] == [("a3", "h2"), ("b3", "h2")]
    assert c.derive("w").n_paths == Chains(m.graph).derive("w").n_paths
    m3, c3 = chains_of(tmp_path, _diamonds(3))
    assert c3.derive("w").n_paths == 8 and len(c3.derive("w").paths) == 8


def test_thousands_of_paths_are_counted_not_listed(tmp_path):
    m, c = chains_of(tmp_path, _diamonds(40))
    d = c.derive("w")
    assert d.n_paths == 2**40 and d.paths == [] and len(d.adjoints) == 122


def test_zero_and_self_and_inputs(tmp_path):
    m, c = chains_of(tmp_path, "input x\nparam w = 1\nparam u = 2\nv = u * 3\nloss = w * x\n"
                               "minimize loss\npredict v\n")
    assert c.derive("u").n_paths == 0
    assert c.derive("loss").n_paths == 1 and c.derive("loss").paths == [()]
    assert c.derive("x").paths[0][0].expr == symbol("w")


def test_unknown_names_are_query_errors_with_a_suggestion():
    """The compiler's own error; the CLI makes it exit 2 (tests/test_cli_derive.py)."""
    c = Chains(graph_of("seed_graph"))
    with pytest.raises(QueryError) as e:
        c.derive("k3")
    assert "did you mean `k" in e.value.hint and "k1, b1, k2, b2" in e.value.hint
    with pytest.raises(QueryError):
        c.derive("L1.1")


def test_no_objective_is_a_usage_error(tmp_path):
    m, c = chains_of(tmp_path, "input x\nparam w = 1\nz = w * x\npredict z\n")
    with pytest.raises(QueryError, match="minimize"):
        c.derive("w")


# ---- --expand ----------------------------------------------------------------------------------

def _mean_over_rows(expr, names, rows=3):
    """mean(f) as the average of f over `rows` symbolic rows: a linear, explicit mean."""
    def one(e):
        return sp.Add(*[e.xreplace({symbol(n): sp.Symbol(f"{n}_{r}", real=True) for n in names})
                        for r in range(rows)]) / rows
    return expr.replace(lambda e: isinstance(e, structural.MeanOf), lambda e: one(e.args[0]))


def test_expand_reproduces_the_hand_derivation():
    d_k = chains.derive(graph_of("boston_rm"), "k", expand=True)
    d_b = chains.derive(graph_of("boston_rm"), "b", expand=True)
    k, b, x, y = (symbol(n) for n in "kbxy")
    hand_k = 2 * structural.MeanOf((k * x + b - y) * x)  # the tutorial: 2*np.mean((k*x + b - y)*x)
    hand_b = 2 * structural.MeanOf(k * x + b - y)  # and 2*np.mean(k*x + b - y)
    for got, hand in ((d_k.expanded, hand_k), (d_b.expanded, hand_b)):
        diff = _mean_over_rows(got, "xy") - _mean_over_rows(hand, "xy")
        assert sp.simplify(diff) == 0
    assert d_k.expanded == structural.MeanOf(2 * x * (b + k * x - y))  # mean(2·x·(b + k·x - y))


def test_expand_through_a_node_per_row(tmp_path):
    m, c = chains_of(tmp_path, "input x[N]\ninput y[N]\nparam k = 0\nparam b = 0\n"
                               "yhat = k * x + b\nloss = mean((yhat - y)^2)\nminimize loss\n")
    k, b, x, y = (symbol(n) for n in "kbxy")
    assert c.derive("k", expand=True).expanded == structural.MeanOf(2 * x * (b + k * x - y))


def test_expand_seed_matches_the_gradient(tmp_path):
    m = _model(tmp_path, "seed")
    point = random_point(m, seed=1)
    grads = m.eval(point).gradients
    c = Chains(m.graph)
    for p in m.graph.params:
        e = c.derive(p, expand=True).expanded
        assert not (e.free_symbols & {symbol(n) for n in ("L1", "s", "L2", "loss")})
        value = e.replace(sigmoid, lambda a: 1 / (1 + sp.exp(-a))).xreplace(
            {symbol(n): sp.Float(float(v)) for n, v in point.items()})
        assert float(value) == pytest.approx(float(grads[p]), rel=1e-9)


def test_expand_refuses_matrices():
    d = Chains(graph_of("boston_mlp")).derive("W1", expand=True)
    assert d.expanded is None and "[N, 13]" in d.expand_error


def test_compiler_does_not_import_dsl():
    tree = ast.parse((ROOT / "compiler" / "chains.py").read_text())
    mods = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    mods += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in mods if m and m.split(".")[0] == "dsl"]
