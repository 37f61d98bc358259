"""Gradients against central finite differences, like PyTensor's `verify_grad`.

A model is written as real `.model` text, loaded with `dsl.load`, evaluated with `Model.eval`
at a point, and every gradient `eval` reports (params and inputs) is compared with central
differences of the compiled objective in float64. Shared by the gradient, torch, property and
numerics tests.

    m = load_model(tmp_path, "input x\\nparam w = 2\\nloss = sum(w * x)\\nminimize loss\\n")
    point = random_point(m, sizes={"N": 3})
    verify_grad(m, point)
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

import dsl

RTOL = 1e-6


def load_model(folder, text: str, name: str = "model", use_cache: bool = False) -> dsl.Model:
    """Write `text` to `folder/name.model` and load it (parse, check, compile)."""
    path = Path(folder) / f"{name}.model"
    path.write_text(text, encoding="utf-8")
    return dsl.load(str(path), use_cache=use_cache)


def leaves(m: dsl.Model) -> list[str]:
    """Every param and input of the model, params first (the order `eval` reports them in)."""
    return [*m.checked.params, *m.checked.inputs]


def shape_of(m: dsl.Model, name: str, sizes: dict[str, int] | None = None) -> tuple[int, ...]:
    """A declared shape with its size names (`N`) bound from `sizes`."""
    sizes = sizes or {}
    return tuple(sizes[d] if isinstance(d, str) else d for d in m.checked.shapes[name])


def random_point(m: dsl.Model, sizes: dict[str, int] | None = None, seed: int = 0,
                 low: float = -1.5, high: float = 1.5, ranges: dict[str, tuple] | None = None,
                 signed=()) -> dict[str, np.ndarray]:
    """A value for every param and input, uniform in [low, high] (per name from `ranges`);
    names in `signed` get a random sign too (magnitudes in [low, high] keep them off zero)."""
    rng = np.random.default_rng(seed)
    ranges = ranges or {}
    out = {}
    for name in leaves(m):
        lo, hi = ranges.get(name, (low, high))
        shape = shape_of(m, name, sizes)
        out[name] = rng.uniform(lo, hi, shape)
        if name in signed:
            out[name] = out[name] * rng.choice([-1.0, 1.0], shape)
    return out


def split_point(m: dsl.Model, point: dict[str, np.ndarray]):
    """(params, inputs) dicts as the generated module takes them."""
    params = {k: np.asarray(v, dtype=np.float64) for k, v in point.items() if k in m.checked.params}
    inputs = {k: np.asarray(v, dtype=np.float64) for k, v in point.items() if k in m.checked.inputs}
    return params, inputs


def objective(m: dsl.Model, point: dict[str, np.ndarray]) -> float:
    """The compiled objective at a point (the generated `loss`)."""
    params, inputs = split_point(m, point)
    with np.errstate(all="ignore"):
        return float(m.module.loss(params, inputs))


def numeric_grad(f, point: dict[str, np.ndarray], name: str, eps: float = 1e-6,
                 indices=None) -> np.ndarray:
    """Central differences of `f(point)` over every element of `point[name]` (or only over
    `indices`, leaving the rest 0); each step is scaled by the element's magnitude
    (`eps * max(1, |x|)`)."""
    base = np.array(point[name], dtype=np.float64)
    grad = np.zeros_like(base)
    if indices is None:
        indices = itertools.product(*(range(n) for n in base.shape))
    for idx in indices:
        h = eps * max(1.0, abs(float(base[idx])))
        plus, minus = base.copy(), base.copy()
        plus[idx] += h
        minus[idx] -= h
        fp = f({**point, name: plus})
        fm = f({**point, name: minus})
        grad[idx] = (fp - fm) / (plus[idx] - minus[idx])
    return grad


def assert_close(got, want, rtol: float = RTOL, atol: float = 0.0, what: str = "") -> None:
    """|got - want| <= rtol·max(|got|, |want|) + atol, elementwise, with a readable message."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = np.abs(got - want)
    tol = rtol * np.maximum(np.abs(got), np.abs(want)) + atol
    bad = ~(err <= tol)
    if bad.any():
        i = np.unravel_index(int(np.argmax(np.where(bad, err - tol, -np.inf))), got.shape) if got.ndim else ()
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {got.size} entries differ; worst at {i}: "
            f"got {got[i]!r}, expected {want[i]!r} (|diff| {err[i]:.3g}, tol {tol[i]:.3g})\n"
            f"got:\n{got}\nexpected:\n{want}")


def verify_grad(m: dsl.Model, point: dict[str, np.ndarray], wrt=None, rtol: float = RTOL,
                eps: float = 1e-6, atol: float | None = None, sample: int | None = None,
                seed: int = 0):
    """`m.eval(point)`'s gradient of every name in `wrt` (default: every param and input)
    against central differences of the compiled objective. Returns the EvalResult.

    The absolute floor `atol` (for entries near zero, where a relative test means nothing)
    defaults to the rounding error of the differences: 1e-9·max(1, |objective|). With
    `sample`, arrays larger than that are checked on `sample` random entries."""
    r = m.eval(point)
    assert r.objective == m.checked.objective
    assert set(r.gradients) == set(leaves(m)), "eval must report a gradient for every param and input"
    f0 = objective(m, point)
    assert np.isfinite(f0), f"objective is not finite at the test point: {f0}"
    assert_close(r.values[r.objective], f0, rtol=1e-12, atol=1e-300, what="eval's objective vs loss()")
    if atol is None:
        atol = 1e-9 * max(1.0, abs(f0))
    for name in (leaves(m) if wrt is None else wrt):
        analytic = np.asarray(r.gradients[name], dtype=np.float64)
        assert analytic.shape == np.shape(point[name]), (
            f"gradient of {name} has shape {analytic.shape}, value has {np.shape(point[name])}")
        f = lambda p: objective(m, p)  # noqa: E731
        size = int(np.prod(np.shape(point[name]), dtype=int))
        if sample is None or size <= sample:
            numeric = numeric_grad(f, point, name, eps)
            assert_close(analytic, numeric, rtol=rtol, atol=atol, what=f"∂{r.objective}/∂{name}")
            continue
        rng = np.random.default_rng(seed)
        flat = rng.choice(size, sample, replace=False)
        idx = [np.unravel_index(int(i), np.shape(point[name])) for i in flat]
        numeric = numeric_grad(f, point, name, eps, indices=idx)
        rows = tuple(np.array(k) for k in zip(*idx))
        assert_close(analytic[rows], numeric[rows], rtol=rtol, atol=atol,
                     what=f"∂{r.objective}/∂{name} at {sample} sampled entries")
    return r


def check_model(folder, text: str, sizes: dict[str, int] | None = None, seed: int = 0,
                ranges: dict[str, tuple] | None = None, low: float = -1.5, high: float = 1.5,
                signed=(), rtol: float = RTOL, name: str = "model"):
    """Load `text`, draw a point, verify every gradient against finite differences and check
    that `eval` agrees with the generated module; returns (model, point, result)."""
    m = load_model(folder, text, name)
    point = random_point(m, sizes, seed, low, high, ranges, signed)
    r = verify_grad(m, point, rtol=rtol)
    assert_module_agrees(m, point, r)
    return m, point, r


def assert_module_agrees(m: dsl.Model, point: dict[str, np.ndarray], r=None) -> None:
    """`eval`'s numbers equal the generated module's forward, gradients, grad, loss_and_grad."""
    r = r if r is not None else m.eval(point)
    params, inputs = split_point(m, point)
    with np.errstate(all="ignore"):
        fwd = m.module.forward(params, inputs)
        vals, grads = m.module.gradients(params, inputs)
        loss, pgrads = m.module.loss_and_grad(params, inputs)
        g = m.module.grad(params, inputs)
    assert set(fwd) == set(r.values)
    for k, v in fwd.items():
        np.testing.assert_array_equal(np.asarray(v), r.values[k], err_msg=f"forward[{k}]")
        np.testing.assert_array_equal(np.asarray(vals[k]), r.values[k], err_msg=f"gradients values[{k}]")
    assert set(grads) == set(r.gradients)
    for k, v in grads.items():
        np.testing.assert_array_equal(np.asarray(v), r.gradients[k], err_msg=f"gradients[{k}]")
    np.testing.assert_array_equal(np.asarray(loss), r.values[r.objective])
    for k in m.checked.params:
        np.testing.assert_allclose(np.asarray(pgrads[k]), r.gradients[k], rtol=1e-12, atol=0,
                                   err_msg=f"loss_and_grad[{k}]")
        np.testing.assert_allclose(np.asarray(g[k]), r.gradients[k], rtol=1e-12, atol=0,
                                   err_msg=f"grad[{k}]")


def assert_sgd_step(m: dsl.Model, point: dict[str, np.ndarray], lr: float = 0.1) -> None:
    """The generated in-place `sgd_step` moves every param by exactly -lr · grad, and `grad`
    returns arrays that no in-place update of a param can change."""
    params, inputs = split_point(m, point)
    before = {k: v.copy() for k, v in params.items()}
    grads = {k: np.array(v) for k, v in m.module.grad({k: v.copy() for k, v in params.items()},
                                                       inputs).items()}
    live = {k: v.copy() for k, v in params.items()}
    returned = m.module.grad(live, inputs)
    for k, g in returned.items():
        for j, v in live.items():
            assert not np.shares_memory(np.asarray(g), v), f"grad[{k}] is a view of param {j}"
    stepped = {k: v.copy() for k, v in params.items()}
    m.module.sgd_step(stepped, inputs, lr)
    for k in params:
        np.testing.assert_allclose(stepped[k], before[k] - lr * grads[k], rtol=1e-12, atol=1e-15,
                                   err_msg=f"sgd_step moved {k} wrongly")
