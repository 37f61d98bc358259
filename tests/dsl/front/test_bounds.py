"""Bounds on params (`param Km = 1 in [0, inf)`): the syntax, the checks, and the plain mapping
the generated module and `Model` expose to the solvers."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler.errors import DslError  # noqa: E402
from dsl.front.check import check  # noqa: E402
from dsl.front.build import parse  # noqa: E402
from tests.gradcheck import load_model  # noqa: E402

MODEL = """
input S[N]
input v[N]
param Vmax = 1 in [0, inf)
param Km ~ uniform(0.5, 1) in (0, 10]
param w[2] = 0.5 in [-1, 1)
param c = 0 in (-inf, inf)
param free = 1
vhat = Vmax * S / (Km + S) + sum(w) + c + free
loss = mean((vhat - v)^2)
minimize loss
"""


def test_bounds_reach_the_module_and_the_model(tmp_path):
    m = load_model(tmp_path, MODEL)
    want = {"Vmax": (0.0, math.inf), "Km": (5e-324, 10.0), "w": (-1.0, np.nextafter(1.0, 0.0)),
            "c": (-math.inf, math.inf), "free": (-math.inf, math.inf)}
    assert m.module.BOUNDS == want and m.bounds == want
    assert all(type(x) is float for lo_hi in m.bounds.values() for x in lo_hi)
    assert list(m.module.BOUNDS) == m.module.PARAMS
    assert ('BOUNDS = dict.fromkeys(PARAMS, (-np.inf, np.inf)) | {"Vmax": (0.0, np.inf), '
            '"Km": (5e-324, 10.0), "w": (-1.0, 0.9999999999999999)}\n') in m.source


@pytest.mark.parametrize("bounds, line", [
    (("", ""), "BOUNDS = dict.fromkeys(PARAMS, (-np.inf, np.inf))\n"),  # one pair, not one per param
    ((" in [0, 1]", " in (-inf, 2]"), 'BOUNDS = {"a": (0.0, 1.0), "b": (-np.inf, 2.0)}\n'),
])
def test_bounds_are_written_compactly(tmp_path, bounds, line):
    m = load_model(tmp_path, f"""
input x[N]
param a = 0.5{bounds[0]}
param b = 1{bounds[1]}
loss = mean((a * x + b - x)^2)
minimize loss
""")
    assert line in m.source
    assert list(m.module.BOUNDS) == ["a", "b"]
    assert all(type(x) is float for lo_hi in m.module.BOUNDS.values() for x in lo_hi)


@pytest.mark.parametrize("text, lo, hi, lo_open, hi_open", [
    ("param k = 1 in [0, inf)", 0.0, math.inf, False, True),
    ("param k = 1 in (-inf, 2]", -math.inf, 2.0, True, False),
    ("param k = 1 in [-1e3, 1e3]", -1000.0, 1000.0, False, False),
    ("param k[2, 3] ~ uniform(0, 1) in (-1, 1)", -1.0, 1.0, True, True),
    ("param k = 1 in [1, 1]", 1.0, 1.0, False, False),
])
def test_syntax(text, lo, hi, lo_open, hi_open):
    p = check(parse(text + "\n", "m.model")).params["k"]
    b = p.bounds
    assert (b.lo, b.hi, b.lo_open, b.hi_open) == (lo, hi, lo_open, hi_open)
    assert b.span.col == text.index(" in ") + 2


def _error(text: str) -> DslError:
    with pytest.raises(DslError) as info:
        check(parse(text + "\n", "m.model"))
    return info.value


@pytest.mark.parametrize("text, words", [
    ("param k = 2 in [0, 1]", "the start 2 of `k` is outside its bounds [0, 1]"),
    ("param k = 0 in (0, 1]", "the start 0 of `k` is outside its bounds (0, 1]"),
    ("param k = 1 in [0, 1)", "the start 1 of `k` is outside its bounds [0, 1)"),
    ("param k = 1 in [2, 1]", "the bounds [2, 1] of `k` are empty"),
    ("param k = 1 in (1, 1]", "the bounds (1, 1] of `k` are empty"),
    ("param k[3] ~ uniform(-1, 1) in [0, 1]", "drawn from uniform, whose values fall in [-1, 1)"),
    ("param k ~ normal(0, 1) in [0, inf)", "drawn from normal, whose values can fall outside"),
    ("param k[2, 2] ~ he in [0, inf)", "drawn from he"),
    ("param k[2, 3] ~ glorot in [-1, 1]", "drawn from glorot"),
    ("param k = 1 in [0, infinity)", "a bound is a number, `inf` or `-inf`, not `infinity`"),
    ("param k = 1 in [0, -inf2)", "a bound is a number, `inf` or `-inf`, not `inf2`"),
])
def test_errors(text, words):
    e = _error(text)
    assert words in e.message
    assert e.span.line == 1 and e.hint
    assert e.span.col >= text.index(" in ") + 2


def test_starts_that_fit():
    for text in ["param k ~ uniform(0, 1) in [0, 1)", "param k ~ normal(0.5, 0) in (0, 1)",
                 "param k[3, 3] ~ glorot in [-1, 1]", "param k ~ normal(0, 1) in (-inf, inf)",
                 "param k = 1 in [1, 1]"]:
        check(parse(text + "\n", "m.model"))


def test_in_is_still_a_name_elsewhere():
    checked = check(parse("input x\nin = 2 * x\n", "m.model"))
    assert "in" in checked.nodes
