"""Stable rewrites across statements (compiler/stable.py): `log(p)` with `p = sigmoid(z)` or
`p = softmax(z)` in another statement is computed as stably as the inline form (issue 12 item 5)."""
import numpy as np
import pytest

from compiler.codegen import generate
from dsl.front.check import check
from compiler.lower import lower
from dsl.training.runtime import load_module
from dsl.front.build import parse

LOGISTIC = """
input x[N]
input y[N]
param w = 1
param b = 0
z = w * x + b
p = sigmoid(z)
loss = -mean(y * log(p) + (1 - y) * log(1 - p))
minimize loss
predict p
"""

INLINE = LOGISTIC.replace("log(p)", "log(sigmoid(z))").replace("log(1 - p)", "log(1 - sigmoid(z))")


def _module(text: str):
    return load_module(generate(lower(check(parse(text, "m.model")), text)), "m.model")


def test_log_of_a_sigmoid_statement_is_as_stable_as_inline():
    natural, inline = _module(LOGISTIC), _module(INLINE)
    inputs = {"x": np.array([-800.0, -1.0, 2.0, 900.0]), "y": np.array([1.0, 0.0, 1.0, 0.0])}
    params = {"w": np.array(1.0), "b": np.array(0.5)}
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        value, grads = natural.loss_and_grad(params, inputs)
    expected, expected_grads = inline.loss_and_grad(params, inputs)
    assert np.isfinite(value) and value == pytest.approx(expected)
    assert grads["w"] == pytest.approx(expected_grads["w"])
    assert grads["b"] == pytest.approx(expected_grads["b"])
    # the prediction is still the sigmoid itself
    z = np.array([-799.5, -0.5, 2.5, 900.5])
    assert natural.predict(params, inputs) == pytest.approx(0.5 + 0.5 * np.tanh(0.5 * z))
    assert natural.STABLE_REWRITES == [
        "loss (line 8): log(p) with p = sigmoid(...) on line 7: log(sigmoid(x)) as -softplus(-x)",
        "loss (line 8): log(p) with p = sigmoid(...) on line 7: log(1 - sigmoid(x)) as -softplus(x)"]
    assert inline.STABLE_REWRITES == ["loss (line 8): log(sigmoid(x)) as -softplus(-x)",
                                      "loss (line 8): log(1 - sigmoid(x)) as -softplus(x)"]


def test_log_of_a_softmax_statement_is_as_stable_as_inline():
    text = """
input X[N, 2]
input Y[N, 3]
param W[2, 3] = 1
z = X @ W
q = softmax(z, axis = 1)
loss = mean(-sum(Y * log(q), axis = 1))
minimize loss
predict q
"""
    natural = _module(text)
    inline = _module(text.replace("log(q)", "log(softmax(z, axis = 1))"))
    params = {"W": np.array([[400.0, -300.0, 0.0], [1.0, 2.0, -500.0]])}
    inputs = {"X": np.array([[3.0, 1.0], [-2.0, 4.0]]), "Y": np.array([[0, 1, 0], [0, 0, 1.0]])}
    value, grads = natural.loss_and_grad(params, inputs)
    expected, expected_grads = inline.loss_and_grad(params, inputs)
    assert np.isfinite(value) and value == pytest.approx(expected)
    np.testing.assert_allclose(grads["W"], expected_grads["W"])
    assert natural.STABLE_REWRITES == [
        "loss (line 7): log(q) with q = softmax(...) on line 6: log(softmax(x)) as x - logsumexp(x)"]


def test_other_reads_of_the_probability_keep_it():
    """`p` under no log stays `p`: only the logs are rewritten."""
    text = LOGISTIC.replace("loss = -mean(", "loss = mean(p) - mean(")
    mod = _module(text)
    inputs = {"x": np.array([-3.0, 1.0]), "y": np.array([1.0, 0.0])}
    params = {"w": np.array(0.7), "b": np.array(0.1)}
    p = 1 / (1 + np.exp(-(0.7 * inputs["x"] + 0.1)))
    y = inputs["y"]
    assert mod.loss(params, inputs) == pytest.approx(
        np.mean(p) - np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
