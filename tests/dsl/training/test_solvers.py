"""The scipy solvers (lm, newton, lbfgs), the default optimizer, and the convergence every run
reports: converged or not, why, iterations, evaluations, the final gradient, and a warning for a
run that stopped at its cap far from a minimum."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize as so

import dsl
from compiler.errors import SemanticError, UsageError
from dsl.cli import main
from dsl.training.config import with_overrides
from dsl.training.train import choose_optimizer, fit

ROOT = Path(__file__).resolve().parents[3]
PENDULUM = ROOT / "examples" / "pendulum.model"


def write(tmp_path, text: str, name: str = "m.model") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def pendulum_data(model):
    ds = model.dataset()
    return ds.train["L"], ds.train["T"], ds.train["sigma"]


def pendulum_least_squares(model):
    """The pendulum's minimum by scipy alone: curve_fit on the training rows."""
    L, T, sigma = pendulum_data(model)

    def period(length, g, d_cm):
        return 2 * math.pi * np.sqrt((length + d_cm / 100) / g)
    popt, pcov = so.curve_fit(period, L, T, p0=[9.0, 1.0], sigma=sigma, absolute_sigma=True,
                              xtol=1e-14, ftol=1e-14, gtol=1e-14)
    return popt, pcov


@pytest.mark.parametrize("optimizer", ["lm", "newton", "lbfgs"])
def test_solver_reaches_the_least_squares_minimum(optimizer):
    model = dsl.load(str(PENDULUM))
    model.fit(optimizer=optimizer)
    popt, _ = pendulum_least_squares(model)
    assert model.params["g"] == pytest.approx(popt[0], rel=1e-6)
    assert model.params["d_cm"] == pytest.approx(popt[1], rel=1e-6)
    conv = model.last_fit.convergence
    assert conv.converged and conv.reason == "tolerance met"
    assert 0 < conv.iterations < 200 and conv.evaluations["objective"] >= conv.iterations
    assert conv.gradient_norm < 1e-4
    # a history row per iteration, the last at the final params
    assert model.last_fit.history.step[-1] == conv.iterations == model.last_fit.steps
    assert model.last_fit.history.train_loss[-1] == pytest.approx(
        float(model.module.loss(model.params, model.dataset().train)))


def test_steps_cap_the_iterations_and_say_so():
    model = dsl.load(str(PENDULUM))
    model.fit(optimizer="lbfgs", steps=3)
    conv = model.last_fit.convergence
    assert not conv.converged and conv.reason == "step cap reached" and conv.iterations == 3


def test_lm_at_its_cap_says_so_in_the_report_and_warns_nothing_else():
    """MINPACK stopped by `steps`: the convergence says so; scipy's own RuntimeWarning (its
    words, on stderr, in the middle of the run's output) is not let through."""
    model = dsl.load(str(PENDULUM))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(optimizer="lm", steps=3)
    conv = model.last_fit.convergence
    assert not conv.converged and conv.reason == "step cap reached"
    assert conv.evaluations["objective"] == 3


def test_solvers_take_tolerances_not_a_learning_rate(tmp_path):
    base = ("input x[N]\nparam k = 1\nloss = sum((k * x - 1)^2)\nminimize loss\n"
            "train {\n optimizer %s\n}\n")
    checked = dsl.load(str(write(tmp_path, base % "lbfgs(gtol = 1e-6)"))).checked
    assert checked.train.optimizer.args == {"ftol": 1e-13, "gtol": 1e-6}
    with pytest.raises(SemanticError, match="gtol must be in"):
        dsl.load(str(write(tmp_path, base % "lbfgs(gtol = 2)")))
    with pytest.raises(SemanticError, match="has no argument `lr`"):
        dsl.load(str(write(tmp_path, base % "lm(lr = 0.1)")))
    with pytest.raises(UsageError, match="has no learning rate"):
        with_overrides(checked.train, lr=0.1)


NLL = """\
# a Poisson rate by maximum likelihood: not a sum of squares
data "counts.csv"
input n[N] <- n
param log_rate = 0
nll = sum(exp(log_rate) - n * log_rate)
minimize nll
"""


def test_the_default_optimizer_follows_the_objective_and_the_size(tmp_path):
    (tmp_path / "counts.csv").write_text("n\n" + "\n".join(str(v) for v in [3, 5, 4, 6, 2]))
    model = dsl.load(str(write(tmp_path, NLL)))
    assert model.checked.train.optimizer is None
    assert choose_optimizer(model.checked.train, model.module, model.params).optimizer.name \
        == "lbfgs"
    model.fit()
    assert model.last_fit.convergence.converged
    assert float(np.exp(model.params["log_rate"])) == pytest.approx(4.0, rel=1e-7)
    big = dsl.load(str(write(tmp_path, NLL.replace("param log_rate = 0", "param w[1001] = 0")
                             .replace("log_rate", "sum(w)"), "big.model")))
    assert choose_optimizer(big.checked.train, big.module, big.params).optimizer.name == "gd"


WIDE = """\
# a least-squares fit with more param elements (4) than rows (3)
data "wide.csv"
input x[N] <- x
input y[N] <- y
param w[4] = 0.5
loss = sum((w[0] + w[1] * x + w[2] * x^2 + w[3] * x^3 - y)^2)
minimize loss
"""


def test_the_default_optimizer_is_lbfgs_where_lm_has_fewer_residuals_than_params(tmp_path):
    (tmp_path / "wide.csv").write_text("x,y\n0,1\n1,2\n2,5\n")
    model = dsl.load(str(write(tmp_path, WIDE)))
    assert model.fit_config().optimizer.name == "lbfgs"
    assert choose_optimizer(model.checked.train, model.module, model.params).optimizer.name == "lm"
    with pytest.raises(UsageError, match="unknown dtype `foo`"):  # counted before it is checked
        model.fit(dtype="foo")
    model.fit()
    assert model.last_fit.convergence.converged


@pytest.mark.parametrize("model, optimizer, message", [
    (WIDE, "lm", "`lm` needs at least as many residuals as param elements: 3 residuals, 4 param "
                 "elements"),
    (NLL, "lm", "`lm` fits a sum or mean of squares, and the objective `nll` is not one"),
    (NLL.replace("param log_rate = 0", "param w[1001] = 0").replace("log_rate", "sum(w)"),
     "newton", "`newton` needs the exact Hessian, and this model has none: 1,001 param "
               "elements: the Hessian is generated for at most 1,000"),
])
def test_a_solver_that_cannot_fit_the_model_is_refused_where_it_is_named(
        tmp_path, capsys, model, optimizer, message):
    """Before any fit, with the `optimizer` line's span (or the flag), never scipy's error."""
    (tmp_path / "wide.csv").write_text("x,y\n0,1\n1,2\n2,5\n")
    (tmp_path / "counts.csv").write_text("n\n3\n5\n4\n")
    plain = write(tmp_path, model)
    code, out, err = run(["run", plain, "--optimizer", optimizer, "--out", tmp_path / "a"], capsys)
    assert (code, out) == (2, "") and f"error: --optimizer {optimizer}: {message}" in err
    assert "internal error" not in err and "Traceback" not in err
    named = write(tmp_path, model + f"train {{\n    optimizer {optimizer}()\n}}\n", "named.model")
    code, out, err = run(["run", named, "--out", tmp_path / "b"], capsys)
    line = model.count("\n") + 2
    assert (code, out) == (1, "") and f"named.model:{line}:5: error: {message}" in err
    assert "hint: use lbfgs" in err and "internal error" not in err


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_reports_convergence_and_saves_it(tmp_path, capsys):
    code, out, err = run(["run", PENDULUM, "--optimizer", "lbfgs", "--out", tmp_path], capsys)
    assert code == 0, err
    assert "at most 3000 iterations" in out
    assert "converged      " in out and "yes (tolerance met)" in out
    assert "gradient norm" in out and "warning" not in err
    fit = json.loads((tmp_path / "report.json").read_text())["fit"]
    assert fit["converged"] is True and fit["reason"] == "tolerance met"
    assert set(fit) >= {"converged", "reason", "iterations", "evaluations", "gradient_norm"}
    assert fit["evaluations"]["gradient"] == fit["evaluations"]["objective"] > 0


def test_a_run_stopped_far_from_a_minimum_warns_with_figures_and_advice(tmp_path, capsys):
    code, out, err = run(["run", PENDULUM, "--steps", "50", "--out", tmp_path], capsys)
    assert code == 0
    assert "no (step cap reached)" in out
    assert "warning: adam stopped at its step cap (50 steps) with the gradient still large" in err
    assert "relative gradient" in err and "hint: try `optimizer lm()`" in err
    fit = json.loads((tmp_path / "report.json").read_text())["fit"]
    assert fit["converged"] is False and fit["reason"] == "step cap reached"
    assert fit["iterations"] == 50 and fit["evaluations"]["gradient"] == 50


LINE = """\
data "line.csv"
input x[N] <- x
input y[N] <- y
param a = 1
param b = 0
loss = sum((a * x + b - y)^2)
minimize loss
"""


@pytest.mark.parametrize("optimizer, steps", [("lm", None), ("newton", None), ("lbfgs", None),
                                              ("gd", 3000), ("sgd", 3000), ("adam", 3000)])
def test_every_optimizer_honours_bounds(tmp_path, optimizer, steps):
    """y = 2x + 1 exactly, a bounded to [0, 1.5]: the constrained least squares has a = 1.5
    and b = 1 + 0.5·mean(x) = 1.25. Bounds reach the solvers as the module's BOUNDS."""
    xs = np.linspace(0, 1, 11)
    rows = "".join(f"{float(x)!r},{float(2 * x + 1)!r}\n" for x in xs)
    (tmp_path / "line.csv").write_text("x,y\n" + rows)
    model = dsl.load(str(write(tmp_path, LINE)))
    model.module.BOUNDS = {"a": (0.0, 1.5), "b": (-math.inf, math.inf)}
    overrides = {"optimizer": optimizer} | ({"steps": steps, "lr": 0.05} if steps else {})
    seen = []
    model.fit(progress=lambda step, total, loss: seen.append(float(model.params["a"])),
              **overrides)
    assert float(model.params["a"]) == pytest.approx(1.5, abs=1e-6)
    assert float(model.params["b"]) == pytest.approx(1.25, abs=1e-3 if steps else 1e-6)
    assert max(seen) <= 1.5  # never outside, at any logged point
    if not steps:
        assert model.last_fit.convergence.converged, model.last_fit.convergence


def test_a_bound_in_the_model_reaches_lm_and_withholds_error_bars_when_active(tmp_path, capsys):
    xs = np.linspace(0, 1, 11)
    rows = "".join(f"{float(x)!r},{float(2 * x + 1 + 0.01 * (-1) ** i)!r}\n"
                   for i, x in enumerate(xs))
    (tmp_path / "line.csv").write_text("x,y\n" + rows)
    path = write(tmp_path, LINE.replace("param a = 1", "param a = 1 in [0, 1.5]"))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["optimizer"].startswith("lm(") and report["fit"]["converged"]
    assert report["params"]["a"]["value"] == pytest.approx(1.5)
    assert "no error bars: a is at a bound" in out and report["params"]["b"]["stderr"] is None


NIST = ROOT / "tests" / "data" / "nist"


def nist_fit(monkeypatch, name: str, start: dict[str, float]):
    """Fit a NIST model from `start` with the default optimizer, recording every point at
    which the generated residuals and Jacobian are evaluated."""
    model = dsl.load(str(NIST / f"{name}.model"))
    points = {"residuals": [], "jacobian": []}
    for kind in points:
        def recording(params, inputs, kind=kind, real=getattr(model.module, kind)):
            points[kind].append(tuple(float(params[n]) for n in model.module.PARAMS))
            return real(params, inputs)
        monkeypatch.setattr(model.module, kind, recording)
    cfg = choose_optimizer(model.checked.train, model.module, model.params)
    ds = model.dataset()
    model.params = {k: np.array(float(v)) for k, v in start.items()}
    model.last_fit = fit(model.module, model.params, ds.train, ds.test, cfg)
    return model, points


def test_lm_evaluates_each_point_once(monkeypatch):
    """leastsq evaluates the start once to check its shapes, then MINPACK evaluates it again:
    the solver keeps the latest residuals and Jacobian, so no point costs a second evaluation,
    and the counts reported are the evaluations made."""
    certified = json.loads((NIST / "certified.json").read_text())["Misra1a"]
    model, points = nist_fit(monkeypatch, "Misra1a", certified["start1"])
    conv = model.last_fit.convergence
    assert conv.converged and len(points["residuals"]) > 5
    for kind in ("residuals", "jacobian"):
        assert len(set(points[kind])) == len(points[kind]), kind
    assert conv.evaluations["objective"] == len(points["residuals"])
    assert conv.evaluations["jacobian"] == len(points["jacobian"])


def test_lm_first_step_keeps_boxbod_off_its_plateau(monkeypatch):
    """From NIST's start 1, MINPACK's usual first step (100 times the scaled params) sends
    BoxBOD's b2 to where exp(-b2·x) has vanished and b2 no longer moves the residuals. A first
    step of the params' own size reaches the certified values in one Levenberg-Marquardt fit,
    without the trf refit."""
    certified = json.loads((NIST / "certified.json").read_text())["BoxBOD"]
    model, points = nist_fit(monkeypatch, "BoxBOD", certified["start1"])
    conv = model.last_fit.convergence
    assert conv.converged and "fitted again" not in conv.detail
    for k, want in certified["certified"].items():
        assert float(model.params[k]) == pytest.approx(want, rel=1e-6)
    assert len(points["residuals"]) < 60


def test_lm_keeps_its_fit_when_the_trf_refit_meets_a_jacobian_that_is_not_finite(monkeypatch):
    """Rat43 from a start where lm ends on a plateau and trf, fitting again, reaches values
    whose Jacobian is not finite (least_squares raises): the lm fit stands, no error."""
    start = {"b1": 204.71629338125928, "b2": -131.07319701787563, "b3": 0.04003692667006907,
             "b4": 9.960545081853889}
    model, _ = nist_fit(monkeypatch, "Rat43", start)
    conv = model.last_fit.convergence
    assert "fitted again with 'trf'; kept the lm fit" in conv.detail
    assert all(np.isfinite(float(v)) for v in model.params.values())


def test_a_solver_that_refuses_values_that_are_not_finite_keeps_the_best_params(tmp_path):
    """Rat43 with a bound (so trf) from a start where trf steps to a Jacobian that is not
    finite: least_squares raises, and the run ends `diverged` with the best params it saw,
    not with an internal error."""
    (tmp_path / "Rat43.csv").write_bytes((NIST / "Rat43.csv").read_bytes())
    path = write(tmp_path, """data "Rat43.csv"
input x[N] <- x
input y[N] <- y
param b1 = 204.71629338125928 in [0, inf)
param b2 = -131.07319701787563
param b3 = 0.04003692667006907
param b4 = 9.960545081853889
f = b1 / (1 + exp(b2 - b3*x))^(1/b4)
rss = sum((f - y)^2)
minimize rss
""")
    model = dsl.load(str(path))
    model.fit()
    conv = model.last_fit.convergence
    assert conv.reason == "diverged" and not conv.converged and "not finite" in conv.detail
    train = model.dataset().train
    start = {"b1": 204.71629338125928, "b2": -131.07319701787563, "b3": 0.04003692667006907,
             "b4": 9.960545081853889}
    with np.errstate(all="ignore"):
        before = float(model.module.loss({k: np.array(v) for k, v in start.items()}, train))
        assert float(model.module.loss(model.params, train)) < before
