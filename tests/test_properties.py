"""Property tests: random well-shaped models compile and their gradients are right.

hypothesis draws expression trees over every built-in and operator with static shapes:
broadcasting (a bias against rows, a scalar against anything), reductions over each axis,
softmax, transpose, `@` with matrices and vectors, `def` calls, nodes that several statements
read (shared subexpressions), all in a shuffled statement order. Each model is written as
`.model` text, loaded, and checked at a random point: every gradient `eval` reports (params and
inputs) against central finite differences (relative 1e-5), and `eval`'s numbers against the
generated module's `forward`, `gradients`, `loss_and_grad` and `grad`.

Domains are kept by construction (log and sqrt see `square(e) + 0.5`, a denominator is
`square(e) + 0.5`, a power's base is positive or its exponent a small integer); kinks (abs,
relu, max, min) are met with probability ~0 at random points.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.gradcheck import (assert_module_agrees, load_model, random_point,  # noqa: E402
                             verify_grad)

N = 3  # the size bound to `N`
# Every shape an expression may have, and the leaves of each shape (params cannot use N).
LEAVES = {
    (): ["s", "c"],
    (3,): ["v", "b"],
    (2,): ["u", "d"],
    ("N",): ["r"],
    ("N", 3): ["X"],
    ("N", 2): ["Z"],
    (3, 2): ["W"],
    (2, 3): ["V"],
    (3, "N"): ["Xt"],
}
DECLS = """input s
param c = 0.5
input v[3]
param b[3] = 0.1
input u[2]
param d[2] = 0.2
input r[N]
input X[N, 3]
input Z[N, 2]
param W[3, 2] = 0.3
param V[2, 3] = 0.4
input Xt[3, N]
def lin(a, B, z) = a @ B + z
def act(t) = tanh(t) * t + sigmoid(t)
def mix(p, q) = p * sigmoid(q) - q
"""
SHAPES = list(LEAVES)
UNARY = ["exp", "sin", "cos", "tanh", "sigmoid", "relu", "softplus", "square", "abs"]


def fmt(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]" if shape else ""


def suffixes(shape):
    """Shapes that broadcast against `shape` by the language's rule: a scalar, or a
    trailing part."""
    return [shape[i:] for i in range(len(shape) + 1) if shape[i:] in LEAVES]


class Gen:
    """Draws one expression of a given shape; nodes already defined can be reused."""

    def __init__(self, draw, nodes: dict):
        self.draw = draw
        self.nodes = nodes  # name -> shape of statements defined so far

    def choose(self, options):
        return self.draw(st.sampled_from(options))

    def leaf(self, shape) -> str:
        names = LEAVES[shape] + [n for n, s in self.nodes.items() if s == shape]
        if shape == ():
            names = names + ["0.5", "2", "1.5e-1"]
        return self.choose(names)

    def expr(self, shape, depth: int) -> str:
        if depth <= 0:
            return self.leaf(shape)
        kinds = ["leaf", "unary", "unary", "binary", "binary", "binary", "maxmin", "neg", "safe",
                 "safe", "def"]
        if self.matmul_options(shape):
            kinds += ["matmul", "matmul"]
        if self.reduce_options(shape):
            kinds += ["reduce", "reduce"]
        if shape:
            kinds += ["softmax"]
        if shape[::-1] in LEAVES and len(shape) == 2:
            kinds += ["transpose"]
        kind = self.choose(kinds)
        sub = depth - 1
        if kind == "leaf":
            return self.leaf(shape)
        if kind == "unary":
            return f"{self.choose(UNARY)}({self.expr(shape, sub)})"
        if kind == "neg":
            return f"-{self.expr(shape, sub)}"
        if kind == "safe":  # the functions with a domain, kept inside it
            a = self.expr(shape, sub)
            form = self.choose(["log(square({a}) + 0.5)", "sqrt(square({a}) + 0.5)",
                                "{b} / (square({a}) + 0.5)", "(square({a}) + 0.5) ^ {b}",
                                "{a} ^ 2", "{a} ^ 3", "log(sigmoid({a}))",
                                "log(1 - sigmoid({a}))"])
            b = self.expr(self.choose(suffixes(shape)), sub) if "{b}" in form else ""
            return "(" + form.format(a=a, b=b) + ")"
        if kind in ("binary", "maxmin"):
            other = self.choose(suffixes(shape))
            left, right = self.expr(shape, sub), self.expr(other, sub)
            if self.draw(st.booleans()):
                left, right = right, left
            if kind == "maxmin":
                return f"{self.choose(['max', 'min'])}({left}, {right})"
            return f"({left} {self.choose(['+', '-', '*'])} {right})"
        if kind == "def":
            which = self.choose(["act", "mix"] + (["lin"] if self.matmul_options(shape) else []))
            if which == "act":
                return f"act({self.expr(shape, sub)})"
            if which == "mix":
                return f"mix({self.expr(shape, sub)}, {self.expr(self.choose(suffixes(shape)), sub)})"
            a, bshape = self.choose(self.matmul_options(shape))
            return f"lin({self.expr(a, sub)}, {self.expr(bshape, sub)}, {self.leaf(self.choose(suffixes(shape)))})"
        if kind == "matmul":
            a, bshape = self.choose(self.matmul_options(shape))
            return f"({self.expr(a, sub)} @ {self.expr(bshape, sub)})"
        if kind == "reduce":
            f, src, axis = self.choose(self.reduce_options(shape))
            arg = self.expr(src, sub)
            return f"{f}({arg})" if axis is None else f"{f}({arg}, axis = {axis})"
        if kind == "softmax":
            axis = self.draw(st.integers(-len(shape), len(shape) - 1))
            if len(shape) == 1 and self.draw(st.booleans()):
                return f"softmax({self.expr(shape, sub)})"
            form = self.choose(["softmax({a}, axis = {k})", "log(softmax({a}, axis = {k}))"])
            return form.format(a=self.expr(shape, sub), k=axis)
        assert kind == "transpose"
        return f"transpose({self.expr(shape[::-1], sub)})"

    @staticmethod
    def matmul_options(shape):
        """(left, right) shapes whose product has `shape`."""
        out = []
        for k in (2, 3, "N"):
            if shape == () and (k,) in LEAVES:
                out.append(((k,), (k,)))
            if len(shape) == 1 and (shape[0], k) in LEAVES and (k,) in LEAVES:
                out.append(((shape[0], k), (k,)))
            if len(shape) == 1 and (k, shape[0]) in LEAVES and (k,) in LEAVES:
                out.append(((k,), (k, shape[0])))
            if len(shape) == 2 and (shape[0], k) in LEAVES and (k, shape[1]) in LEAVES:
                out.append(((shape[0], k), (k, shape[1])))
        return out

    @staticmethod
    def reduce_options(shape):
        """(function, source shape, axis) whose result has `shape`."""
        out = []
        for f in ("sum", "mean", "logsumexp"):
            for src in SHAPES:
                if shape == () and src:
                    out.append((f, src, None))
                for axis in range(len(src)):
                    if src[:axis] + src[axis + 1:] == shape:
                        out.append((f, src, axis))
        return out


@st.composite
def models(draw):
    """(model text, name of every statement and its shape)."""
    nodes: dict = {}
    lines = []
    n = draw(st.integers(1, 4))
    for i in range(n):
        shape = draw(st.sampled_from(SHAPES))
        depth = draw(st.integers(1, 4))
        e = Gen(draw, nodes).expr(shape, depth)
        nodes[f"n{i}"] = shape
        lines.append(f"n{i} = {e}")
    # every node reaches the objective, through a reduction (and sometimes a weight)
    terms = []
    for name, shape in nodes.items():
        f = draw(st.sampled_from(["sum", "mean"]))
        terms.append(f"{f}({name})" if shape else name)
    lines.append("loss = " + " + ".join(terms))
    lines.append("minimize loss")
    lines += DECLS.strip().splitlines()
    order = draw(st.permutations(lines))
    return "\n".join(order) + "\n", nodes


SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])


def check_random_model(text: str, seed: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        m = load_model(folder, text)
        point = random_point(m, {"N": N}, seed=seed, low=-1.2, high=1.2)
        # central differences say nothing where the maths explodes (`sin(exp(exp(exp(r))))`
        # has derivatives near 1e11): such points are not evidence either way
        at = m.eval(point)
        assume(np.isfinite(at.values[at.objective]) and
               all(np.all(np.abs(g) < 1e6) for g in at.gradients.values()))
        r = verify_grad(m, point, rtol=1e-5)
        assert_module_agrees(m, point, r)


@settings(max_examples=50, derandomize=True, **SETTINGS)
@given(models(), st.integers(0, 2**16))
def test_random_models_match_finite_differences(model, seed):
    text, _ = model
    check_random_model(text, seed)


@pytest.mark.fuzz
@settings(max_examples=1000, **SETTINGS)
@given(models(), st.integers(0, 2**16))
def test_random_models_match_finite_differences_long(model, seed):
    """The same, longer and not derandomized (`pytest -m fuzz`)."""
    text, _ = model
    check_random_model(text, seed)


@settings(max_examples=25, derandomize=True, **SETTINGS)
@given(models(), st.randoms(use_true_random=False))
def test_statement_order_does_not_matter(model, rnd):
    """The same statements in another order compile to the same numbers."""
    text, _ = model
    lines = text.splitlines()
    rnd.shuffle(lines)
    with tempfile.TemporaryDirectory() as folder:
        m1 = load_model(folder, text, name="a")
        m2 = load_model(folder, "\n".join(lines) + "\n", name="b")
        point = random_point(m1, {"N": N}, seed=7, low=-1.2, high=1.2)
        r1, r2 = m1.eval(point), m2.eval(point)
        for k in r1.values:
            np.testing.assert_array_equal(r1.values[k], r2.values[k], err_msg=k)
        for k in r1.gradients:
            np.testing.assert_allclose(r1.gradients[k], r2.gradients[k], rtol=1e-12, atol=1e-300,
                                       err_msg=k)
