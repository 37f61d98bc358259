"""Global fits (LANGUAGE.md 2.7): several `data` statements, params shared or `per source`,
one objective over the rows of every source; checks, gradients and the per-source report."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import dsl  # noqa: E402
from compiler.errors import SemanticError  # noqa: E402
from dsl.front.check import check  # noqa: E402
from dsl.front.build import parse  # noqa: E402
from tests.gradcheck import verify_grad  # noqa: E402

MODEL = """
data "a.csv" as first
data "b.csv"
input t[N] <- t
input y[N] <- y
param A = 1 per source
param w[2] = 0.5 per source
param k = 0.3
yhat = A * exp(-k * t) + w[:, 0] + w[:, 1] * t  # per source: one row of w per row of data
loss = mean((yhat - y)^2)
minimize loss
predict yhat
"""


def write_sources(folder: Path) -> None:
    t = np.linspace(0, 4, 9)
    for name, a, w in (("a", 2.0, (0.1, 0.02)), ("b", 3.0, (-0.2, 0.05))):
        y = a * np.exp(-0.5 * t) + w[0] + w[1] * t
        rows = "".join(f"{ti},{float(yi)!r}\n" for ti, yi in zip(t, y))
        (folder / f"{name}.csv").write_text("t,y\n" + rows)


def test_per_source_params_have_one_value_per_source(tmp_path):
    write_sources(tmp_path)
    (tmp_path / "g.model").write_text(MODEL)
    m = dsl.load(str(tmp_path / "g.model"), use_cache=False)
    c = m.checked
    assert c.source_names == ["first", "b"] and c.per_source == ["A", "w"]
    assert c.shapes["A"] == (2,) and c.shapes["w"] == (2, 2) and c.shapes["source"] == ("N", 2)
    ds = m.dataset()
    assert ds.sources == [("first", 9, 0), ("b", 9, 0)]
    np.testing.assert_array_equal(ds.train["source"][:, 0], [1] * 9 + [0] * 9)
    rng = np.random.default_rng(0)
    point = {"A": rng.normal(size=2), "w": rng.normal(size=(2, 2)), "k": np.array(0.4),
             **{k: v for k, v in ds.train.items()}}
    r = verify_grad(m, point, wrt=["A", "w", "k"])
    # each source's A gets the gradient of its own rows only
    t, y = ds.train["t"], ds.train["y"]
    A_row = point["A"][ds.train["source"].argmax(1)]
    w_row = point["w"][ds.train["source"].argmax(1)]
    resid = A_row * np.exp(-0.4 * t) + w_row[:, 0] + w_row[:, 1] * t - y
    want = [np.sum(2 * resid[:9] * np.exp(-0.4 * t[:9])) / 18,
            np.sum(2 * resid[9:] * np.exp(-0.4 * t[9:])) / 18]
    np.testing.assert_allclose(r.gradients["A"], want, rtol=1e-10)


def test_the_fit_recovers_each_sources_params_and_the_shared_one(tmp_path):
    write_sources(tmp_path)
    (tmp_path / "g.model").write_text(MODEL)
    m = dsl.load(str(tmp_path / "g.model"), use_cache=False)
    m.fit()
    np.testing.assert_allclose(m.params["A"], [2.0, 3.0], atol=1e-3)
    np.testing.assert_allclose(m.params["w"], [[0.1, 0.02], [-0.2, 0.05]], atol=1e-3)
    assert float(m.params["k"]) == pytest.approx(0.5, abs=1e-4)


@pytest.mark.parametrize("text, words", [
    ('data "a.csv"\ninput x[N] <- x\nparam A = 1 per source\nloss = mean(A * x)\nminimize loss\n',
     "param `A` is `per source`, but the model has 1 data source"),
    ('data "a.csv"\ndata "sub/a.csv"\ninput x[N] <- x\nloss = mean(x)\nminimize loss\n',
     "two data sources are called `a`"),
    ('data "a.csv" as one\ninput x[N] <- x\nloss = mean(x)\nminimize loss\n',
     "`as NAME` names one of several data sources, but this is the only one"),
    ('data "a.csv"\ndata "b.csv"\ninput source[N] <- x\nloss = mean(source)\nminimize loss\n',
     "`source` is the name of the data sources in a global fit"),
    ('data "a.csv"\ndata "b.csv"\ninput x[N] <- x\ninput z[M] <- z\nloss = mean(x) + mean(z)\nminimize loss\n',
     "one size name for the rows, but they use M, N"),
])
def test_global_fit_mistakes(text, words):
    with pytest.raises(SemanticError) as info:
        check(parse(text, "m.model"))
    assert words in info.value.message, info.value.message
    assert info.value.span is not None and info.value.hint


def test_predict_takes_the_params_of_the_source_it_is_told(tmp_path, capsys):
    from dsl.cli import main
    write_sources(tmp_path)
    (tmp_path / "g.model").write_text(MODEL)
    assert main(["run", str(tmp_path / "g.model"), "--out", str(tmp_path / "run"), "--no-cache"]) == 0
    (tmp_path / "new.csv").write_text("t\n0\n")
    capsys.readouterr()
    args = ["predict", str(tmp_path / "g.model"), "--params", str(tmp_path / "run" / "params.npz"),
            "--data", str(tmp_path / "new.csv")]
    assert main(args + ["--source", "b"]) == 0
    assert float(capsys.readouterr().out.split()[1]) == pytest.approx(3.0 - 0.2, abs=1e-3)
    assert main(args) == 2
    assert "say which source the new rows are from" in capsys.readouterr().err


def test_check_reads_every_sources_header(tmp_path, capsys):
    from dsl.cli import main
    write_sources(tmp_path)
    (tmp_path / "b.csv").write_text("t,z\n0,1\n")
    (tmp_path / "g.model").write_text(MODEL)
    assert main(["check", str(tmp_path / "g.model")]) == 1
    err = capsys.readouterr().err
    assert "unknown column `y` in b.csv" in err and "Traceback" not in err
