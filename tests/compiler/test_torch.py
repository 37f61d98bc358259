"""Gradients against torch autograd (float64), when torch is installed.

Each case is `.model` text and the same maths written with torch; `Model.eval`'s objective and
its gradient for every param and input must equal torch's `backward()` to ~1e-10. Unlike finite
differences, torch also pins the values at the kinks, so the subgradients PyTorch users expect
are checked exactly: relu'(0) = 0, abs'(0) = 0, ties of max/min split the gradient in half,
sqrt'(0) = inf, log'(0) = inf.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import dsl  # noqa: E402
from tests.gradcheck import assert_close, load_model, random_point  # noqa: E402

EXAMPLES = ROOT / "examples"
TOL = 1e-10


def torch_grads(fn, point: dict[str, np.ndarray]):
    """fn(**tensors) -> scalar tensor; its value and the gradient of every leaf."""
    leaves = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True)
              for k, v in point.items()}
    out = fn(**leaves)
    out.backward()
    grads = {k: (t.grad.numpy() if t.grad is not None else np.zeros(t.shape))
             for k, t in leaves.items()}
    return out.detach().numpy(), grads


def against_torch(m: dsl.Model, point: dict[str, np.ndarray], fn, rtol: float = TOL,
                  atol: float = 1e-12):
    """eval's objective and gradients equal torch's."""
    r = m.eval(point)
    value, grads = torch_grads(fn, point)
    assert_close(r.values[r.objective], value, rtol=rtol, atol=atol, what="objective")
    for name in point:
        want = grads[name]
        got = np.asarray(r.gradients[name], dtype=np.float64)
        assert got.shape == want.shape, f"∂/∂{name}: shape {got.shape}, torch {want.shape}"
        same_inf = np.isinf(got) & np.isinf(want) & (np.sign(got) == np.sign(want))
        assert_close(np.where(same_inf, 0.0, got), np.where(same_inf, 0.0, want), rtol=rtol,
                     atol=atol, what=f"∂{r.objective}/∂{name} vs torch")
    return r


def check(tmp_path, text: str, fn, sizes=None, seed: int = 0, **kw):
    m = load_model(tmp_path, text)
    point = random_point(m, sizes or {"N": 4}, seed, **kw)
    return m, point, against_torch(m, point, fn)


UNARY = {
    "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "abs": torch.abs,
    "sin": torch.sin, "cos": torch.cos, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
    "relu": torch.relu, "softplus": F.softplus, "square": torch.square,
}


@pytest.mark.parametrize("f", list(UNARY))
def test_unary(tmp_path, f):
    text = f"""
input x[N, 3]
input G[N, 3]
param a[3] ~ normal(0, 1)
loss = sum(G * {f}(a * x + 0.1))
minimize loss
"""
    tf = UNARY[f]
    signed = () if f in ("log", "sqrt") else ("x",)
    check(tmp_path, text, lambda x, G, a: (G * tf(a * x + 0.1)).sum(), signed=signed,
          ranges={"x": (0.3, 1.5), "a": (0.5, 1.5)})


@pytest.mark.parametrize("f", list(UNARY))
def test_unary_lazy(tmp_path, f):
    text = f"""
input x[N, 3]
param c = 0.2
loss = mean({f}(x + c))
minimize loss
"""
    tf = UNARY[f]
    signed = () if f in ("log", "sqrt") else ("x",)
    check(tmp_path, text, lambda x, c: tf(x + c).mean(), signed=signed,
          ranges={"x": (0.5, 1.5), "c": (0.1, 0.3)})


OPS = {"+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.div, "^": torch.pow}


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("shapes", [("[4, 3]", "[4, 3]"), ("[4, 3]", "[3]"), ("[3]", "[4, 3]"),
                                    ("[4, 3]", ""), ("", "[4, 3]")])
def test_operator(tmp_path, op, shapes):
    sa, sb = shapes
    text = f"""
input a{sa}
param b{sb} = 1
input G[4, 3]
loss = sum(G * (a {op} b)) + mean(a {op} b)
minimize loss
"""
    t = OPS[op]
    check(tmp_path, text, lambda a, b, G: (G * t(a, b)).sum() + t(a, b).mean(),
          ranges={"a": (0.5, 1.5), "b": (0.5, 1.5)}, signed=("b",) if op == "^" else ("a", "b"))


def test_unary_minus_precedence(tmp_path):
    text = "input x[3]\nparam p = 2\nloss = sum(-x^2 * p - -x)\nminimize loss\n"
    check(tmp_path, text, lambda x, p: (-(x ** 2) * p + x).sum(), signed=("x",))


@pytest.mark.parametrize("case", ["mm", "mv", "vm", "vv"])
def test_matmul(tmp_path, case):
    da, db = {"mm": ("[N, 3]", "[3, 2]"), "mv": ("[2, 3]", "[3]"), "vm": ("[3]", "[3, 2]"),
              "vv": ("[3]", "[3]")}[case]
    text = f"""
input A{da}
param B{db} ~ normal(0, 1)
z = A @ B
loss = sum(sin(z)) + sum(z * z)
minimize loss
"""
    check(tmp_path, text, lambda A, B: torch.sin(A @ B).sum() + ((A @ B) ** 2).sum())


@pytest.mark.parametrize("f", ["sum", "mean", "logsumexp"])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_reduction(tmp_path, f, axis):
    call = f"{f}(x * w)" if axis is None else f"{f}(x * w, axis = {axis})"
    text = f"""
input x[N, 3]
param w[3] ~ normal(0, 1)
loss = sum(cos({call}))
minimize loss
"""

    def fn(x, w):
        u = x * w
        dims = tuple(range(u.dim())) if axis is None else axis
        red = {"sum": lambda: u.sum(dim=dims), "mean": lambda: u.mean(dim=dims),
               "logsumexp": lambda: torch.logsumexp(u, dim=dims)}[f]()
        return torch.cos(red).sum()
    check(tmp_path, text, fn)


@pytest.mark.parametrize("axis", [0, 1])
def test_softmax_and_log_softmax(tmp_path, axis):
    text = f"""
input x[N, 3]
param W[3, 3] ~ normal(0, 1)
input G[N, 3]
z = x @ W
loss = sum(G * softmax(z, axis = {axis})) + sum(G * log(softmax(z, axis = {axis}))) + mean(log(softmax(z, axis = {axis})))
minimize loss
"""

    def fn(x, W, G):
        z = x @ W
        return ((G * torch.softmax(z, dim=axis)).sum() + (G * torch.log_softmax(z, dim=axis)).sum()
                + torch.log_softmax(z, dim=axis).mean())
    check(tmp_path, text, fn)


def test_transpose(tmp_path):
    text = """
input x[N, 3]
param W[2, 3] ~ normal(0, 1)
loss = sum(sin(transpose(x) @ (x @ transpose(W)))) + sum(transpose(W) * transpose(W)) + sum(transpose(W))
minimize loss
"""
    check(tmp_path, text, lambda x, W: torch.sin(x.T @ (x @ W.T)).sum() + (W.T * W.T).sum() + W.T.sum())


def test_cross_entropy(tmp_path):
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
    point = random_point(m, {"N": 5}, seed=3)
    point["Y"] = np.eye(3)[[0, 2, 1, 1, 0]]
    against_torch(m, point, lambda X, Y, W, b: F.cross_entropy(X @ W + b, Y))  # soft targets


def test_defs_and_sharing(tmp_path):
    text = """
def lin(a, B, c) = a @ B + c
def act(u) = sigmoid(u) * u
input x[N, 3]
param W[3, 3] ~ normal(0, 1)
param b[3] = 0.1
h = act(lin(x, W, b))
u = h * h + softplus(h - b)
loss = mean(act(lin(h, W, b))) + sum(u) + sum(max(h, 0.1) * min(h, b))
minimize loss
"""

    def fn(x, W, b):
        def act(u):
            return torch.sigmoid(u) * u
        h = act(x @ W + b)
        u = h * h + F.softplus(h - b)
        return act(h @ W + b).mean() + u.sum() + (torch.clamp(h, min=0.1) * torch.minimum(h, b)).sum()
    check(tmp_path, text, fn, seed=5)


def test_mlp(tmp_path):
    text = """
input X[N, 5]
input y[N, 1]
param W1[5, 8] ~ glorot
param b1[8] = 0.1
param W2[8, 1] ~ he
param b2[1] = 0
h = tanh(X @ W1 + b1)
yhat = h @ W2 + b2
loss = mean((yhat - y)^2) + 0.01 * sum(abs(W1))
minimize loss
"""

    def fn(X, y, W1, b1, W2, b2):
        yhat = torch.tanh(X @ W1 + b1) @ W2 + b2
        return ((yhat - y) ** 2).mean() + 0.01 * W1.abs().sum()
    check(tmp_path, text, fn, sizes={"N": 9})


# ---- kinks and edges: the subgradients PyTorch picks ---------------------------------------

def test_relu_abs_at_zero_like_torch(tmp_path):
    """relu'(0) = 0 and abs'(0) = 0, exactly as torch."""
    text = "input x[5]\nloss = sum(relu(x) + abs(x) * 2)\nminimize loss\n"
    m = load_model(tmp_path, text)
    point = {"x": np.array([-1.0, -0.0, 0.0, 0.5, 2.0])}
    r = against_torch(m, point, lambda x: (torch.relu(x) + x.abs() * 2).sum())
    np.testing.assert_array_equal(r.gradients["x"], [-2.0, 0.0, 0.0, 3.0, 3.0])


def test_max_min_ties_split_like_torch(tmp_path):
    """max(a, b) and min(a, b) where a == b: each side gets half, as torch.maximum does."""
    text = "input a[4]\ninput b[4]\nloss = sum(max(a, b) * 3 + min(a, b))\nminimize loss\n"
    m = load_model(tmp_path, text)
    point = {"a": np.array([1.0, 2.0, 0.5, -1.0]), "b": np.array([1.0, 1.0, 0.5, 0.0])}
    r = against_torch(m, point, lambda a, b: (torch.maximum(a, b) * 3 + torch.minimum(a, b)).sum())
    np.testing.assert_array_equal(r.gradients["a"], [2.0, 3.0, 2.0, 1.0])


def test_sqrt_log_division_at_zero_like_torch(tmp_path):
    """sqrt(0) = 0 with gradient inf; log(0) = -inf with gradient inf; 1/x at 0 is inf."""
    m = load_model(tmp_path, "input x[2]\nloss = sum(sqrt(x))\nminimize loss\n", name="sqrt")
    against_torch(m, {"x": np.array([0.0, 4.0])}, lambda x: torch.sqrt(x).sum())
    m = load_model(tmp_path, "input x[2]\nloss = sum(log(x))\nminimize loss\n", name="log")
    r = m.eval({"x": np.array([0.0, 2.0])})
    _, grads = torch_grads(lambda x: torch.log(x).sum(), {"x": np.array([0.0, 2.0])})
    assert r.values["loss"] == -np.inf
    np.testing.assert_array_equal(r.gradients["x"], grads["x"])
    m = load_model(tmp_path, "input x[2]\nloss = sum(1 / x)\nminimize loss\n", name="div")
    r = m.eval({"x": np.array([0.0, 2.0])})
    _, grads = torch_grads(lambda x: (1 / x).sum(), {"x": np.array([0.0, 2.0])})
    assert r.values["loss"] == np.inf
    assert np.isinf(r.gradients["x"][0]) and np.isinf(grads["x"][0])
    assert np.sign(r.gradients["x"][0]) == np.sign(grads["x"][0])
    assert r.gradients["x"][1] == grads["x"][1]


@pytest.mark.parametrize("big", [1000.0, -1000.0])
def test_stable_forms_at_extremes_like_torch(tmp_path, big):
    """±1000: sigmoid, softplus, logsumexp, softmax, log(sigmoid), log(softmax) match torch."""
    text = """
input x[3]
loss = sum(sigmoid(x)) + sum(softplus(x)) + logsumexp(x) + sum(softmax(x) * x) + sum(log(sigmoid(x))) + sum(log(softmax(x)))
minimize loss
"""
    m = load_model(tmp_path, text)
    point = {"x": np.array([big, 0.5 * big, 1.0])}

    def fn(x):
        return (torch.sigmoid(x).sum() + F.softplus(x).sum() + torch.logsumexp(x, 0)
                + (torch.softmax(x, 0) * x).sum() + F.logsigmoid(x).sum()
                + torch.log_softmax(x, 0).sum())
    against_torch(m, point, fn, rtol=1e-12)


# ---- the examples ----------------------------------------------------------------------------

def test_example_seed_graph():
    m = dsl.load(str(EXAMPLES / "seed_graph.model"), use_cache=False)
    point = {"x": np.array(3.0), "y": np.array(0.5), **m.params}

    def fn(x, y, k1, b1, k2, b2):
        return ((k2 * torch.sigmoid(k1 * x + b1) + b2) - y) ** 2
    against_torch(m, point, fn)


def test_example_boston_mlp():
    m = dsl.load(str(EXAMPLES / "boston_mlp.model"), use_cache=False)
    point = {**m.dataset().train, **m.params}

    def fn(X, y, W1, b1, W2, b2):
        return (((torch.sigmoid(X @ W1 + b1) @ W2 + b2) - y) ** 2).mean()
    against_torch(m, point, fn)
