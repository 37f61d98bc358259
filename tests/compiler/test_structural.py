"""Each structural map of compiler/structural.py against sympy on small explicit matrices.

For a structural op y = f(A) (or f(A, B)), the vector-Jacobian product with an incoming adjoint
G is ∂/∂A_ij Σ G ⊙ f(A). sympy computes that entry by entry on a Matrix of symbols; the map's
numpy template (each rule's `maps`, the matmul table) is evaluated on the same numbers and must
agree. Maps that accept a lazily broadcast G (`needs_full_g=False`) are checked with a scalar G
too. The elementwise side (sympy's derivative written through the node's own value) is checked
against the textbook formula of every built-in.
"""
from __future__ import annotations

import itertools
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from compiler.derive import elementwise_factor
from compiler.errors import Span
from compiler.functions import maximum, minimum, relu, sigmoid, softplus
from compiler.ops import sympy_of
from compiler.ir import Node, symbol
from compiler.structural import RULES, pad_widths

MATMUL = RULES["matmul"].maps

SPAN = Span("<test>", 1, 1, 1, 2)


def sym_array(prefix: str, shape) -> np.ndarray:
    """An object array of real symbols of `shape` (0-d for a scalar)."""
    out = np.empty(shape, dtype=object)
    for idx in itertools.product(*(range(n) for n in shape)):
        out[idx] = sp.Symbol(prefix + "_" + "_".join(map(str, idx)), real=True)
    return out


# ---- the symbolic side: each op on object arrays of sympy expressions ----------------------

def s_sum(a, axis):
    return np.array(sum(a.flat), dtype=object) if axis is None else np.sum(a, axis=axis)


def s_mean(a, axis):
    n = a.size if axis is None else a.shape[axis]
    return s_sum(a, axis) / sp.Integer(n)


def s_logsumexp(a, axis, keepdims=False):
    out = np.vectorize(sp.log, otypes=[object])(s_sum(np.vectorize(sp.exp, otypes=[object])(a), axis))
    if keepdims and axis is not None:
        out = np.expand_dims(out, axis)
    elif keepdims:
        out = out.reshape((1,) * a.ndim)
    return out


def s_softmax(a, axis):
    e = np.vectorize(sp.exp, otypes=[object])(a)
    return e / np.expand_dims(np.sum(e, axis=axis), axis)


def s_matmul(a, b):
    if a.ndim == 1 and b.ndim == 1:
        return np.array(sum(x * y for x, y in zip(a, b)), dtype=object)
    return np.array(sp.Matrix(np.atleast_2d(a)) * sp.Matrix(b.reshape(b.shape[0], -1)),
                    dtype=object).reshape(a.shape[:-1] + b.shape[1:])


def vjp(out: np.ndarray, G: np.ndarray, wrt: np.ndarray) -> np.ndarray:
    """∂/∂wrt_ij of Σ G ⊙ out, by sympy, entry by entry."""
    total = sum((g * y for g, y in zip(np.broadcast_to(G, out.shape).flat, out.flat)), sp.S.Zero)
    return np.vectorize(lambda s: total.diff(s), otypes=[object])(wrt)


def numbers(exprs: np.ndarray, subs: dict) -> np.ndarray:
    """The sympy expressions evaluated at `subs` (symbol -> number), as a float array."""
    subs = {k: sp.Float(float(v), 30) for k, v in subs.items()}
    return np.vectorize(lambda e: float(sp.sympify(e).xreplace(subs).evalf(30)),
                        otypes=[float])(exprs)


def run_template(template: str, **names) -> np.ndarray:
    """Evaluate one of our own numpy templates (structural.py's maps, never model text) on arrays
    bound to {G}, {a}, {b}, {y}; `k` and `n` are formatted in as numbers."""
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    assert fields <= {"G", "a", "b", "y", "k", "n", "pad"}, f"unknown placeholder in {template!r}"
    env = {"np": np, **{f"_{k}": v for k, v in names.items() if k in "Gaby"}}
    code = template.format(G="_G", a="_a", b="_b", y="_y", k=names.get("k"), n=names.get("n"),
                           pad=names.get("pad"))
    return np.asarray(eval(compile(code, "<structural map>", "eval"), env))  # our own template


# ---- the maps --------------------------------------------------------------------------------

def reduction_case(op: str, shape, axis, keepdims=False):
    """(map, symbolic out, numeric inputs) for sum/mean/logsumexp of a `shape` value."""
    A = sym_array("a", shape)
    f = {"sum": s_sum, "mean": s_mean}.get(op)
    out = f(A, axis) if f else s_logsumexp(A, axis, keepdims)
    return A, np.array(out, dtype=object)


@pytest.mark.parametrize("op", ["sum", "mean", "logsumexp"])
@pytest.mark.parametrize("shape,axis", [((2, 3), None), ((2, 3), 0), ((2, 3), 1), ((4,), None),
                                        ((4,), 0), ((2, 3, 2), 0), ((2, 3, 2), 1), ((2, 3, 2), 2),
                                        ((2, 3, 2), None)])
def test_reduction_maps(op, shape, axis):
    rule = RULES[op].maps[axis is not None]
    A, out = reduction_case(op, shape, axis)
    G = sym_array("g", out.shape)
    want = vjp(out, G, A)
    rng = np.random.default_rng(1)
    a = rng.normal(size=shape)
    g = rng.normal(size=out.shape)
    subs = {**dict(zip(A.flat, a.flat)), **dict(zip(G.flat, g.flat))}
    y = numbers(out, subs)
    n = int(np.prod(shape)) if axis is None else shape[axis]
    got = run_template(rule.numpy, G=g, a=a, y=y, k=axis, n=n)
    np.testing.assert_allclose(np.broadcast_to(got, shape), numbers(want, subs), rtol=1e-12,
                               atol=1e-14, err_msg=f"{op} axis={axis}: {rule.numpy}")


@pytest.mark.parametrize("shape,axis", [((2, 3), 0), ((2, 3), 1), ((4,), 0), ((2, 3, 2), 1)])
@pytest.mark.parametrize("lazy", [False, True])
def test_logsumexp_keepdims_map(shape, axis, lazy):
    """log(softmax(x)) lowers to x - logsumexp(x, keepdims): its map takes G of the kept shape,
    or a scalar G broadcast lazily."""
    rule = RULES["logsumexp"].keepdims
    A, out = reduction_case("logsumexp", shape, axis, keepdims=True)
    G = sym_array("g", () if lazy else out.shape)
    want = vjp(out, G, A)
    rng = np.random.default_rng(2)
    a, g = rng.normal(size=shape), rng.normal(size=G.shape)
    subs = {**dict(zip(A.flat, a.flat)), **dict(zip(G.flat, g.flat))}
    got = run_template(rule.numpy, G=g, a=a, y=numbers(out, subs), k=axis)
    assert rule.needs_full_g is False
    np.testing.assert_allclose(got, numbers(want, subs), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape,axis", [((2, 3), 0), ((2, 3), 1), ((4,), 0), ((4,), -1),
                                        ((2, 3, 2), 2)])
@pytest.mark.parametrize("lazy", [False, True])
def test_softmax_map(shape, axis, lazy):
    """softmax gives s ⊙ (G - Σ G ⊙ s), with a full or a lazily broadcast scalar G."""
    rule = RULES["softmax"].maps[True]
    A = sym_array("a", shape)
    out = s_softmax(A, axis)
    G = sym_array("g", () if lazy else shape)
    want = vjp(out, G, A)
    rng = np.random.default_rng(3)
    a, g = rng.normal(size=shape), rng.normal(size=G.shape)
    subs = {**dict(zip(A.flat, a.flat)), **dict(zip(G.flat, g.flat))}
    got = run_template(rule.numpy, G=g, a=a, y=numbers(out, subs), k=axis)
    np.testing.assert_allclose(got, numbers(want, subs), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", [(2, 3), (3,), ()])
def test_transpose_map(shape):
    rule = RULES["transpose"].maps[False]
    A = sym_array("a", shape)
    out = np.array(A.T, dtype=object)
    G = sym_array("g", out.shape)
    want = vjp(out, G, A)
    rng = np.random.default_rng(4)
    a, g = rng.normal(size=shape), rng.normal(size=out.shape)
    subs = {**dict(zip(A.flat, a.flat)), **dict(zip(G.flat, g.flat))}
    got = run_template(rule.numpy, G=g, a=a, y=a.T)
    np.testing.assert_allclose(got, numbers(want, subs), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", [(3, 5), (5,)])
@pytest.mark.parametrize("op, part", [("index", (0, 1)), ("index", (4, 5)), ("slice", (1, 3)),
                                      ("slice", (0, 5)), ("slice", (2, 5))])
def test_index_and_slice_maps(shape, op, part):
    """The scatter: G put back where the part of the last axis was taken, zeros elsewhere."""
    rule = RULES[op].maps[False]
    A = sym_array("a", shape)
    start, stop = part
    out = np.array(A[..., start] if op == "index" else A[..., start:stop], dtype=object)
    G = sym_array("g", out.shape)
    want = vjp(out, G, A)
    rng = np.random.default_rng(5)
    a, g = rng.normal(size=shape), rng.normal(size=out.shape)
    subs = {**dict(zip(A.flat, a.flat)), **dict(zip(G.flat, g.flat))}
    got = run_template(rule.numpy, G=g, a=a, pad=pad_widths(part, shape))
    np.testing.assert_allclose(got, numbers(want, subs), rtol=1e-12, atol=1e-14)


MATMUL_SHAPES = {(2, 2): ((2, 3), (3, 4)), (2, 1): ((2, 3), (3,)), (1, 2): ((3,), (3, 4)),
                 (1, 1): ((3,), (3,))}


@pytest.mark.parametrize("key", sorted(MATMUL))
def test_matmul_maps(key):
    """G ↦ G·Bᵀ and G ↦ Aᵀ·G in every vector/matrix combination numpy's `@` allows."""
    index, nda, ndb = key
    sa, sb = MATMUL_SHAPES[(nda, ndb)]
    A, B = sym_array("a", sa), sym_array("b", sb)
    out = s_matmul(A, B)
    G = sym_array("g", out.shape)
    want = vjp(out, G, (A, B)[index])
    rng = np.random.default_rng(5)
    a, b, g = rng.normal(size=sa), rng.normal(size=sb), rng.normal(size=out.shape)
    subs = {**dict(zip(A.flat, a.flat)), **dict(zip(B.flat, b.flat)), **dict(zip(G.flat, g.flat))}
    got = run_template(MATMUL[key].numpy, G=g, a=a, b=b, y=a @ b)
    assert got.shape == (sa, sb)[index]
    np.testing.assert_allclose(got, numbers(want, subs), rtol=1e-12, atol=1e-14,
                               err_msg=f"{key}: {MATMUL[key].numpy}")


def test_every_map_is_tested():
    """A new structural op of the registry, or a new map of one, needs a rule and a test above."""
    from compiler.ops import STRUCTURAL
    assert set(RULES) == {op.ir for op in STRUCTURAL.values()}
    tested = {("sum", False), ("sum", True), ("mean", False), ("mean", True),
              ("logsumexp", False), ("logsumexp", True), ("softmax", True), ("transpose", False),
              ("index", False), ("slice", False)}
    assert {(op, key) for op, r in RULES.items() if op != "matmul" for key in r.maps} == tested
    assert set(MATMUL) == {(i, a, b) for i in (0, 1) for a in (1, 2) for b in (1, 2)}
    for op, r in RULES.items():
        for rule in [*r.maps.values(), *([r.keepdims] if op == "logsumexp" else [])]:
            assert "{G}" in rule.numpy


def test_matmul_maps_by_sympy_matrix_calculus():
    """The 2-d maps, cross-checked with sympy's MatrixSymbol calculus (small sizes)."""
    A, B, G = sp.MatrixSymbol("A", 2, 3), sp.MatrixSymbol("B", 3, 4), sp.MatrixSymbol("G", 2, 4)
    objective = sp.Trace(G.T * A * B)
    assert sp.simplify(objective.diff(B) - A.T * G) == sp.ZeroMatrix(3, 4)
    assert sp.simplify(objective.diff(A) - G * B.T) == sp.ZeroMatrix(2, 3)
    assert MATMUL[(0, 2, 2)].numpy == "{G} @ {b}.T"
    assert MATMUL[(1, 2, 2)].numpy == "{a}.T @ {G}"


# ---- the elementwise side: derivatives written through the node's value ---------------------

x, yv = symbol("x"), symbol("y")
TEXTBOOK = {  # the function as plain sympy maths (no custom Function), for sympy to differentiate
    "exp": sp.exp(x), "log": sp.log(x), "sqrt": sp.sqrt(x), "abs": sp.Abs(x), "sin": sp.sin(x),
    "cos": sp.cos(x), "tanh": sp.tanh(x), "sigmoid": 1 / (1 + sp.exp(-x)),
    "relu": sp.Piecewise((x, x > 0), (0, True)), "softplus": sp.log(1 + sp.exp(x)),
    "square": x**2,
}


def node_of(expr, name="z"):
    inputs = tuple(sorted(s.name for s in expr.free_symbols))
    return Node(name, "op", (), SPAN, "elementwise", inputs, expr)


@pytest.mark.parametrize("f", sorted(TEXTBOOK))
def test_elementwise_factor_against_textbook(f):
    """∂f/∂x from derive.py (through the node value z where it appears) equals sympy's
    derivative of the textbook formula, at points off the kinks."""
    node = node_of(sympy_of(f)(x))
    factor = elementwise_factor(node, "x")
    want = sp.diff(TEXTBOOK[f], x)
    z = symbol("z")
    for v in (0.3, 1.7, -0.8, -2.5):
        if f in ("log", "sqrt") and v < 0:
            continue
        value = node.expr.subs(x, v)
        got = factor.subs(z, value).subs(x, v)
        got = got.rewrite(sp.exp) if got.has(sigmoid, softplus) else got
        got = float(_plain(got).evalf(30))
        assert abs(got - float(want.subs(x, v).evalf(30))) < 1e-12, (f, v, factor)


def _plain(e):
    """Our Functions as plain sympy, to evaluate numerically."""
    return e.replace(sigmoid, lambda t: 1 / (1 + sp.exp(-t))).replace(
        softplus, lambda t: sp.log(1 + sp.exp(t))).replace(
        relu, lambda t: sp.Max(t, 0)).replace(maximum, sp.Max).replace(minimum, sp.Min)


def test_sigmoid_and_tanh_derivatives_reuse_the_value():
    """sigmoid' = s·(1 - s) and tanh' = 1 - tanh², written through the node symbol."""
    z = symbol("z")
    assert sp.simplify(elementwise_factor(node_of(sigmoid(x)), "x") - z * (1 - z)) == 0
    assert sp.simplify(elementwise_factor(node_of(sp.tanh(x)), "x") - (1 - z**2)) == 0
    assert sp.simplify(elementwise_factor(node_of(sp.exp(x)), "x") - z) == 0


def test_pinned_subgradients():
    """relu'(0) = 0, abs'(0) = 0, and ties of max/min split the gradient in half."""
    assert relu(x).diff(x).subs(x, 0) == 0
    assert sp.Abs(x).diff(x).subs(x, 0) == 0
    for f in (maximum, minimum):
        e = f(x, yv)
        assert e.diff(x).subs({x: 1, yv: 1}) == sp.S.Half
        assert e.diff(yv).subs({x: 1, yv: 1}) == sp.S.Half
    assert maximum(x, yv).diff(x).subs({x: 2, yv: 1}) == 1
    assert minimum(x, yv).diff(x).subs({x: 2, yv: 1}) == 0


@pytest.mark.parametrize("expr", [x * yv, x / yv, x**yv, sp.sin(x * yv) + x, maximum(x, yv) * yv,
                                  sigmoid(x + yv) * (x - yv)])
def test_elementwise_factor_of_two_inputs(expr):
    """Several inputs: each factor is sympy's partial derivative (through the value z)."""
    node = node_of(expr)
    z = symbol("z")
    for wrt in (x, yv):
        factor = elementwise_factor(node, wrt.name).subs(z, expr)
        for vx, vy in [(0.7, 1.3), (1.9, 0.4)]:
            pt = {x: vx, yv: vy}
            got = float(_plain(factor.subs(pt)).evalf(30))
            want = float(_plain(sp.diff(expr, wrt).subs(pt)).evalf(30))
            assert abs(got - want) < 1e-12 * max(1, abs(want)), (expr, wrt)


def test_every_builtin_has_its_sympy_side():
    """Each elementwise op and constant of the registry (sympy-free, compiler.ops) names a sympy
    function that builds an expression."""
    from compiler import ops
    for name, f in ops.ELEMENTWISE.items():
        assert isinstance(sympy_of(name)(*[x] * f.arity), sp.Basic), name
    assert sympy_of("pi") == sp.pi and sympy_of("e") == sp.E


@pytest.mark.parametrize("name", ["@", "sum", "mean", "logsumexp", "softmax", "transpose",
                                  "index", "slice"])
def test_the_view_flag_says_what_numpy_returns(name):
    """Each structural op's `view` (code generation copies a gradient that may share memory
    with a param) is what its numpy forward really returns: a view of the input, or new memory."""
    from compiler.ir import Graph
    from compiler.ops import HELPERS, STRUCTURAL
    from compiler.structural import rule
    op = STRUCTURAL[name]
    g = Graph("<test>")
    shapes = [(3, 4), (4, 2)][:op.arity]
    for k, shape in enumerate(shapes):
        g.add(Node(f"a{k}", "input", shape, SPAN))
    out_shape = {"index": (3,), "slice": (3, 2)}.get(op.ir, ())
    node = Node("y", "op", out_shape, SPAN, op.ir, tuple(g.nodes), axis=1 if op.axis else None,
                part={"index": (1, 2), "slice": (1, 3)}.get(op.ir))
    arrays = {f"a{k}": np.arange(np.prod(s), dtype=float).reshape(s) for k, s in enumerate(shapes)}
    env = {"np": np, **arrays}
    for _, definition in HELPERS.values():  # our own helper source, never model text
        exec(definition, env)
    code = rule(op.ir).forward(g, node, list(arrays), lambda dims: str(np.prod(dims)))
    value = eval(code, env)  # our own template
    assert np.shares_memory(value, arrays["a0"]) == op.view, code


def test_the_registry_imports_without_sympy():
    """compiler.ops is read by the checker of a cached command, which never imports sympy: the
    sympy side of each op is resolved only when first asked."""
    code = "import sys, compiler.ops; assert 'sympy' not in sys.modules, 'sympy was imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
