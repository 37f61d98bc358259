"""Error bars: the standard errors of curve_fit (both sigma rules) and NIST's certified ones, the
inverse Hessian for a likelihood, non-identifiable params named, and what `run` prints and
saves."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize as so
import scipy.stats

import dsl
from dsl.cli import main
from dsl.training.uncertainty import error_bars

ROOT = Path(__file__).resolve().parents[3]
PENDULUM = ROOT / "examples" / "pendulum.model"
MICHAELIS = ROOT / "examples" / "michaelis_menten.model"


def fitted(path, **overrides):
    model = dsl.load(str(path))
    model.fit(**overrides)
    assert model.last_fit.convergence.converged
    bars, cov = error_bars(model.module, model.params, model.dataset().train)
    return model, bars, cov


def test_chi_square_error_bars_are_curve_fits_with_absolute_sigma():
    model, bars, _ = fitted(PENDULUM, optimizer="lm")
    ds = model.dataset().train

    def period(length, g, d_cm):
        return 2 * math.pi * np.sqrt((length + d_cm / 100) / g)
    popt, pcov = so.curve_fit(period, ds["L"], ds["T"], p0=[9.0, 1.0], sigma=ds["sigma"],
                              absolute_sigma=True, xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert "absolute_sigma=True" in bars.rule and bars.dof is None
    assert bars.labels == ["g", "d_cm"]
    np.testing.assert_allclose(bars.values, popt, rtol=1e-7)
    np.testing.assert_allclose(bars.stderr, np.sqrt(np.diag(pcov)), rtol=1e-6)
    r = pcov[0, 1] / math.sqrt(pcov[0, 0] * pcov[1, 1])
    assert bars.correlation[0, 1] == pytest.approx(r, rel=1e-6)
    # a chi-square's intervals are normal: ± 1.96 standard errors
    lo, hi = bars.interval(popt[0], bars.stderr[0])
    assert hi - popt[0] == pytest.approx(scipy.stats.norm.ppf(0.975) * bars.stderr[0])


def test_least_squares_error_bars_are_curve_fits_with_s_squared():
    model, bars, _ = fitted(MICHAELIS)  # no train block: lm
    assert model.last_fit.convergence.iterations > 0
    ds = model.dataset().train
    popt, pcov = so.curve_fit(lambda s, vmax, km: vmax * s / (km + s), ds["S"], ds["v"],
                              p0=[100, 1], xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert "absolute_sigma=False" in bars.rule and bars.dof == 12 - 2
    np.testing.assert_allclose(bars.values, popt, rtol=1e-7)
    np.testing.assert_allclose(bars.stderr, np.sqrt(np.diag(pcov)), rtol=1e-6)
    # Student's t with n - p degrees of freedom, as lmfit and R's confint.default do not, and
    # R's nls summary's t values do
    lo, hi = bars.interval(popt[1], bars.stderr[1])
    assert hi - popt[1] == pytest.approx(scipy.stats.t.ppf(0.975, 10) * bars.stderr[1])


NIST = ROOT / "tests" / "data" / "nist"


def test_standard_errors_match_nists_certified_ones():
    """NIST certifies each param's standard deviation (the s² rule) to 11 digits: 6 of them are
    matched on every problem but Lanczos1, whose residuals (RSS 1.4e-25) are rounding noise."""
    certified = json.loads((NIST / "certified.json").read_text())
    for name, c in certified.items():
        if name == "Lanczos1":
            continue
        model = dsl.load(str(NIST / f"{name}.model"))
        model.fit()
        bars, _ = error_bars(model.module, model.params, model.dataset().train)
        want = np.array([c["stderr"][k] for k in bars.labels])
        np.testing.assert_allclose(bars.stderr, want, rtol=1e-6, err_msg=name)


def write(tmp_path, text, rows):
    (tmp_path / "d.csv").write_text("x,y\n" + "\n".join(f"{a},{b}" for a, b in rows))
    path = tmp_path / "m.model"
    path.write_text('data "d.csv"\ninput x[N] <- x\ninput y[N] <- y\n' + text)
    return path


def test_params_the_data_cannot_separate_are_named(tmp_path, capsys):
    path = write(tmp_path, "param a = 1\nparam b = 2\nparam c = 0\n"
                 "loss = sum((a * b * x + c - y)^2)\nminimize loss\n",
                 [(x, 3 * x + 1 + 0.01 * (-1) ** x) for x in range(8)])
    model, bars, cov = fitted(path)
    assert cov is None and bars.stderr is None
    assert bars.unidentifiable == ["a", "b"]
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "no error bars: the data do not determine a, b separately" in out
    assert "  a  = " in out and "  c  = " in out  # the values are printed all the same
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["params"]["a"]["stderr"] is None and report["correlation"] is None
    assert report["uncertainty"]["not_identifiable"] == ["a", "b"]


def test_another_objective_gets_the_inverse_hessian(tmp_path):
    """A Poisson log-likelihood: the variance of log(rate) is 1 / (n · rate)."""
    counts = [3, 5, 4, 6, 2, 7, 4]
    (tmp_path / "c.csv").write_text("n\n" + "\n".join(map(str, counts)))
    path = tmp_path / "p.model"
    path.write_text('data "c.csv"\ninput n[N] <- n\nparam log_rate = 0\n'
                    "nll = sum(exp(log_rate) - n * log_rate)\nminimize nll\n")
    model, bars, _ = fitted(path)
    assert model.last_fit.convergence.converged
    assert bars.rule.startswith("inverse Hessian")
    rate = np.mean(counts)
    assert bars.stderr[0] == pytest.approx(1 / math.sqrt(len(counts) * rate), rel=1e-8)


def test_a_fit_that_did_not_converge_gets_values_without_error_bars(tmp_path, capsys):
    assert main(["run", str(MICHAELIS), "--optimizer", "adam", "--steps", "20", "--out",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fitted params (no error bars: the fit did not converge (step cap reached), and " \
           "error bars describe a minimum)" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["params"]["Km"]["stderr"] is None and report["correlation"] is None
    assert report["params"]["Km"]["value"] == pytest.approx(1.0, abs=0.1)


def test_run_prints_and_saves_error_bars(tmp_path, capsys):
    assert main(["run", str(MICHAELIS), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fitted params, ± one standard error, 95% interval (Student's t, 10 degrees of " \
           "freedom)" in out
    assert "error bars: s²·(JᵀJ)⁻¹ with s² = RSS/(n - p)" in out
    assert "Vmax  = 212.684   ± 6.95      [197.205, 228.163]" in out
    assert "correlation" in out
    report = json.loads((tmp_path / "report.json").read_text())
    p = report["params"]["Km"]
    assert set(p) == {"value", "stderr", "ci95"} and p["ci95"][0] < p["value"] < p["ci95"][1]
    assert report["correlation"]["Vmax"]["Km"] == report["correlation"]["Km"]["Vmax"]
    assert 0.5 < report["correlation"]["Vmax"]["Km"] < 0.9


ARRHENIUS = """\
data "k.csv"
input T[N] <- T
input k[N] <- k
const R = 8.314
param lnA = 10
param Ea = 30000
khat = exp(lnA - Ea / (R * T))
sse = sum((log(khat) - log(k))^2)
Ea_kJ = Ea / 1000
k300 = exp(lnA - Ea / (R * 300))
minimize sse
report Ea_kJ
report k300
"""


def arrhenius(tmp_path) -> Path:
    T = np.linspace(280, 360, 12)
    k = 1.1e7 * np.exp(-40500 / (8.314 * T)) * np.exp(0.05 * np.sin(np.arange(12) * 2.1))
    rows = "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(T, k))
    (tmp_path / "k.csv").write_text("T,k\n" + rows)
    path = tmp_path / "arr.model"
    path.write_text(ARRHENIUS)
    return path


def test_report_gives_a_derived_scalar_by_the_delta_method(tmp_path, capsys):
    path = arrhenius(tmp_path)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "reported, by the delta method" in out and "  Ea_kJ  = " in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    ea, lna = report["params"]["Ea"], report["params"]["lnA"]
    ea_kj, k300 = report["reports"]["Ea_kJ"], report["reports"]["k300"]
    assert ea_kj["value"] == pytest.approx(ea["value"] / 1000, rel=1e-12)
    assert ea_kj["stderr"] == pytest.approx(ea["stderr"] / 1000, rel=1e-12)
    # k300 = exp(lnA - Ea/(300 R)): its gradient by hand, the covariance from the correlation
    r = report["correlation"]["lnA"]["Ea"]
    cov = np.array([[lna["stderr"] ** 2, r * lna["stderr"] * ea["stderr"]],
                    [r * lna["stderr"] * ea["stderr"], ea["stderr"] ** 2]])
    value = math.exp(lna["value"] - ea["value"] / (300 * 8.314))
    grad = np.array([value, -value / (300 * 8.314)])
    assert k300["value"] == pytest.approx(value, rel=1e-9)
    assert k300["stderr"] == pytest.approx(math.sqrt(grad @ cov @ grad), rel=1e-6)
    assert k300["ci95"][0] < value < k300["ci95"][1]


def test_the_generated_report_gradient_is_exact(tmp_path):
    model = dsl.load(str(arrhenius(tmp_path)))
    params = {"lnA": np.array(16.0), "Ea": np.array(40000.0)}
    value, grads = model.module.report_k300(params, model.dataset().train)
    for name, h in (("lnA", 1e-6), ("Ea", 1e-2)):
        up, down = dict(params), dict(params)
        up[name], down[name] = params[name] + h, params[name] - h
        fd = (model.module.report_k300(up, {})[0] - model.module.report_k300(down, {})[0]) / (2 * h)
        assert float(grads[name]) == pytest.approx(fd, rel=1e-6)


def test_derive_shows_the_propagation_formula(tmp_path, capsys):
    path = arrhenius(tmp_path)
    assert main(["derive", str(path)]) == 0
    out = capsys.readouterr().out
    assert "report k300: by the delta method, with Σ the params' covariance after the fit" in out
    assert "σ²(k300) = ∇k300ᵀ · Σ · ∇k300,  ∇k300 = (∂k300/∂lnA, ∂k300/∂Ea)" in out
    assert ("σ²(k300) = (∂k300/∂lnA)²·Var(lnA) + 2·∂k300/∂lnA·∂k300/∂Ea·Cov(lnA, Ea) + "
            "(∂k300/∂Ea)²·Var(Ea)") in out
    assert "∂k300/∂lnA = k300" in out and "∂Ea_kJ/∂Ea = 1/1000" in out
    assert main(["derive", str(path), "--latex"]) == 0
    assert r"\sigma^2_{k_{300}} &= \sum_{i,j}" in capsys.readouterr().out


@pytest.mark.parametrize("line, where, words", [
    ("report khat", 12, "`report` gives a scalar ± σ, but `khat` is [N]"),
    ("report nope", 12, "unknown name `nope`"),
    ("report k300\nreport k300", 13, "`k300` is reported twice"),
])
def test_report_mistakes_are_errors_with_a_place(tmp_path, capsys, line, where, words):
    path = arrhenius(tmp_path)
    path.write_text(ARRHENIUS.replace("report Ea_kJ\nreport k300\n", line + "\n"))
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"arr.model:{where}:8: error: {words}" in err and "^" in err
