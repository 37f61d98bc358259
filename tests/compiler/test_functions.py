"""The functions real formulas need (atan, asin, acos, sinh, cosh, log10, log1p, expm1, erf, erfc)
and the constants `pi` and `e`: gradients against central differences and torch, the checks
every built-in gets, and how the derivation and the generated code write them."""
from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler.errors import DslError  # noqa: E402
from dsl.front.check import check  # noqa: E402
from dsl.front.build import parse  # noqa: E402
from tests.gradcheck import assert_close, check_model, load_model, random_point  # noqa: E402

torch = pytest.importorskip("torch")

FUNCTIONS = {
    "atan": torch.atan, "asin": torch.asin, "acos": torch.acos, "sinh": torch.sinh,
    "cosh": torch.cosh, "log10": torch.log10, "log1p": torch.log1p, "expm1": torch.expm1,
    "erf": torch.erf, "erfc": torch.erfc,
}
NUMPY = {"atan": np.arctan, "asin": np.arcsin, "acos": np.arccos, "sinh": np.sinh,
         "cosh": np.cosh, "log10": np.log10, "log1p": np.log1p, "expm1": np.expm1,
         "erf": np.vectorize(math.erf), "erfc": np.vectorize(math.erfc)}
POSITIVE_ONLY = {"log10"}

# |0.3·a·x| <= 0.675: inside the domains of asin, acos and log1p
MATRIX = """
input x[N, 3]
input G[N, 3]
param a[3] ~ normal(0, 1)
z = {f}(0.3 * a * x)
loss = sum(G * z)
minimize loss
"""
LAZY = """
input x[N, 3]
param c = 0.1
loss = mean({f}(0.3 * x + c))
minimize loss
"""
RANGES = {"a": (0.5, 1.5), "x": (0.3, 1.5), "c": (0.05, 0.15)}


def _signed(f):
    return () if f in POSITIVE_ONLY else ("x",)


@pytest.mark.parametrize("f", list(FUNCTIONS))
def test_gradient_against_finite_differences(tmp_path, f):
    check_model(tmp_path, MATRIX.format(f=f), {"N": 4}, ranges=RANGES, signed=_signed(f))
    check_model(tmp_path, LAZY.format(f=f), {"N": 4}, ranges=RANGES, signed=_signed(f), seed=1,
                name="lazy")


@pytest.mark.parametrize("f", list(FUNCTIONS))
def test_value_and_gradient_against_torch(tmp_path, f):
    m = load_model(tmp_path, MATRIX.format(f=f))
    point = random_point(m, {"N": 4}, ranges=RANGES, signed=_signed(f))
    r = m.eval(point)
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in point.items()}
    out = (t["G"] * FUNCTIONS[f](0.3 * t["a"] * t["x"])).sum()
    out.backward()
    assert_close(r.values["z"], NUMPY[f](0.3 * point["a"] * point["x"]), rtol=1e-14, what=f)
    assert_close(r.values["loss"], out.detach().numpy(), rtol=1e-12, what="loss")
    for name in point:
        assert_close(r.gradients[name], t[name].grad.numpy(), rtol=1e-10, atol=1e-14,
                     what=f"∂loss/∂{name} of {f}")


def test_pi_and_e_are_built_in(tmp_path):
    text = """
input x[N]
param a = 0.5
z = pi * a * x + e^(a * x) + sin(pi / 6) + log(e)
loss = sum(z)
minimize loss
"""
    m, point, r = check_model(tmp_path, text, {"N": 3})
    x, a = point["x"], point["a"]
    assert_close(r.values["z"], np.pi * a * x + np.exp(a * x) + 0.5 + 1.0, rtol=1e-14, what="z")
    assert_close(r.gradients["a"], np.sum(np.pi * x + x * np.exp(a * x)), rtol=1e-12, what="∂/∂a")
    assert "np.pi" in m.source


def test_a_model_may_define_pi_and_e_itself(tmp_path):
    """The pendulum's `const pi = 3.14...` and a node called `e` keep working, and win."""
    text = """
input x
const pi = 3
param k = 2
e = k * x - pi
loss = e^2
minimize loss
"""
    m = load_model(tmp_path, text)
    r = m.eval({"x": 2.0})
    assert float(r.values["e"]) == 1.0 and float(r.values["loss"]) == 1.0


def test_numbers_fold_as_numpy_does(tmp_path):
    m = load_model(tmp_path, "param a = 1\nz = a * (atan(1) + erf(0.5) + log10(1000) + acos(2))\n"
                   "loss = z\nminimize loss\n")
    r = m.eval()
    assert np.isnan(r.values["z"])  # acos(2) is NaN in numpy, not a complex number
    m = load_model(tmp_path, "param a = 1\nz = a * (atan(1) + erf(0.5) + log10(1000) + expm1(0))\n"
                   "loss = z\nminimize loss\n", name="m2")
    assert_close(m.eval().values["z"], math.pi / 4 + math.erf(0.5) + 3.0, rtol=1e-15, what="z")


def _error(text: str) -> DslError:
    with pytest.raises(DslError) as info:
        check(parse(text, "m.model"))
    return info.value


@pytest.mark.parametrize("f", list(FUNCTIONS))
def test_checked_like_the_other_functions(f):
    e = _error(f"input x[3]\nz = {f}(x, x)\n")
    assert e.message == f"`{f}` takes 1 argument, got 2" and e.span.line == 2
    e = _error(f"input x[3]\nz = {f}(x, axis = 0)\n")
    assert e.message == f"`{f}` has no argument `axis`" and e.hint == "it takes no keywords"
    e = _error(f"input x[3]\nz = {f} x\n")  # a call needs parentheses
    assert e.message.startswith("two values with no operator between them")
    e = _error(f"input x[3]\n{f} = x\n")
    assert e.message == f"`{f}` is a built-in function and cannot be a name"
    assert check(parse(f"input x[N, 3]\nz = {f}(x)\n", "m.model")).shapes["z"] == ("N", 3)


def test_misspelled_function_and_calling_a_constant():
    e = _error("input x\nz = arctan(x)\n")
    assert e.message == "unknown function `arctan`"
    e = _error("input x\nz = pi(x)\n")
    assert e.message == "unknown function `pi`"


@pytest.mark.parametrize("f", list(FUNCTIONS))
def test_derive_prints_the_function(tmp_path, f):
    m = load_model(tmp_path, "input x\nparam a = 0.5\nloss = " + f + "(a * x)\nminimize loss\n")
    text = str(m.derive("a"))
    latex = m.derive("a").latex
    assert text.startswith("∂loss/∂a = ") and "Derivative" not in text
    want = {"atan": "x / (a^2·x^2 + 1)", "asin": "x / sqrt(1 - a^2·x^2)",
            "acos": "-x / sqrt(1 - a^2·x^2)", "sinh": "x·cosh(a·x)", "cosh": "x·sinh(a·x)",
            "log10": "1 / (a·log(10))", "log1p": "x / (a·x + 1)", "expm1": "x·exp(a·x)",
            "erf": "2·x·exp(-a^2·x^2) / sqrt(pi)", "erfc": "-2·x·exp(-a^2·x^2) / sqrt(pi)"}[f]
    assert text == f"∂loss/∂a = {want}"
    assert "Derivative" not in latex and "operatorname{expm}_" not in latex


def test_the_language_reference_lists_every_builtin():
    """docs/LANGUAGE.md's table of built-in functions (written by hand) names exactly the
    functions of the op registry: a function added to `compiler.ops` is documented with it."""
    from compiler.ops import BUILTINS
    doc = (ROOT / "docs" / "LANGUAGE.md").read_text()
    table = doc.split("## 5. Built-in functions", 1)[1].split("\n\n", 2)[1]
    listed = set()
    for row in table.splitlines()[2:]:
        listed.update(re.findall(r"`(\w+)\(", row.split("|")[1]))
    assert listed == set(BUILTINS)
