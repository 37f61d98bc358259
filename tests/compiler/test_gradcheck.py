"""Every built-in function and operator, and every example, against central finite differences.

Each case is real `.model` text written to tmp_path, loaded with `dsl.load` and evaluated with
`Model.eval`; every gradient it reports (params and inputs) must match central differences of
the compiled objective in float64 to a relative 1e-6 (`tests/gradcheck.py`, like PyTensor's
`verify_grad`). Points are drawn away from kinks (abs, relu, max, min) and inside domains
(log and sqrt on positive values, ^ on a positive base, / away from zero).

Most models end in `loss = sum(G * z)` with a random input `G`: the objective's gradient then
is an arbitrary vector-Jacobian product, and ∂loss/∂G = z checks the forward value too. Others
end in `sum(z)` or `mean(z)`, where the adjoint reaching z is a scalar broadcast lazily.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import dsl

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.gradcheck import (assert_close, assert_module_agrees, assert_sgd_step,  # noqa: E402
                             check_model, load_model, random_point, verify_grad)

N = {"N": 4}
EXAMPLES = ROOT / "examples"

UNARY = ["exp", "log", "sqrt", "abs", "sin", "cos", "tanh", "sigmoid", "relu", "softplus",
         "square"]
POSITIVE_ONLY = {"log", "sqrt"}


# ---- elementwise functions -----------------------------------------------------------------

@pytest.mark.parametrize("f", UNARY)
def test_unary_builtin_matrix(tmp_path, f):
    """f(a * x) for an input [N, 3] scaled by a param [3]: a bias-shaped param broadcast."""
    text = f"""
input x[N, 3]
input G[N, 3]
param a[3] ~ normal(0, 1)
u = a * x
z = {f}(u)
loss = sum(G * z)
minimize loss
"""
    signed = () if f in POSITIVE_ONLY else ("x",)
    check_model(tmp_path, text, N, ranges={"a": (0.5, 1.5), "x": (0.3, 1.5)}, signed=signed)


@pytest.mark.parametrize("f", UNARY)
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_unary_builtin_lazy_adjoint(tmp_path, f, reduce):
    """f of a sum of a param and an input, reduced directly: the adjoint reaching f is a
    scalar, and the scalar param's gradient must count every element."""
    text = f"""
input x[N, 3]
param c = 0.5
z = {f}(x + c)
loss = {reduce}(z)
minimize loss
"""
    signed = () if f in POSITIVE_ONLY else ("x",)
    ranges = {"c": (0.1, 0.2), "x": (0.5, 1.5)}
    check_model(tmp_path, text, N, ranges=ranges, signed=signed, seed=1)


@pytest.mark.parametrize("f", UNARY)
def test_unary_builtin_scalar(tmp_path, f):
    """Scalars only, like the seed graph; `k * x + b` inside the call (a sum as argument)."""
    text = f"""
input x
param k = 0.5
param b = 0.25
loss = {f}(k * x + b)
minimize loss
"""
    check_model(tmp_path, text, ranges={"x": (0.5, 1.5), "k": (0.5, 1.0), "b": (0.2, 0.4)})


@pytest.mark.parametrize("f", ["max", "min"])
@pytest.mark.parametrize("shapes", [("[4, 3]", "[4, 3]"), ("[4, 3]", "[3]"), ("[3]", "[4, 3]"),
                                    ("[4, 3]", ""), ("", "[4, 3]"), ("", "")])
def test_max_min(tmp_path, f, shapes):
    """max(a, b) and min(a, b) away from ties, with broadcasting either way."""
    sa, sb = shapes
    text = f"""
input x{sa}
param p{sb} = 0
input G[4, 3]
z = {f}(x, p)
loss = sum(G * z)
minimize loss
"""
    m = load_model(tmp_path, text)
    point = random_point(m, N, seed=3)
    x, p = np.broadcast_arrays(point["x"], point["p"])
    # make every pair differ by at least 0.2 in a random direction, then keep the shapes
    rng = np.random.default_rng(4)
    gap = rng.uniform(0.2, 1.0, x.shape) * rng.choice([-1.0, 1.0], x.shape)
    if point["p"].shape == x.shape:
        point["p"] = x + gap
    elif point["x"].shape == x.shape:
        point["x"] = np.broadcast_to(point["p"], x.shape) + gap
    else:  # both scalars
        point["p"] = point["x"] + gap
    verify_grad(m, point)
    assert_module_agrees(m, point)


def test_max_min_constants(tmp_path):
    """A constant on either side: `max(x, 0.3)`, `min(0.1, y)` (relu-like clamps)."""
    text = """
input x[5]
input y[5]
loss = sum(max(x, 0.3) * min(0.1, y) + max(x, y) * min(x, 2 * y))
minimize loss
"""
    m = load_model(tmp_path, text)
    point = {"x": np.array([-1.0, 0.0, 0.9, 1.4, 2.0]), "y": np.array([0.5, -0.7, -0.4, 1.1, 0.2])}
    verify_grad(m, point)


# ---- operators -----------------------------------------------------------------------------

SHAPE_PAIRS = [  # (input a, param b); a param's dims are numbers
    ("[4, 3]", "[4, 3]"),  # equal shapes
    ("[4, 3]", "[3]"),  # a bias on the right
    ("[3]", "[4, 3]"),  # a bias on the left
    ("[4, 3]", ""),  # a scalar on the right
    ("", "[4, 3]"),  # a scalar on the left
    ("", ""),  # scalars
]


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "^"])
@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=lambda s: f"{s[0] or 'scalar'}~{s[1] or 'scalar'}")
@pytest.mark.parametrize("loss", ["sum(G * z)", "sum(z)", "mean(z)"])
def test_binary_operator(tmp_path, op, shapes, loss):
    """a OP b for an input and a param of every allowed pair of shapes; the gradient of the
    smaller one is summed over the broadcast axes (with a lazily broadcast adjoint too)."""
    sa, sb = shapes
    text = f"""
input a{sa}
param b{sb} = 1
input G[4, 3]
z = a {op} b
loss = {loss}
minimize loss
"""
    # ^: a positive base; /: a denominator away from zero
    ranges = {"a": (0.5, 1.5), "b": (0.5, 1.5)}
    signed = {"^": ("b",), "/": ("a", "b")}.get(op, ("a", "b"))
    check_model(tmp_path, text, N, ranges=ranges, signed=signed, seed=5)


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "^"])
def test_binary_operator_param_on_the_left(tmp_path, op):
    """The same with the param first and a number on one side: `p OP x` and `2 OP p`."""
    text = f"""
input x[N, 3]
param p[3] = 1
input G[N, 3]
z = p {op} x + 2 {op} p
loss = sum(G * z)
minimize loss
"""
    check_model(tmp_path, text, N, ranges={"x": (0.5, 1.5), "p": (0.5, 1.5)})


def test_unary_minus_and_precedence(tmp_path):
    """Unary minus, and `-x^2` is -(x^2): its gradient is -2x, not 2x."""
    text = """
input x[N, 3]
param a = 0.7
input G[N, 3]
z = -x^2 + -a * x - -x
loss = sum(G * z) - a
minimize loss
"""
    m, point, r = check_model(tmp_path, text, N, signed=("x",))
    want = point["G"] * (-2 * point["x"] - point["a"] + 1)
    assert_close(r.gradients["x"], want, what="∂loss/∂x of -x^2 - a·x + x")


def test_power_forms(tmp_path):
    """Integer, negative, fractional and symbolic exponents, `**` as `^`, right-associative."""
    text = """
input x[5]
param p = 1.3
loss = sum(x^-1 + x^0.5 + x^-0.5 + x^-2 + x^1.5 + x**3 + x^x + x^p + p^x + 2^2^x)
minimize loss
"""
    check_model(tmp_path, text, ranges={"x": (0.3, 1.2), "p": (0.5, 1.5)})


def test_division_forms(tmp_path):
    """1 / x, x / v, v / x and 1 / (x + v) with broadcasting."""
    text = """
input x[N, 3]
input v[3]
loss = sum(v / x) + sum(x / v) + sum(1 / (x + v)) + mean(2 / v)
minimize loss
"""
    check_model(tmp_path, text, N, ranges={"x": (0.5, 1.5), "v": (0.5, 1.5)})


# ---- matrix product ------------------------------------------------------------------------

MATMUL = {
    "matrix@matrix": ("input A[N, 3]", "param B[3, 2] ~ normal(0, 1)", "[N, 2]"),
    "matrix@vector": ("param A[2, 3] ~ normal(0, 1)", "input B[3]", "[2]"),
    "vector@matrix": ("input A[3]", "param B[3, 2] ~ normal(0, 1)", "[2]"),
    "vector@vector": ("input A[3]", "param B[3] ~ normal(0, 1)", ""),
    "data@vector": ("input A[N, 3]", "param B[3] ~ normal(0, 1)", "[N]"),
    "vector@data": ("param A[3] ~ normal(0, 1)", "input B[3, N]", "[N]"),
}


@pytest.mark.parametrize("case", list(MATMUL))
@pytest.mark.parametrize("loss", ["sum(G * z)", "mean(z)"])
def test_matmul(tmp_path, case, loss):
    """`@` for matrix·matrix, matrix·vector, vector·matrix and vector·vector."""
    da, db, out = MATMUL[case]
    text = f"""
{da}
{db}
input G{out}
z = A @ B
loss = {loss}
minimize loss
"""
    check_model(tmp_path, text, N, seed=7)


def test_matmul_same_operand_twice(tmp_path):
    """`v @ v` and `W @ W`: both sides are the same leaf, both contributions count."""
    text = """
input v[3]
param W[3, 3] ~ normal(0, 1)
loss = v @ v + sum((W @ W) * W) + v @ W @ v
minimize loss
"""
    m, point, r = check_model(tmp_path, text)
    v, W = point["v"], point["W"]
    assert_close(r.gradients["v"], 2 * v + (W + W.T) @ v, what="∂/∂v of v·v + vᵀWv")


def test_matmul_chain_with_transpose(tmp_path):
    """transpose(W) @ v, x @ W @ v and transpose of a product."""
    text = """
input x[N, 3]
input v[3]
param W[3, 3] ~ normal(0, 1)
input G[3, N]
z = transpose(x @ W)
loss = sum(G * z) + sum(transpose(W) @ v) + sum(x @ W @ v)
minimize loss
"""
    check_model(tmp_path, text, N)


# ---- reductions, softmax, transpose --------------------------------------------------------

@pytest.mark.parametrize("f", ["sum", "mean", "logsumexp"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, -2])
def test_reduction_of_matrix(tmp_path, f, axis):
    """Reductions of an [N, 3] node over everything and over each axis (negative too)."""
    call = f"{f}(u)" if axis is None else f"{f}(u, axis = {axis})"
    out = {None: "", 0: "[3]", 1: "[N]", -1: "[N]", -2: "[3]"}[axis]
    text = f"""
input x[N, 3]
param a[3] ~ normal(0, 1)
input G{out}
u = a * x + x^2
z = {call}
loss = sum(G * sin(z))
minimize loss
"""
    check_model(tmp_path, text, N, seed=11)


@pytest.mark.parametrize("f", ["sum", "mean", "logsumexp"])
@pytest.mark.parametrize("axis", [None, 0])
def test_reduction_of_vector(tmp_path, f, axis):
    call = f"{f}(v)" if axis is None else f"{f}(v, axis = {axis})"
    text = f"""
input v[N]
param c = 2
loss = {call} * c + c^2
minimize loss
"""
    check_model(tmp_path, text, N)


@pytest.mark.parametrize("f", ["sum", "mean", "logsumexp", "softmax"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_reduction_of_3d(tmp_path, f, axis):
    """A 3-d input, reduced (or normalized) along each of its axes."""
    out = "[2, 3, 4]" if f == "softmax" else {0: "[3, 4]", 1: "[2, 4]", 2: "[2, 3]"}[axis]
    text = f"""
input T[2, 3, 4]
param b[4] = 0
param c[3, 4] = 0
input G{out}
U = T + b + c * T
z = {f}(U, axis = {axis})
loss = sum(G * z)
minimize loss
"""
    check_model(tmp_path, text, seed=13)


@pytest.mark.parametrize("f", ["sum", "mean", "logsumexp"])
def test_reduction_of_3d_everything(tmp_path, f):
    text = f"""
input T[2, 3, 4]
param c[3, 4] = 0.5
loss = {f}(T * c) + {f}(sin(T))
minimize loss
"""
    check_model(tmp_path, text, seed=13)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("loss", ["sum(G * z)", "sum(z)", "mean(z * z)"])
def test_softmax_of_matrix(tmp_path, axis, loss):
    """softmax along rows and columns; `sum(z)` is constant in x (its gradient is zero)."""
    text = f"""
input x[N, 3]
param W[3, 3] ~ normal(0, 1)
input G[N, 3]
z = softmax(x @ W, axis = {axis})
loss = {loss}
minimize loss
"""
    check_model(tmp_path, text, N, seed=17)


def test_softmax_of_vector(tmp_path):
    """softmax of a vector needs no axis."""
    text = """
input v[5]
param w[5] ~ normal(0, 1)
input G[5]
loss = sum(G * softmax(w * v)) + sum(softmax(v, axis = 0) * v)
minimize loss
"""
    check_model(tmp_path, text, seed=19)


@pytest.mark.parametrize("shape", ["[4, 3]", "[3]", ""])
def test_transpose(tmp_path, shape):
    """transpose of a matrix, a vector and a scalar; lazily broadcast adjoint too."""
    out = {"[4, 3]": "[3, 4]", "[3]": "[3]", "": ""}[shape]
    text = f"""
input x{shape}
param p{shape} = 1
input G{out}
z = transpose(x * p)
loss = sum(G * z) + sum(transpose(p)) * mean(transpose(x))
minimize loss
"""
    check_model(tmp_path, text, N, seed=23)


def test_chained_reductions(tmp_path):
    """A reduction of a reduction: the adjoint is broadcast twice."""
    text = """
input x[N, 3]
param a[3] = 1
loss = mean(sum(a * x^2, axis = 1)) + sum(mean(x, axis = 0) * a) * logsumexp(sum(x, axis = 0)) + mean(mean(x * a, axis = 1))
minimize loss
"""
    check_model(tmp_path, text, N)


def test_scalar_builtins(tmp_path):
    """Reductions, softmax and transpose of a scalar are the identity (softmax: 1)."""
    text = """
input s
param p = 0.5
loss = sum(s * p) + mean(s) + logsumexp(p) + softmax(s) * p + transpose(s) * p + log(softmax(s)) * s
minimize loss
"""
    m, point, r = check_model(tmp_path, text)
    assert_close(r.gradients["p"], point["s"] + 1 + 1 + point["s"], what="∂/∂p")


# ---- broadcasting --------------------------------------------------------------------------

def test_bias_broadcast_against_rows(tmp_path):
    """A bias [10] against [N, 10]: its gradient is the column sum of the adjoint."""
    text = """
input X[N, 4]
param W[4, 10] ~ normal(0, 1)
param b[10] = 0
input G[N, 10]
z = X @ W + b
loss = sum(G * tanh(z))
minimize loss
"""
    m, point, r = check_model(tmp_path, text, {"N": 6})
    z = point["X"] @ point["W"] + point["b"]
    assert_close(r.gradients["b"], (point["G"] * (1 - np.tanh(z) ** 2)).sum(axis=0),
                 what="∂loss/∂b as a column sum")


def test_scalar_broadcast_against_matrix(tmp_path):
    """A scalar param against a matrix: its gradient sums over every element, whether the
    adjoint is a full matrix or a lazily broadcast scalar (`sum(c - W)`)."""
    text = """
param c = 0.7
param W[2, 3] ~ normal(0, 1)
input X[2, 3]
loss = sum(c * W + c) + sum(W / c) + sum(c - W) + mean(c + X) + sum(c * X * W)
minimize loss
"""
    m, point, r = check_model(tmp_path, text)
    c, W, X = point["c"], point["W"], point["X"]
    want = W.sum() + 6 - W.sum() / c**2 + 6 + 1 + (X * W).sum()
    assert_close(r.gradients["c"], want, what="∂loss/∂c")


def test_column_broadcast(tmp_path):
    """A [1] bias against an [N, 1] column (the Boston model's b2)."""
    text = """
input h[N, 1]
param b2[1] = 0.3
input y[N, 1]
loss = mean((h + b2 - y)^2)
minimize loss
"""
    m, point, r = check_model(tmp_path, text, N)
    assert_close(r.gradients["b2"], [2 * np.mean(point["h"] + point["b2"] - point["y"])], what="∂/∂b2")


# ---- sharing, defs ---------------------------------------------------------------------------

def test_value_used_by_several_nodes(tmp_path):
    """h feeds three nodes and the objective directly: the contributions add up."""
    text = """
input x[N, 3]
param W[3, 3] ~ normal(0, 1)
h = tanh(x @ W)
a = h * h
b = sigmoid(h) + h
c = sum(h, axis = 0)
loss = mean(a + b * h) + sum(h) + sum(c * c)
minimize loss
"""
    m, point, r = check_model(tmp_path, text, N)


def test_gradients_add_up(tmp_path):
    """The gradient of `f + g` is the sum of the gradients of two models for f and g."""
    parts = {"f": "sum(sin(x * w))", "g": "mean(exp(w) * x)"}
    head = "input x[N, 3]\nparam w[3] ~ normal(0, 1)\n"
    grads = {}
    for k, e in [*parts.items(), ("fg", f"{parts['f']} + {parts['g']}")]:
        m = load_model(tmp_path, head + f"loss = {e}\nminimize loss\n", name=k)
        point = random_point(m, N, seed=29)
        grads[k] = verify_grad(m, point).gradients
    for name in ("x", "w"):
        assert_close(grads["fg"][name], grads["f"][name] + grads["g"][name], rtol=1e-12,
                     atol=1e-15, what=name)


def test_shared_subexpressions(tmp_path):
    """The same sub-expression written twice in one statement, sums inside activations."""
    text = """
input x[N, 3]
param W[3, 3] ~ normal(0, 1)
param b[3] = 0.1
h = sigmoid(x @ W + b) * (x @ W + b)
u = (b * x + 1) * exp(b * x + 1) + tanh(x + b) * softplus(x - b) + relu(x + b + 2)
loss = mean(h) + mean(u) + sum(sigmoid(-x * b + 2) * sigmoid(x - b))
minimize loss
"""
    check_model(tmp_path, text, N)


def test_sigmoid_of_a_sum_value(tmp_path):
    """The forward value of sigmoid(a + b) itself (a printer once dropped the parentheses)."""
    text = """
input a[3]
input b[3]
z = sigmoid(a + b) + sigmoid(a - 2 * b) + sigmoid(a * b)
loss = sum(z)
minimize loss
"""
    m = load_model(tmp_path, text)
    a, b = np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.25, -3.0])
    r = m.eval({"a": a, "b": b})
    sig = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
    assert_close(r.values["z"], sig(a + b) + sig(a - 2 * b) + sig(a * b), rtol=1e-12, what="z")
    verify_grad(m, {"a": a, "b": b})


def test_defs(tmp_path):
    """`def`s expanded inline, nested, with parameters that reuse global names."""
    text = """
def lin(a, B, c) = a @ B + c
def act(u) = sigmoid(u) * u
def sq(x) = x * x
input x[N, 3]
param W[3, 3] ~ normal(0, 1)
param b[3] = 0.1
h = act(lin(x, W, b))
loss = mean(act(lin(h, W, b))) + sum(sq(b)) + mean(sq(lin(x, W, 1)))
minimize loss
"""
    check_model(tmp_path, text, N)


# ---- stable rewrites -----------------------------------------------------------------------

def test_softmax_cross_entropy(tmp_path):
    """mean(-sum(Y * log(softmax(z, axis = 1)), axis = 1)) is rewritten to z - logsumexp(z):
    no softmax node remains, and ∂loss/∂z is (softmax(z) - Y) / N."""
    text = """
input X[N, 4]
input Y[N, 3]
param W[4, 3] ~ normal(0, 1)
param b[3] = 0
z = X @ W + b
loss = mean(-sum(Y * log(softmax(z, axis = 1)), axis = 1))
minimize loss
"""
    m = load_model(tmp_path, text)
    ops = {node.op for node in m.graph.nodes.values()}
    assert "logsumexp" in ops and "softmax" not in ops
    rng = np.random.default_rng(31)
    n = 6
    point = random_point(m, {"N": n}, seed=31)
    point["Y"] = np.eye(3)[rng.integers(0, 3, n)]
    r = verify_grad(m, point)
    z = point["X"] @ point["W"] + point["b"]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    assert_close(r.values["loss"], -np.mean(np.sum(point["Y"] * np.log(p), axis=1)), rtol=1e-12,
                 what="cross-entropy")
    assert_close(r.gradients["b"], ((p - point["Y"]) / n).sum(axis=0), what="∂loss/∂b")
    assert_close(r.gradients["W"], point["X"].T @ ((p - point["Y"]) / n), what="∂loss/∂W")


@pytest.mark.parametrize("axis", ["axis = 0", "axis = 1", "axis = -1"])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_log_softmax_reduced_directly(tmp_path, axis, reduce):
    """log(softmax(x)) = x - logsumexp(x) kept broadcastable, summed with a scalar adjoint."""
    text = f"""
input x[N, 3]
param w[3] ~ normal(0, 1)
loss = {reduce}(log(softmax(x * w, {axis})))
minimize loss
"""
    check_model(tmp_path, text, N, seed=37)


def test_log_softmax_of_vector(tmp_path):
    """log(softmax(v)) of a vector (the implicit axis is the last one)."""
    text = """
input v[4]
param w[4] ~ normal(0, 1)
loss = sum(log(softmax(v * w)) * v) + sum(log(softmax(v)))
minimize loss
"""
    m, point, r = check_model(tmp_path, text, seed=41)
    v = point["v"]
    assert_close(r.values["loss"] - sum(np.log(np.exp(v) / np.exp(v).sum())),
                 np.sum((v * point["w"] - np.log(np.exp(v * point["w"]).sum())) * v), rtol=1e-12,
                 what="loss")


def test_log_sigmoid_rewrite(tmp_path):
    """log(sigmoid(x)) and log(1 - sigmoid(x)) are rewritten to -softplus(∓x)."""
    text = """
input x[N]
input y[N]
param w = 0.5
param b = 0
z = w * x + b
loss = -mean(y * log(sigmoid(z)) + (1 - y) * log(1 - sigmoid(z)))
minimize loss
"""
    m, point, r = check_model(tmp_path, text, N, ranges={"y": (0.0, 1.0)})
    assert "softplus" in str(m.graph.nodes["loss"].expr) or "logaddexp" in m.source
    z = point["w"] * point["x"] + point["b"]
    p = 1 / (1 + np.exp(-z))
    assert_close(r.gradients["w"], np.mean((p - point["y"]) * point["x"]), what="∂loss/∂w")


# ---- objectives and composite models ---------------------------------------------------------

def test_objective_is_a_param_itself(tmp_path):
    """`minimize p` on a param: ∂p/∂p = 1; another param gets 0."""
    text = "param p = 0.5\nparam q[2] = 1\nminimize p\n"
    m, point, r = check_model(tmp_path, text)
    assert r.gradients["p"] == 1.0
    np.testing.assert_array_equal(r.gradients["q"], [0.0, 0.0])


def test_objective_is_an_input_or_an_alias(tmp_path):
    check_model(tmp_path, "input x\nminimize x\n", name="input")
    check_model(tmp_path, "param a = 1\nparam b = 2\nz = a\nloss = z * b\nminimize loss\n",
                name="alias")


def test_params_that_do_not_reach_the_objective(tmp_path):
    """A param the objective does not read has a zero gradient of its own shape."""
    text = "input x\nparam p = 1\nparam q[2, 2] = 2\nloss = p * x\nminimize loss\n"
    m, point, r = check_model(tmp_path, text)
    np.testing.assert_array_equal(r.gradients["q"], np.zeros((2, 2)))


def test_constants(tmp_path):
    """`const` names and a node that is a number."""
    text = """
const k = 2
input x[3]
param w[3] = 1
z = 3
loss = sum(k * w * x) + k + sum(z * x * w^k)
minimize loss
"""
    check_model(tmp_path, text)


def test_shuffled_statement_order(tmp_path):
    """Statements in any order give the same numbers."""
    lines = ["input x[N, 3]", "param W[3, 2] ~ normal(0, 1)", "param b[2] = 0.1",
             "h = tanh(x @ W + b)", "loss = mean(h * h) + sum(b)", "minimize loss"]
    m1, point, r1 = check_model(tmp_path, "\n".join(lines) + "\n", N, name="ordered")
    m2 = load_model(tmp_path, "\n".join(reversed(lines)) + "\n", name="reversed")
    r2 = verify_grad(m2, point)
    for k in r1.gradients:
        assert_close(r2.gradients[k], r1.gradients[k], rtol=1e-12, atol=1e-15, what=k)


def test_mlp_two_hidden_layers(tmp_path):
    text = """
input X[N, 5]
input y[N, 1]
param W1[5, 8] ~ glorot
param b1[8] = 0.1
param W2[8, 4] ~ he
param b2[4] = 0
param W3[4, 1] ~ normal(0, 1)
param b3[1] = 0
h1 = tanh(X @ W1 + b1)
h2 = softplus(h1 @ W2 + b2)
yhat = h2 @ W3 + b3
loss = mean((yhat - y)^2) + 0.01 * (sum(W1^2) + sum(W2^2))
minimize loss
predict yhat
"""
    m, point, r = check_model(tmp_path, text, {"N": 7})
    assert_sgd_step(m, point)


def test_classifier(tmp_path):
    """A softmax classifier with a relu hidden layer (points off relu's kink)."""
    text = """
input X[N, 4]
input Y[N, 3]
param W1[4, 6] ~ normal(0, 1)
param b1[6] = 0.05
param W2[6, 3] ~ normal(0, 1)
param b2[3] = 0
h = relu(X @ W1 + b1)
z = h @ W2 + b2
p = softmax(z, axis = 1)
loss = mean(-sum(Y * log(p), axis = 1)) + mean(logsumexp(z, axis = 1)) * 0.1
minimize loss
predict p
"""
    m = load_model(tmp_path, text)
    point = random_point(m, {"N": 5}, seed=43)
    pre = point["X"] @ point["W1"] + point["b1"]
    assert np.abs(pre).min() > 1e-3, "test point too close to relu's kink"
    point["Y"] = np.eye(3)[[0, 2, 1, 1, 0]]
    verify_grad(m, point)
    assert_module_agrees(m, point)
    assert_sgd_step(m, point)


def test_logistic_regression_and_statistics(tmp_path):
    """Centering by a mean, a variance, a sqrt and division, abs as an L1 penalty."""
    text = """
input X[N, 3]
input y[N]
param w[3] ~ normal(0, 1)
param b = 0
mu = mean(X, axis = 0)
sd = sqrt(mean((X - mu)^2, axis = 0) + 0.001)
Z = (X - mu) / sd
p = sigmoid(Z @ w + b)
loss = -mean(y * log(p) + (1 - y) * log(1 - p)) + 0.1 * sum(abs(w))
minimize loss
"""
    m = load_model(tmp_path, text)
    point = random_point(m, {"N": 6}, seed=47, ranges={"w": (0.2, 1.0)}, signed=("w",))
    point["y"] = np.array([0, 1, 1, 0, 1, 0], dtype=float)
    verify_grad(m, point)
    assert_module_agrees(m, point)


# ---- sgd_step --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "param a = 0.5\nparam b = 0.25\nloss = a * b\nminimize loss\n",
    "param A[2, 3] ~ normal(0, 1)\nparam B[3, 2] ~ normal(0, 1)\nloss = sum(A * transpose(B))\nminimize loss\n",
    "param a[3] = 0.5\nparam B[2, 3] = 0.25\nloss = sum(a * B)\nminimize loss\n",
    "param a = 0.5\nparam b = 0.25\nz = a\nloss = z * b + b * b / 2\nminimize loss\n",
], ids=["a*b", "A*B.T", "bias*B", "alias"])
def test_sgd_step_when_a_gradient_is_another_param(tmp_path, text):
    """∂(a·b)/∂a is b itself: the in-place update of a must not change the step of b, and
    `grad` must not hand out views of the params (optimizers update them in place)."""
    m, point, r = check_model(tmp_path, text)
    assert_sgd_step(m, point, lr=0.1)


# ---- the examples ----------------------------------------------------------------------------

def test_example_seed_graph():
    """examples/seed_graph.model as `dsl eval --set x=3 --set y=0.5`, params at their start,
    and at a second point with every param set."""
    m = load_model_file(EXAMPLES / "seed_graph.model")
    point = {"x": np.array(3.0), "y": np.array(0.5), **m.params}
    r = verify_grad(m, point)
    k1, b1, k2, b2 = (float(m.params[k]) for k in ("k1", "b1", "k2", "b2"))
    s = 1 / (1 + np.exp(-(k1 * 3.0 + b1)))
    L2 = k2 * s + b2
    assert_close(r.values["loss"], (L2 - 0.5) ** 2, rtol=1e-12, what="loss")
    assert_close(r.gradients["k1"], 2 * (L2 - 0.5) * k2 * s * (1 - s) * 3.0, what="∂loss/∂k1")
    verify_grad(m, {"x": np.array(-1.2), "y": np.array(2.0), "k1": np.array(0.8),
                    "b1": np.array(-0.3), "k2": np.array(1.7), "b2": np.array(0.4)})
    assert_sgd_step(m, point)


def test_example_boston_mlp():
    """examples/boston_mlp.model on all of its training rows (404 × 13), its seeded params:
    every param entry, y, and a sample of 150 entries of ∂loss/∂X."""
    m = load_model_file(EXAMPLES / "boston_mlp.model")
    point = {**m.dataset().train, **m.params}
    assert point["X"].shape == (404, 13)
    r = verify_grad(m, point, sample=150, seed=53)
    assert r.gradients["X"].shape == (404, 13)
    assert_module_agrees(m, point, r)
    assert_sgd_step(m, point, lr=0.01)


def load_model_file(path: Path):
    """An example loaded without writing a cache beside it."""
    return dsl.load(str(path), use_cache=False)


def example_point(m, rows: int = 256, seed: int = 0) -> dict:
    """The example's seeded params and (up to `rows` of) its training rows; inputs it does not
    bind to data get random values (scalars as in `--set x=3`)."""
    point = dict(m.params)
    if m.checked.data is not None:
        train = m.dataset().train
        point.update({k: v[:rows] for k, v in train.items()})
    sizes = {d: len(v) for k, v in point.items() if k in m.checked.inputs
             for d in m.checked.shapes[k][:1] if isinstance(d, str)}
    rng = np.random.default_rng(seed)
    for name in m.checked.inputs:
        if name not in point:
            shape = tuple(sizes.get(d, 4) if isinstance(d, str) else d for d in m.checked.shapes[name])
            point[name] = rng.uniform(0.5, 3.0, shape)
    return point


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.model")), ids=lambda p: p.stem)
def test_every_example(path):
    """Every example in examples/ on a batch of its own data at its seeded start: gradients of
    every param and input (sampled entries of large arrays) against finite differences."""
    m = load_model_file(path)
    assert m.checked.objective is not None, f"{path.name} has no objective to check"
    point = example_point(m, rows=64 if "mnist" in path.stem else 256)
    r = verify_grad(m, point, sample=40, seed=59)
    assert np.isfinite(r.values[r.objective])
    assert_module_agrees(m, point, r)


def test_dsl_cache_reuses_fixed_code(tmp_path):
    """A model loaded from the cache gives the same gradients as a fresh compile."""
    text = "input x[3]\nparam w[3] = 0.5\nloss = sum(sigmoid(w * x + 1))\nminimize loss\n"
    (tmp_path / "m.model").write_text(text)
    first = dsl.load(str(tmp_path / "m.model"))
    second = dsl.load(str(tmp_path / "m.model"))
    assert second.compiled.cached
    point = {"x": np.array([0.1, -0.2, 0.3]), "w": np.array([0.5, 1.0, -1.0])}
    a, b = first.eval(point), second.eval(point)
    for k in a.gradients:
        np.testing.assert_array_equal(a.gradients[k], b.gradients[k])
    assert any(f.startswith("m.") for f in os.listdir(dsl.training.runtime.cache_dir()))


def test_relu_of_a_difference_differentiates_by_the_subtracted_side(tmp_path):
    """relu(a - b) by b is -step(a - b): printed as a boolean comparison it raised
    `numpy boolean negative` (found by the long property run)."""
    text = """
param V[2, 3] = 0.4
n0 = exp(V + relu(log(softmax(V, axis = 0))))
loss = sum(n0) + sum(relu(1 - V))
minimize loss
"""
    (tmp_path / "m.model").write_text(text)
    m = dsl.load(str(tmp_path / "m.model"))
    V = np.array([[0.3, -1.1, 0.8], [1.2, 0.1, -0.4]])
    got = m.eval({"V": V}).gradients["V"]

    def f(v):
        return float(m.module.loss({"V": v}, {}))

    fd = np.zeros_like(V)
    for i in np.ndindex(V.shape):
        e = np.zeros_like(V)
        e[i] = 1e-6
        fd[i] = (f(V + e) - f(V - e)) / 2e-6
    np.testing.assert_allclose(got, fd, rtol=1e-6)
