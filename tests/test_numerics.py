"""Numerical stability at ±1000, and PyTorch's behaviour at the edges of log, sqrt and /.

The generated module's functions are called directly with every numpy floating-point error
raised and every warning an error (`Model.eval` silences them on purpose, for the CLI): the
stable forms must give finite values and gradients without an overflow along the way.
`sigmoid`, `softplus`, `logsumexp` and `softmax` are printed in their stable forms, and
`log(sigmoid(x))`, `log(1 - sigmoid(x))`, `log(softmax(x))` are rewritten before code
generation (docs/ARCHITECTURE.md, section 4: Stable forms).

At the edges the numbers are PyTorch's (float64): log(0) = -inf with gradient +inf;
sqrt(0) = 0 with gradient +inf; 1/0 = inf with gradient -inf; relu'(0) = abs'(0) = 0.
"""
from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.gradcheck import load_model, split_point  # noqa: E402

BIG = 1000.0
SIG = lambda t: 0.5 * (1 + np.tanh(0.5 * t))  # noqa: E731  (the reference: stable as well)


@contextlib.contextmanager
def strict():
    """Overflow, invalid operations and division by zero raise, and every warning is an
    error; underflow to 0 (exp(-2000)) is what the stable forms rely on, so it is allowed."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            yield


def run_strict(m, point):
    """forward, gradients, loss_and_grad, grad and sgd_step, all under `strict()`."""
    params, inputs = split_point(m, point)
    with strict():
        fwd = m.module.forward(params, inputs)
        values, grads = m.module.gradients(params, inputs)
        loss, pgrads = m.module.loss_and_grad(params, inputs)
        m.module.grad(params, inputs)
        if params:
            m.module.sgd_step({k: v.copy() for k, v in params.items()}, inputs, 0.01)
    for k, v in fwd.items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(values[k]))
    assert np.asarray(loss) == np.asarray(values[m.checked.objective])
    return values, grads


def assert_finite(values, grads):
    for k, v in {**values, **{f"∂{k}": g for k, g in grads.items()}}.items():
        assert np.all(np.isfinite(v)), f"{k} is not finite: {v}"


X = np.array([BIG, -BIG, 0.5, -0.5, 0.0])


# ---- stable forms at ±1000 -------------------------------------------------------------------

def test_sigmoid_at_plus_minus_1000(tmp_path):
    m = load_model(tmp_path, "input x[5]\nparam w = 1\nz = sigmoid(w * x)\nloss = sum(z)\nminimize loss\n")
    values, grads = run_strict(m, {"x": X, "w": np.array(1.0)})
    assert_finite(values, grads)
    np.testing.assert_allclose(values["z"], SIG(X), rtol=1e-15, atol=0)
    assert values["z"][0] == 1.0 and values["z"][1] == 0.0
    np.testing.assert_allclose(grads["x"], SIG(X) * (1 - SIG(X)), rtol=1e-12, atol=0)
    assert grads["x"][0] == 0.0 and grads["x"][1] == 0.0


def test_softplus_at_plus_minus_1000(tmp_path):
    m = load_model(tmp_path, "input x[5]\nz = softplus(x)\nloss = sum(z)\nminimize loss\n")
    values, grads = run_strict(m, {"x": X})
    assert_finite(values, grads)
    np.testing.assert_allclose(values["z"], np.logaddexp(0, X), rtol=1e-15)
    assert values["z"][0] == BIG and values["z"][1] == 0.0
    np.testing.assert_allclose(grads["x"], SIG(X), rtol=1e-12)


@pytest.mark.parametrize("axis", ["", ", axis = 0"])
def test_logsumexp_at_plus_minus_1000(tmp_path, axis):
    m = load_model(tmp_path, f"input x[4]\nz = logsumexp(x{axis})\nloss = z\nminimize loss\n")
    for v in ([BIG, BIG, -BIG, 0.0], [-BIG, -BIG, -BIG, -BIG], [BIG, 999.0, 1.0, -BIG]):
        x = np.array(v)
        values, grads = run_strict(m, {"x": x})
        assert_finite(values, grads)
        top = x.max()
        want = top + np.log(np.sum(np.exp(x - top)))
        np.testing.assert_allclose(values["z"], want, rtol=1e-15)
        np.testing.assert_allclose(grads["x"], np.exp(x - want), rtol=1e-12, atol=1e-300)
        assert abs(grads["x"].sum() - 1) < 1e-12


def test_logsumexp_of_rows_at_plus_minus_1000(tmp_path):
    text = "input x[2, 3]\nz = logsumexp(x, axis = 1)\nloss = sum(z * z)\nminimize loss\n"
    m = load_model(tmp_path, text)
    x = np.array([[BIG, -BIG, 0.0], [-BIG, -BIG, -999.0]])
    values, grads = run_strict(m, {"x": x})
    assert_finite(values, grads)
    np.testing.assert_allclose(values["z"], [BIG, -999.0 + np.log1p(2 * np.exp(-1.0))], rtol=1e-15)


@pytest.mark.parametrize("axis", [0, 1])
def test_softmax_at_plus_minus_1000(tmp_path, axis):
    text = f"input x[2, 3]\ninput G[2, 3]\nz = softmax(x, axis = {axis})\nloss = sum(G * z)\nminimize loss\n"
    m = load_model(tmp_path, text)
    x = np.array([[BIG, -BIG, 0.0], [-BIG, BIG, BIG]])
    G = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    values, grads = run_strict(m, {"x": x, "G": G})
    assert_finite(values, grads)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    s = e / e.sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(values["z"], s, rtol=1e-15, atol=0)
    np.testing.assert_allclose(grads["x"], s * (G - (G * s).sum(axis=axis, keepdims=True)),
                               rtol=1e-12, atol=1e-300)


def test_log_sigmoid_at_plus_minus_1000(tmp_path):
    """log(sigmoid(x)) = -softplus(-x): -1000 at x = -1000 (not log(0) = -inf)."""
    text = "input x[5]\nz = log(sigmoid(x))\nu = log(1 - sigmoid(x))\nloss = sum(z + 2 * u)\nminimize loss\n"
    m = load_model(tmp_path, text)
    values, grads = run_strict(m, {"x": X})
    assert_finite(values, grads)
    np.testing.assert_allclose(values["z"], -np.logaddexp(0, -X), rtol=1e-15)
    np.testing.assert_allclose(values["u"], -np.logaddexp(0, X), rtol=1e-15)
    assert values["z"][1] == -BIG and values["u"][0] == -BIG
    np.testing.assert_allclose(grads["x"], (1 - SIG(X)) - 2 * SIG(X), rtol=1e-12)


@pytest.mark.parametrize("axis", ["", ", axis = 0"])
def test_log_softmax_of_vector_at_plus_minus_1000(tmp_path, axis):
    """log(softmax(x)) = x - logsumexp(x): -2000, not log(0) = -inf."""
    text = f"input x[3]\ninput G[3]\nz = log(softmax(x{axis}))\nloss = sum(G * z)\nminimize loss\n"
    m = load_model(tmp_path, text)
    x, G = np.array([BIG, -BIG, 0.0]), np.array([1.0, -2.0, 0.5])
    values, grads = run_strict(m, {"x": x, "G": G})
    assert_finite(values, grads)
    np.testing.assert_allclose(values["z"], [0.0, -2 * BIG, -BIG], rtol=1e-15, atol=0)
    s = np.exp(x - x.max())
    s /= s.sum()
    np.testing.assert_allclose(grads["x"], G - s * G.sum(), rtol=1e-12)


def test_softmax_cross_entropy_with_huge_logits(tmp_path):
    """The classifier's loss, with logits of ±1000 and the true class the unlikely one."""
    text = """
input X[N, 2]
input Y[N, 3]
param W[2, 3] = 1
z = X @ W * 1000
loss = mean(-sum(Y * log(softmax(z, axis = 1)), axis = 1))
minimize loss
"""
    m = load_model(tmp_path, text)
    W = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]])
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    Y = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    values, grads = run_strict(m, {"X": X, "Y": Y, "W": W})
    assert_finite(values, grads)
    np.testing.assert_allclose(values["loss"], (2000.0 + 2000.0) / 2, rtol=1e-12)


def test_exp_overflow_is_inf_like_torch(tmp_path):
    """exp itself has no stable form: exp(1000) = inf, as in torch (eval silences the warning)."""
    m = load_model(tmp_path, "input x\nloss = exp(x)\nminimize loss\n")
    r = m.eval({"x": BIG})
    assert r.values["loss"] == np.inf and r.gradients["x"] == np.inf


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stable_forms_in_float32_too(tmp_path, dtype):
    """±1000 overflow exp in float32 much earlier (e^89): the stable forms still hold."""
    text = f"""
input x[5]
loss = sum(sigmoid(x)) + sum(softplus(x)) + logsumexp(x) + sum(softmax(x) * x) + sum(log(sigmoid(x))) + sum(log(softmax(x)))
minimize loss
train {{
    dtype {dtype}
}}
"""
    m = load_model(tmp_path, text)
    x = X.astype(dtype)
    with strict():
        values, grads = m.module.gradients({}, {"x": x})
    assert_finite(values, grads)
    r = m.eval({"x": X})
    assert np.isfinite(r.values["loss"])


# ---- log, sqrt and division near zero: as PyTorch does --------------------------------------

def test_log_of_zero_is_minus_inf_with_gradient_plus_inf(tmp_path):
    m = load_model(tmp_path, "input x[3]\nz = log(x)\nloss = sum(z)\nminimize loss\n")
    r = m.eval({"x": [0.0, 1e-300, 2.0]})
    assert r.values["z"][0] == -np.inf
    assert r.gradients["x"][0] == np.inf
    np.testing.assert_allclose(r.values["z"][1:], np.log([1e-300, 2.0]), rtol=1e-15)
    np.testing.assert_allclose(r.gradients["x"][1:], [1e300, 0.5], rtol=1e-15)


def test_log_of_negative_is_nan_like_torch(tmp_path):
    m = load_model(tmp_path, "input x[2]\nloss = sum(log(x))\nminimize loss\n")
    r = m.eval({"x": [-1.0, 1.0]})
    assert np.isnan(r.values["loss"])


def test_sqrt_of_zero_is_zero_with_gradient_plus_inf(tmp_path):
    m = load_model(tmp_path, "input x[3]\nz = sqrt(x)\nloss = sum(z)\nminimize loss\n")
    r = m.eval({"x": [0.0, 1e-300, 4.0]})
    assert r.values["z"][0] == 0.0
    assert r.gradients["x"][0] == np.inf
    np.testing.assert_allclose(r.gradients["x"][1:], [0.5e150, 0.25], rtol=1e-12)


def test_sqrt_of_zero_times_zero_gradient_is_nan_like_torch(tmp_path):
    """inf · 0 = nan: torch gives nan for ∂/∂x sum(0 * sqrt(x)) at x = 0 too."""
    m = load_model(tmp_path, "input x[2]\ninput c[2]\nloss = sum(c * sqrt(x))\nminimize loss\n")
    r = m.eval({"x": [0.0, 1.0], "c": [0.0, 2.0]})
    assert np.isnan(r.gradients["x"][0]) and r.gradients["x"][1] == 1.0


def test_division_by_zero_is_inf_with_gradient_minus_inf(tmp_path):
    m = load_model(tmp_path, "input x[3]\nz = 1 / x\nloss = sum(z)\nminimize loss\n")
    r = m.eval({"x": [0.0, 1e-200, 2.0]})
    assert r.values["z"][0] == np.inf
    assert r.gradients["x"][0] == -np.inf
    np.testing.assert_allclose(r.gradients["x"][2], -0.25, rtol=1e-15)
    assert np.isinf(r.gradients["x"][1]) and r.gradients["x"][1] < 0  # -1e400 overflows


def test_zero_over_zero_is_nan_like_torch(tmp_path):
    m = load_model(tmp_path, "input x[2]\ninput y[2]\nloss = sum(x / y)\nminimize loss\n")
    r = m.eval({"x": [0.0, 1.0], "y": [0.0, 2.0]})
    assert np.isnan(r.values["loss"])
    assert r.gradients["x"][1] == 0.5


def test_division_near_zero_is_finite(tmp_path):
    m = load_model(tmp_path, "input x[2]\nloss = sum(1 / x + log(x) + sqrt(x))\nminimize loss\n")
    values, grads = run_strict(m, {"x": np.array([1e-150, 3.0])})
    assert_finite(values, grads)


def test_relu_and_abs_gradient_at_zero_is_zero_like_torch(tmp_path):
    m = load_model(tmp_path, "input x[3]\nloss = sum(relu(x) + abs(x))\nminimize loss\n")
    values, grads = run_strict(m, {"x": np.array([0.0, -2.0, 2.0])})
    np.testing.assert_array_equal(grads["x"], [0.0, -1.0, 2.0])


def test_max_min_ties_split_the_gradient_like_torch(tmp_path):
    m = load_model(tmp_path, "input a[2]\ninput b[2]\nloss = sum(max(a, b) + 3 * min(a, b))\nminimize loss\n")
    values, grads = run_strict(m, {"a": np.array([1.0, 2.0]), "b": np.array([1.0, 0.0])})
    np.testing.assert_array_equal(grads["a"], [2.0, 1.0])
    np.testing.assert_array_equal(grads["b"], [2.0, 3.0])
