"""Comparisons, `where` and `clip` (LANGUAGE.md 3 and 5): values, derivatives against finite
differences and torch, float32 kept, and the derivative of `where` through the branch taken."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.gradcheck import (assert_close, check_model, load_model, random_point,  # noqa: E402
                             split_point)

N = {"N": 6}
COMPARE = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
           ">": np.greater, ">=": np.greater_equal}


@pytest.mark.parametrize("op", list(COMPARE))
def test_comparison_is_zero_or_one_of_the_broadcast_shape_with_zero_derivative(tmp_path, op):
    text = f"""
input x[N, 3]
input G[N, 3]
param a[3] = 0
c = x {op} a
loss = sum(G * c) + sum(a * a)
minimize loss
"""
    m = load_model(tmp_path, text)
    point = random_point(m, N)
    point["x"][0, :] = 0.0  # some ties, for == and <=
    r = m.eval(point)
    want = COMPARE[op](point["x"], point["a"]).astype(float)
    np.testing.assert_array_equal(r.values["c"], want)
    assert set(np.unique(r.values["c"])) <= {0.0, 1.0}
    np.testing.assert_array_equal(r.gradients["x"], 0.0)  # a step: no derivative through it
    assert_close(r.gradients["a"], 2 * point["a"])
    assert_close(r.gradients["G"], want)


def test_comparison_of_a_nan_is_false_except_not_equal(tmp_path):
    m = load_model(tmp_path, "input x[3]\nparam p = 1\nloss = sum((x < p) + 2 * (x != p) + 4 * (x == p)) * p\n"
                             "minimize loss\n")
    r = m.eval({"x": np.array([np.nan, 1.0, 0.0]), "p": np.array(1.0)})
    assert r.values["loss"] == (2) + (4) + (1 + 2)


def test_comparisons_fold_and_keep_float32(tmp_path):
    m = load_model(tmp_path, "input x[N]\nparam p = 0.5\nk = 2 > 1\nloss = mean((x > p) * p * k)\n"
                             "minimize loss\n")
    params = {"p": np.array(0.5, dtype=np.float32)}
    inputs = {"x": np.array([0.0, 1.0, 2.0], dtype=np.float32)}
    loss, grads = m.module.loss_and_grad(params, inputs)
    assert loss.dtype == np.float32 and grads["p"].dtype == np.float32
    assert loss == pytest.approx(0.5 * 2 / 3)
    assert "# line 3: k = 2 > 1\n    v_k = 1\n" in m.source  # folded to a number


@pytest.mark.parametrize("sa, sb", [("[4, 3]", "[4, 3]"), ("[4, 3]", "[3]"), ("[3]", "[4, 3]"),
                                    ("[4, 3]", ""), ("", "[4, 3]")])
def test_where_gradients(tmp_path, sa, sb):
    text = f"""
input x[4, 3]
input G[4, 3]
param a{sa} ~ normal(0, 1)
param b{sb} ~ normal(0, 1)
z = where(x > 0.2, a * x + a^2, sin(b) * x)
loss = sum(G * z) + mean(where(x, b, a))
minimize loss
"""
    check_model(tmp_path, text, N, signed=("x",), ranges={"x": (0.3, 1.5)})


def test_where_sends_nothing_back_through_the_branch_not_taken(tmp_path):
    """sqrt'(x) is NaN for x < 0; where(x > 0, sqrt(x), 0) has derivative 0 there, not NaN."""
    m = load_model(tmp_path, "input x[4]\nparam p = 1\nloss = sum(where(x * p > 0, sqrt(x * p), -x * p))\n"
                             "minimize loss\n")
    point = {"x": np.array([-2.0, -1.0, 1.0, 4.0]), "p": np.array(1.0)}
    r = m.eval(point)
    assert r.values["loss"] == pytest.approx(3 + 1 + 2)
    want = -(-2.0 - 1.0) + 0.5 * (1.0 / 1.0 * 1.0 + 4.0 / 2.0)  # d/dp of -x p, and of sqrt(x p)
    assert np.isfinite(r.gradients["p"]) and r.gradients["p"] == pytest.approx(want)
    assert np.all(np.isfinite(r.gradients["x"]))


def test_where_of_a_value_tests_it_against_zero(tmp_path):
    m = load_model(tmp_path, "input m[4]\nparam p = 2\nloss = sum(where(m, p, 1 - p))\nminimize loss\n")
    r = m.eval({"m": np.array([0.0, 1.0, -3.0, np.nan]), "p": np.array(2.0)})
    assert r.values["loss"] == -1 + 2 + 2 + 2
    assert r.gradients["p"] == -1 + 3


@pytest.mark.parametrize("lo, hi", [("lo", "hi"), ("-0.5", "0.5"), ("lo", "0.7")])
def test_clip_gradients(tmp_path, lo, hi):
    text = f"""
input x[N, 3]
input G[N, 3]
param a[3] ~ normal(0, 1)
param lo = -0.4
param hi = 0.6
loss = sum(G * clip(a * x, {lo}, {hi})) + lo * hi
minimize loss
"""
    check_model(tmp_path, text, N, signed=("x", "a"), ranges={"x": (0.2, 1.5), "a": (0.1, 1.2),
                                                              "lo": (-0.5, -0.3), "hi": (0.5, 0.7)})


def test_clip_value_and_which_argument_gets_the_gradient(tmp_path):
    m = load_model(tmp_path, "input x[4]\nparam lo = 0\nparam hi = 1\nparam s = 1\n"
                             "loss = sum(clip(s * x, lo, hi))\nminimize loss\n")
    point = {"x": np.array([-1.0, 0.5, 2.0, 1.0]), "lo": np.array(0.0), "hi": np.array(1.0),
             "s": np.array(1.0)}
    r = m.eval(point)
    assert r.values["loss"] == 0 + 0.5 + 1 + 1
    assert r.gradients["lo"] == 1 and r.gradients["hi"] == 1  # x at a bound: x gets it (torch)
    assert r.gradients["s"] == 0.5 + 1.0
    point["lo"], point["hi"] = np.array(2.0), np.array(1.0)  # lo > hi: numpy gives hi
    r = m.eval(point)
    assert r.values["loss"] == 4.0 and r.gradients["hi"] == 4 and r.gradients["lo"] == 0


torch = pytest.importorskip("torch")


def _against_torch(m, point, fn):
    from tests.compiler.test_torch import against_torch
    return against_torch(m, point, fn)


def test_where_clip_and_comparisons_against_torch(tmp_path):
    text = """
input x[N, 3]
input G[N, 3]
param a[3] ~ normal(0, 1)
param lo = -0.4
param hi = 0.6
z = where(a * x >= 0.1, exp(a * x), -(a * x)^2) * (x != 0.5) + clip(a * x, lo, hi)
loss = sum(G * z) + mean((x < a) * a)
minimize loss
"""
    m = load_model(tmp_path, text)
    point = random_point(m, N, ranges={"a": (0.2, 1.0), "lo": (-0.5, -0.3), "hi": (0.5, 0.7)},
                         signed=("x",))

    def fn(x, G, a, lo, hi):
        u = a * x
        z = torch.where(u >= 0.1, torch.exp(u), -u ** 2) * (x != 0.5) + torch.clamp(u, lo, hi)
        return (G * z).sum() + ((x < a) * a).mean()
    _against_torch(m, point, fn)


def test_the_generated_code_reads_like_numpy(tmp_path):
    m = load_model(tmp_path, "input x[N]\nparam a = 1\nloss = mean(where(x > a, x, a) * (x == 0) + clip(x, 0, a))\n"
                             "minimize loss\n")
    assert "np.where(v_x > v_a, v_x, v_a)" in m.source
    assert "(v_x == 0).astype(dt)" in m.source
    assert "np.clip(v_x, 0, v_a)" in m.source
