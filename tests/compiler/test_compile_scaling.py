"""Long chains compile without recursion and with right gradients.

A chain `z1 = sigmoid(w * z0)`, ..., `minimize zK` of K = 100 and 1,000 statements is compiled
from `.model` text (parse, check, lower, derive, generate, load; no cache). Graph traversals are
iterative, so Python's recursion limit is never reached. How compile time grows with size
(chains and MLPs up to 10,000 nodes) is measured in `bench/run.py --only compile`, not asserted
here: a test never asserts on wall-clock time.

The compiled chain is checked too: its gradient with respect to w, carried forward by hand
(dz_i/dw = s_i·(1 - s_i)·(z_{i-1} + w·dz_{i-1}/dw)), and against finite differences.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import dsl  # noqa: E402
from tests.gradcheck import verify_grad  # noqa: E402

SIZES = (100, 1_000)


def chain_text(k: int) -> str:
    lines = ["input x", "param w = 0.5", "z0 = x"]
    lines += [f"z{i} = sigmoid(w * z{i - 1})" for i in range(1, k + 1)]
    lines.append(f"minimize z{k}")
    return "\n".join(lines) + "\n"


def matrix_chain_text(k: int) -> str:
    """A chain through structural nodes: z_i = tanh(z_{i-1} @ W) + b."""
    lines = ["input x[2, 3]", "param W[3, 3] ~ normal(0, 0.5)", "param b[3] = 0.1", "z0 = x"]
    lines += [f"z{i} = tanh(z{i - 1} @ W) + b" for i in range(1, k + 1)]
    lines.append(f"loss = mean(z{k})")
    lines.append("minimize loss")
    return "\n".join(lines) + "\n"


def compile_model(folder: Path, name: str, text: str):
    path = folder / f"{name}.model"
    path.write_text(text)
    limit = sys.getrecursionlimit()
    m = dsl.load(str(path), use_cache=False)
    assert sys.getrecursionlimit() == limit, "compiling must not raise the recursion limit"
    return m


def chain_gradient(k: int, x: float, w: float) -> tuple[float, float]:
    """z_k and dz_k/dw by forward-mode differentiation in plain Python."""
    z, dz = x, 0.0
    for _ in range(k):
        s = 1 / (1 + np.exp(-w * z))
        z, dz = s, s * (1 - s) * (z + w * dz)
    return z, dz


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The chains of 100 and 1,000 nodes, compiled once for this module."""
    folder = tmp_path_factory.mktemp("chains")
    return {k: compile_model(folder, f"chain{k}", chain_text(k)) for k in SIZES}


@pytest.mark.parametrize("k", SIZES)
def test_chain_gradient(compiled, k):
    m = compiled[k]
    r = m.eval({"x": 0.8, "w": 1.3})
    z, dz = chain_gradient(k, 0.8, 1.3)
    np.testing.assert_allclose(r.values[f"z{k}"], z, rtol=1e-12)
    np.testing.assert_allclose(r.gradients["w"], dz, rtol=1e-10)
    verify_grad(m, {"x": np.array(0.8), "w": np.array(1.3)})


def test_chain_generated_code_is_one_line_per_node(compiled):
    """The backward pass names each adjoint: no expression swells along the chain."""
    m = compiled[1_000]
    grad = m.source[m.source.index("def _loss_and_grad("):m.source.index("def loss_and_grad(")]
    body = [ln.strip() for ln in grad.splitlines()[2:] if not ln.strip().startswith("return")]
    assert max(len(ln) for ln in body) < 200
    code = [ln for ln in body if not ln.startswith(("#", "del "))]  # comments, releases
    assert len(code) < 6 * 1_000 and len(body) < 3 * len(code)


def test_matrix_chain_gradient(tmp_path):
    """Structural nodes (`@`, a bias, a mean) in a chain of 50 and 500: gradients stay right."""
    m1 = compile_model(tmp_path, "m50", matrix_chain_text(50))
    m2 = compile_model(tmp_path, "m500", matrix_chain_text(500))
    rng = np.random.default_rng(0)
    point = {"x": rng.normal(size=(2, 3)), "W": rng.normal(0, 0.5, (3, 3)), "b": np.full(3, 0.1)}
    verify_grad(m1, point)
    r = m2.eval(point)
    assert all(np.all(np.isfinite(g)) for g in r.gradients.values())
