"""Indexing and slicing the last axis (`X[:, 0]`, `X[:, 1:3]`, `v[-1]`): values, shapes, the
scatter derivative against finite differences and torch, and views that never alias a gradient."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.gradcheck import (assert_sgd_step, check_model, load_model,  # noqa: E402
                             random_point)

N = {"N": 5}


@pytest.mark.parametrize("sub, want", [
    ("0", lambda X: X[:, 0]), ("-1", lambda X: X[:, -1]), ("1:3", lambda X: X[:, 1:3]),
    (":2", lambda X: X[:, :2]), ("-2:", lambda X: X[:, -2:]), (":", lambda X: X[:, :]),
    ("-3:-1", lambda X: X[:, -3:-1]),
])
def test_values_and_gradients_of_a_matrix_part(tmp_path, sub, want):
    text = f"""
input X[N, 4]
param W[N, 4] ~ normal(0, 1)
input G{"[N]" if ":" not in sub else f"[N, {want(np.zeros((1, 4))).shape[1]}]"}
z = sin(X * W)[:, {sub}]
loss = sum(G * z) + mean(z * z)
minimize loss
""".replace("param W[N, 4]", "param W[4]")
    m, point, r = check_model(tmp_path, text, N)
    np.testing.assert_allclose(r.values["z"], want(np.sin(point["X"] * point["W"])))


def test_vector_parts_and_a_scalar_objective_from_one_element(tmp_path):
    text = """
param p[5] ~ normal(0, 1)
input q[5]
loss = p[0] * p[-1] + sum(p[1:4] * q[1:4]) + p[2]^2
minimize loss
"""
    m, point, r = check_model(tmp_path, text)
    p, q = point["p"], point["q"]
    want = np.zeros(5)
    want[0], want[-1] = p[-1], p[0]
    want[1:4] += q[1:4]
    want[2] += 2 * p[2]
    np.testing.assert_allclose(r.gradients["p"], want, rtol=1e-12)
    m = load_model(tmp_path, "param p[3] = 2\nloss = p[1]\nminimize loss\n", name="one")
    r = m.eval({"p": np.array([1.0, 2.0, 3.0])})
    np.testing.assert_array_equal(r.gradients["p"], [0.0, 1.0, 0.0])


def test_one_input_feeds_two_parts_of_a_model(tmp_path):
    """The issue's case: 13 columns, some to a linear part, others to a nonlinear one."""
    text = """
input X[N, 13]
input y[N]
param w[10] ~ normal(0, 0.1)
param v[3, 2] ~ normal(0, 0.1)
param u[2] ~ normal(0, 0.1)
lin = X[:, 0:10] @ w
nl  = tanh(X[:, 10:] @ v) @ u
loss = mean((lin + nl - y)^2)
minimize loss
"""
    m, point, r = check_model(tmp_path, text, N)
    assert_sgd_step(m, point)


def test_a_slice_of_a_param_is_not_a_view_its_gradient_shares(tmp_path):
    """`W[:, 0]` is a numpy view of W: a gradient equal to it must be copied before sgd_step
    updates W in place, or the next param's update would read the new W."""
    text = "param W[2, 3] ~ normal(0, 1)\nparam a[2] ~ normal(0, 1)\nloss = sum(a * W[:, 0])\nminimize loss\n"
    m = load_model(tmp_path, text)
    point = random_point(m)
    for fn in (m.module.grad, lambda p, i: m.module.loss_and_grad(p, i)[1]):
        grads = fn({k: point[k] for k in ("W", "a")}, {})
        assert not any(np.shares_memory(g, point[p]) for g in grads.values() for p in ("W", "a"))
    assert_sgd_step(m, point)


torch = pytest.importorskip("torch")


def test_parts_against_torch(tmp_path):
    from tests.compiler.test_torch import check
    text = """
input X[N, 6]
param W[6, 6] ~ normal(0, 1)
param b[6] ~ normal(0, 1)
H = tanh(X @ W + b)
loss = mean(H[:, 0] * H[:, -1]) + sum(H[:, 1:4] @ b[2:5]) + sum(exp(H[:, -3:-1])) + b[0]^2
minimize loss
"""

    def fn(X, W, b):
        H = torch.tanh(X @ W + b)
        return ((H[:, 0] * H[:, -1]).mean() + (H[:, 1:4] @ b[2:5]).sum()
                + torch.exp(H[:, -3:-1]).sum() + b[0] ** 2)
    check(tmp_path, text, fn)
