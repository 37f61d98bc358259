"""`dsl derive` and `dsl graph` on the command line: the contract's output, golden files, exit
statuses and clean errors (no tracebacks)."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from dsl.cli import main
from tests.golden_util import compare

ROOT = pathlib.Path(__file__).resolve().parents[1]

SEED_K1 = """\
∂loss/∂k1 = ∂loss/∂L2 · ∂L2/∂s · ∂s/∂L1 · ∂L1/∂k1

  ∂loss/∂L2 = 2·(L2 - y)
  ∂L2/∂s    = k2
  ∂s/∂L1    = s·(1 - s)
  ∂L1/∂k1   = x
"""


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_derive_seed_k1_is_the_contract(capsys):
    assert run(capsys, "derive", "examples/seed_graph.model", "--wrt", "k1") == (0, SEED_K1, "")


def test_derive_as_a_subprocess():
    """`python -m dsl derive ...` exactly as the contract shows it (UTF-8 out)."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    p = subprocess.run([sys.executable, "-m", "dsl", "derive", "examples/seed_graph.model",
                        "--wrt", "k1"], capture_output=True, env=env, check=False)
    assert p.returncode == 0 and p.stdout.decode("utf-8") == SEED_K1 and p.stderr == b""


@pytest.mark.parametrize("example", ["seed_graph", "boston_mlp", "boston_rm"])
def test_derive_every_param_is_golden(capsys, example):
    code, out, err = run(capsys, "derive", f"examples/{example}.model")
    assert code == 0 and err == ""
    compare(f"good/{example}.derive.txt", out)


def test_derive_latex_and_json(capsys):
    code, out, _ = run(capsys, "derive", "examples/seed_graph.model", "--latex")
    assert code == 0
    compare("good/seed_graph.derive.tex", out)
    code, out, _ = run(capsys, "derive", "examples/boston_mlp.model", "--wrt", "b1", "--json")
    data = json.loads(out)
    assert code == 0 and data["derivations"][0]["factors"][-1]["text"] == "G ↦ Σ_rows G"


def test_expand_reproduces_the_tutorial(capsys):
    code, out, _ = run(capsys, "derive", "examples/boston_rm.model", "--expand")
    assert code == 0
    compare("good/boston_rm.expand.txt", out)
    assert out.splitlines()[0] == "∂loss/∂k = mean(2·x·(b + k·x - y))"
    code, out, _ = run(capsys, "derive", "examples/seed_graph.model", "--expand")
    compare("good/seed_graph.expand.txt", out)
    code, out, _ = run(capsys, "derive", "examples/boston_rm.model", "--expand", "--json")
    assert json.loads(out)["derivations"][1]["expanded"]["text"] == "mean(2·(b + k·x - y))"


def test_expand_on_matrices_is_a_clear_message(capsys):
    code, out, err = run(capsys, "derive", "examples/boston_mlp.model", "--expand")
    assert code == 2 and out == ""
    assert "cannot write ∂loss/∂W1 as one expression" in err and "Traceback" not in err


def _chain(n: int, body: str) -> str:
    lines = ["input x", "param k = 0.5", "n0 = k * x"]
    lines += [f"n{i} = " + body.format(p=f"n{i - 1}") for i in range(1, n + 1)]
    return "\n".join(lines + [f"loss = n{n}^2", "minimize loss"]) + "\n"


@pytest.mark.parametrize("n, body", [
    (30, "sin({p}) * cos({p})"),  # doubles at each link: 2^30 terms, never finished
    (300, "sin({p})"),  # 45,000 terms, 300 levels deep: past Python's recursion limit
])
def test_expand_of_a_long_chain_is_refused_with_the_chain_form_suggested(capsys, tmp_path, n,
                                                                         body):
    path = tmp_path / "chain.model"
    path.write_text(_chain(n, body))
    code, out, err = run(capsys, "derive", str(path), "--expand")
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"{path}:" in err and "the expanded form of ∂loss/∂k is too large to write" in err
    assert "more than 5,000 terms" in err and "drop --expand" in err
    code, out, err = run(capsys, "derive", str(path))  # the chain form is fine
    assert code == 0 and out.startswith("∂loss/∂k = ")


def test_unknown_wrt_is_a_usage_error_with_a_suggestion(capsys):
    code, out, err = run(capsys, "derive", "examples/seed_graph.model", "--wrt", "kl")
    assert code == 2 and out == ""
    assert "`kl` is not a name" in err and "did you mean `k1`?" in err and "Traceback" not in err


def test_bad_usage(capsys):
    assert run(capsys, "derive", "examples/seed_graph.model", "--latex", "--json")[0] == 2
    assert run(capsys, "graph", "examples/seed_graph.model", "--format", "png")[0] == 2
    assert run(capsys, "derive", "examples/nope.model")[0] == 2


@pytest.mark.parametrize("example", ["seed_graph", "boston_mlp"])
def test_graph_formats_are_golden(capsys, example):
    code, out, err = run(capsys, "graph", f"examples/{example}.model")
    assert code == 0 and err == ""
    compare(f"good/{example}.dot", out)
    code, out, _ = run(capsys, "graph", f"examples/{example}.model", "--derivatives")
    compare(f"good/{example}.derivatives.dot", out)
    code, out, _ = run(capsys, "graph", f"examples/{example}.model", "--format", "text")
    compare(f"good/{example}.graph.txt", out)
    code, out, _ = run(capsys, "graph", f"examples/{example}.model", "--format", "text",
                       "--derivatives")
    compare(f"good/{example}.derivatives.txt", out)


def test_graph_svg_without_graphviz(capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    code, out, err = run(capsys, "graph", "examples/seed_graph.model", "--format", "svg")
    assert code == 2 and out == "" and "graphviz" in err and "Traceback" not in err


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")
def test_graph_pipes_into_dot(capsys):
    code, out, _ = run(capsys, "graph", "examples/seed_graph.model")
    png = subprocess.run(["dot", "-Tpng"], input=out.encode("utf-8"), capture_output=True,
                         check=False)
    assert png.returncode == 0 and png.stdout.startswith(b"\x89PNG")
    code, out, _ = run(capsys, "graph", "examples/seed_graph.model", "--format", "svg")
    assert code == 0 and "<svg" in out


# ---- --jacobian and --hessian ----------------------------------------------------------------

@pytest.mark.parametrize("example, flag, form", [
    ("pendulum", "--jacobian", "txt"), ("pendulum", "--jacobian", "tex"),
    ("pendulum", "--hessian", "txt"), ("pendulum", "--hessian", "tex"),
    ("boston_rm", "--jacobian", "txt"), ("boston_rm", "--hessian", "txt"),
    ("seed_graph", "--hessian", "txt"),
])
def test_jacobian_and_hessian_are_golden(capsys, example, flag, form):
    extra = ["--latex"] if form == "tex" else []
    code, out, err = run(capsys, "derive", f"examples/{example}.model", flag, *extra)
    assert code == 0 and err == ""
    compare(f"good/{example}.{flag[2:]}.{form}", out)


def test_jacobian_and_hessian_in_the_users_names(capsys):
    code, out, _ = run(capsys, "derive", "examples/pendulum.model", "--jacobian")
    lines = out.splitlines()
    assert lines[0] == "chi2 = mean(r^2), r = (That - T) / sigma"
    assert lines[2].startswith("∂r/∂g    = ") and lines[3].startswith("∂r/∂d_cm = ")
    code, out, _ = run(capsys, "derive", "examples/pendulum.model", "--hessian")
    assert [ln.split(" =")[0].strip() for ln in out.splitlines()[2:]] == [
        "∂²chi2/∂g²", "∂²chi2/∂g∂d_cm", "∂²chi2/∂d_cm²"]
    code, out, _ = run(capsys, "derive", "examples/boston_rm.model", "--hessian", "--wrt", "b")
    assert out.splitlines()[2:] == ["∂²loss/∂b² = 2"]
    code, out, _ = run(capsys, "derive", "examples/pendulum.model", "--hessian", "--json")
    data = json.loads(out)
    assert [e["name"] for e in data["entries"]] == ["∂²chi2/∂g²", "∂²chi2/∂g∂d_cm", "∂²chi2/∂d_cm²"]
    assert data["entries"][1]["latex"].startswith(r"\operatorname{mean}")


def _numeric(expr, values):
    """A printed derivative evaluated with numpy: mean(...) and sum(...) over the rows."""
    import numpy as np
    import sympy as sp
    from compiler.structural import MeanOf, SumOf
    MEAN, SUM = sp.Function("MEAN"), sp.Function("SUM")
    e = expr.replace(MeanOf, MEAN).replace(SumOf, SUM)
    syms = sorted(e.free_symbols, key=lambda s: s.name)
    f = sp.lambdify(syms, e, modules=[{"MEAN": np.mean, "SUM": np.sum}, "numpy"])
    return f(*(values[s.name] for s in syms))


@pytest.mark.parametrize("example", ["pendulum", "boston_rm"])
def test_printed_derivatives_equal_the_generated_module(example):
    """The written-out Jacobian and Hessian are the numbers the module computes."""
    import numpy as np
    import dsl
    from dsl.views import explain
    m = dsl.load(f"examples/{example}.model", use_cache=False)
    ds = m.dataset()
    params = {k: np.asarray(v, dtype=float) + 0.5 for k, v in m.params.items()}
    values = {**params, **ds.train, **{c: float(m.checked.consts[c].value)
                                       for c in m.checked.consts}}
    J = m.module.jacobian(params, ds.train)
    for k, (_, _, e) in enumerate(explain.jacobian(m.graph).rows):
        np.testing.assert_allclose(np.broadcast_to(_numeric(e, values), J[:, k].shape), J[:, k],
                                   rtol=1e-10)
    H = m.module.hessian(params, ds.train)
    rows = explain.hessian(m.graph).rows
    pairs = [(i, j) for i in range(len(params)) for j in range(i, len(params))]
    for (i, j), (_, _, e) in zip(pairs, rows):
        np.testing.assert_allclose(_numeric(e, values), H[i, j], rtol=1e-10)


def test_jacobian_and_hessian_refusals_are_clear(capsys):
    code, out, err = run(capsys, "derive", "examples/seed_graph.model", "--jacobian")
    assert code == 2 and out == "" and "`loss` is not a sum or mean of squares" in err
    code, out, err = run(capsys, "derive", "examples/boston_mlp.model", "--hessian")
    assert code == 2 and "cannot write the Hessian of loss as expressions: `X` is [N, 13]" in err
    code, out, err = run(capsys, "derive", "examples/pendulum.model", "--jacobian", "--wrt", "T")
    assert code == 2 and "`T` is not a param" in err and "params: g, d_cm" in err
    code, out, err = run(capsys, "derive", "examples/pendulum.model", "--jacobian", "--expand")
    assert code == 2 and "not allowed with argument --jacobian" in err
