"""Every example under examples/ checks, trains briefly with `python -m dsl run`, and gets a
sensible result; the deliberately broken ones under examples/bad/ are refused as documented.

Runs happen in a temporary copy of examples/ so that nothing (runs/, caches) is left in the
tree. The heavier examples are run with a `--steps` override to stay fast; the figures of full
runs are in docs/TUTORIAL.md (and checked by tests/test_docs.py).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dsl.front.check import check
from dsl.front.build import parse, read_source
from dsl.training.config import configure
from tests.no_plots import without_matplotlib

ROOT = Path(__file__).resolve().parent.parent
# One BLAS thread (as the benchmark anchors use) unless the caller says otherwise: on a busy
# 2-core machine, threaded BLAS can make the MNIST runs many times slower; results are the same.
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("examples")
    shutil.copytree(EXAMPLES, folder / "examples",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # A short run logs at every step, and on MNIST each log evaluates the loss over all 5000
    # images: log every 50 steps instead, in the copy only.
    mnist = folder / "examples" / "mnist_mlp.model"
    text = mnist.read_text(encoding="utf-8")
    assert "train {" in text and "log every" not in text
    mnist.write_text(text.replace("train {", "train {\n    log every 50", 1), encoding="utf-8")
    return folder


def dsl(folder: Path, *args: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [without_matplotlib(folder), str(ROOT),
                                         os.environ.get("PYTHONPATH")]))
    env = {**ONE_THREAD, **os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", "dsl", *args], cwd=folder, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=300)


def run(folder: Path, name: str, *overrides: str) -> tuple[dict, dict]:
    """Train examples/NAME.model; its report.json and params.npz."""
    out = folder / "runs" / name
    r = dsl(folder, "run", f"examples/{name}.model", "--out", str(out), *overrides)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((out / "report.json").read_text())
    with np.load(out / "params.npz") as z:
        params = {k: z[k] for k in z.files}
    return report, params


# What a brief run of each trainable example must reach (overrides keep each under a few seconds).
def check_boston_rm(report, params):
    assert report["r2"] > 0.5  # rooms explain about half the price
    assert report["test_loss"] < report["baselines"]["mean"] / 2
    assert 5 < float(params["k"]) < 12  # dollars (in $1000s) per extra room


def check_boston_rm_random(report, params):
    assert report["steps"] == 1000
    assert report["test_loss"] < report["baselines"]["mean"]


def check_boston_mlp(report, params):
    assert report["test_loss"] < report["baselines"]["least_squares"]
    assert report["r2"] > 0.75


def check_iris_softmax(report, params):
    assert report["accuracy"] >= 0.9
    assert report["baseline_metric"] == "test accuracy"


def check_mnist_mlp(report, params):
    assert report["accuracy"] > 0.8  # after 150 steps; a full run (2000) reaches about 0.92
    assert report["accuracy"] > report["baselines"]["least_squares"] - 0.05


def check_pendulum(report, params):
    assert 0.5 < report["train_loss"] < 1.5  # chi-square per point near 1: as good as the stopwatch
    assert abs(float(params["g"]) - 9.81) < 0.1
    assert abs(float(params["d_cm"]) - 2.1) < 0.5


def check_michaelis_menten(report, params):
    # no train block: lm by default, converged, with error bars (R's nls: 212.68 ± 6.947,
    # 0.06412 ± 0.008281)
    assert report["optimizer"].startswith("lm(") and report["fit"]["converged"]
    assert report["params"]["Vmax"]["value"] == pytest.approx(212.68, abs=0.01)
    assert report["params"]["Vmax"]["stderr"] == pytest.approx(6.947, abs=0.001)
    assert report["params"]["Km"]["stderr"] == pytest.approx(0.008281, abs=1e-6)


def check_arrhenius(report, params):
    # lm by default; A and Ea as made (1.2e7, 40.5 kJ/mol) within their error bars
    assert report["fit"]["converged"] and report["uncertainty"]["dof"] == 14
    a, ea = report["params"]["A"], report["params"]["Ea"]
    assert abs(a["value"] - 1.2e7) < 2 * a["stderr"] and abs(ea["value"] - 40500) < 2 * ea["stderr"]
    assert report["correlation"]["A"]["Ea"] > 0.99
    assert report["reports"]["Ea_kJ"]["stderr"] == pytest.approx(ea["stderr"] / 1000)


def check_linear_plateau(report, params):
    assert report["r2"] > 0.9
    assert abs(float(params["nc"]) - 1.4) < 0.15  # the critical rate, 140 kg/ha
    assert abs(float(params["a"]) - 4.0) < 0.4 and abs(float(params["b"]) - 3.0) < 0.5


def check_boston_curved(report, params):
    assert report["test_loss"] < report["baselines"]["least_squares"]  # the curves pay off
    assert report["r2"] > 0.8
    assert float(params["c"][1]) > 0  # prices level off as LSTAT grows


def check_growth_trial(report, params):
    assert np.allclose(params["height"], [30, 36, 41], atol=1.5)  # control, nitrogen, N+P
    assert abs(float(params["slope"]) - 0.8) < 0.3


def check_arrhenius_global(report, params):
    assert np.allclose(params["A"], [1.00, 0.80, 1.20], atol=0.03)  # each run's own
    assert abs(float(params["lnk"]) + 3.00) < 0.05 and abs(float(params["Ea"]) - 60) < 3  # shared
    assert [s["name"] for s in report["sources"]] == ["T300", "T320", "T340"]
    assert set(report["shared_params"]) == {"lnk", "Ea"}


TRAINED = {
    "boston_rm": ((), check_boston_rm),
    "boston_rm_random": ((), check_boston_rm_random),
    "boston_mlp": (("--steps", "4000"), check_boston_mlp),
    "iris_softmax": ((), check_iris_softmax),
    "mnist_mlp": (("--steps", "150"), check_mnist_mlp),
    "pendulum": ((), check_pendulum),
    "michaelis_menten": ((), check_michaelis_menten),
    "arrhenius": ((), check_arrhenius),
    "linear_plateau": ((), check_linear_plateau),
    "boston_curved": ((), check_boston_curved),
    "growth_trial": ((), check_growth_trial),
    "arrhenius_global": ((), check_arrhenius_global),
}
NOT_TRAINED = {"seed_graph"}  # no data: for derive, graph and eval (tested below)


def test_every_example_is_covered():
    names = {p.stem for p in EXAMPLES.glob("*.model")}
    assert names == set(TRAINED) | NOT_TRAINED, "add a check for each new example here"


@pytest.mark.parametrize("name", sorted(set(TRAINED) | NOT_TRAINED))
def test_example_checks_without_warnings(name):
    path = EXAMPLES / f"{name}.model"
    checked = configure(check(parse(read_source(str(path)), str(path))))  # raises on any error
    assert not checked.warnings, [w.message for w in checked.warnings]
    assert checked.objective is not None


@pytest.fixture(scope="module")
def trained(copy):
    """Each example's brief run, done once: name -> (report, params)."""
    cache: dict[str, tuple[dict, dict]] = {}

    def get(name: str) -> tuple[dict, dict]:
        if name not in cache:
            cache[name] = run(copy, name, *TRAINED[name][0])
        return cache[name]
    return get


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_example_trains_to_a_sensible_result(name, trained):
    report, params = trained(name)
    assert not report.get("diverged") and np.isfinite(report["train_loss"])
    TRAINED[name][1](report, params)


def test_gradient_descent_beats_random_search(trained):
    assert trained("boston_rm")[0]["train_loss"] < trained("boston_rm_random")[0]["train_loss"]


def test_seed_graph_eval_follows_the_chain_rule(copy):
    r = dsl(copy, "eval", "examples/seed_graph.model", "--set", "x=3", "--set", "y=0.5", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    v, g = out["values"], out["gradients"]
    chain = 2 * (v["L2"] - v["y"]) * v["k2"] * v["s"] * (1 - v["s"]) * v["x"]
    assert out["objective"] == "loss"
    assert g["k1"] == pytest.approx(chain, rel=1e-12)


def test_seed_graph_derive(copy):
    r = dsl(copy, "derive", "examples/seed_graph.model", "--wrt", "k1")
    assert r.returncode == 0, r.stderr
    assert "∂loss/∂k1 = ∂loss/∂L2 · ∂L2/∂s · ∂s/∂L1 · ∂L1/∂k1" in r.stdout


def test_seed_graph_graph(copy):
    r = dsl(copy, "graph", "examples/seed_graph.model")
    assert r.returncode == 0, r.stderr
    assert "digraph" in r.stdout and "k1" in r.stdout


def test_the_broadcasting_bug_is_refused(copy):
    for command in ("check", "run"):
        r = dsl(copy, command, "examples/bad/broadcast.model")
        assert r.returncode == 1, r.stdout + r.stderr
        assert "shape mismatch in `-`" in r.stderr
        assert "numpy would broadcast these to [N, N]" in r.stderr
        assert "Traceback" not in r.stderr


def test_predict_on_new_rows(copy, trained):
    trained("boston_mlp")
    r = dsl(copy, "predict", "examples/boston_mlp.model", "--params",
            str(copy / "runs" / "boston_mlp" / "params.npz"), "--data",
            "examples/data/boston_new.csv")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == "yhat" and len(lines) == 4
    # rows 171, 288 and 502 of boston.csv, whose prices are 17.4, 23.2 and 22.4
    assert np.allclose([float(x) for x in lines[1:]], [17.4, 23.2, 22.4], atol=8)


@pytest.mark.parametrize("name, files", [
    ("pendulum", ["pendulum"]), ("linear_plateau", ["linear_plateau"]),
    ("growth_trial", ["growth_trial"]), ("decay", ["decay_300K", "decay_320K", "decay_340K"])])
def test_simulated_data_is_reproducible(tmp_path, name, files):
    shutil.copy(EXAMPLES / "data" / f"make_{name}.py", tmp_path)
    r = subprocess.run([sys.executable, str(tmp_path / f"make_{name}.py")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for f in files:
        assert (tmp_path / f"{f}.csv").read_bytes() == (EXAMPLES / "data" / f"{f}.csv").read_bytes()


def test_data_lists_the_growth_trials_text_columns(copy):
    r = dsl(copy, "data", "examples/data/growth_trial.csv")
    assert r.returncode == 0, r.stderr
    assert "treatment 3 distinct: 'control', 'nitrogen', 'nitrogen+phosphorus'" in r.stdout


def test_growth_trial_predicts_new_plots_by_treatment_name(copy, trained, tmp_path):
    trained("growth_trial")
    new = tmp_path / "new.csv"
    new.write_text("plot,treatment,light\nX1,nitrogen+phosphorus,20\nX2,control,20\n")
    r = dsl(copy, "predict", "examples/growth_trial.model", "--params",
            str(copy / "runs" / "growth_trial" / "params.npz"), "--data", str(new))
    assert r.returncode == 0, r.stderr
    assert np.allclose([float(x) for x in r.stdout.split()[1:]], [41, 30], atol=1.5)
    new.write_text("plot,treatment,light\nX3,potash,20\n")
    r = dsl(copy, "predict", "examples/growth_trial.model", "--params",
            str(copy / "runs" / "growth_trial" / "params.npz"), "--data", str(new))
    assert r.returncode == 1 and "has class potash in column treatment" in r.stderr


def test_a_global_fit_reports_each_source_then_the_shared_params(copy):
    out = copy / "runs" / "arrhenius_printed"
    r = dsl(copy, "run", "examples/arrhenius_global.model", "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.split()[:3] == ["source", "rows", "train"])
    assert [ln.split()[0] for ln in lines[head + 1:head + 4]] == ["T300", "T320", "T340"]
    assert lines[head + 4].startswith("  shared: lnk = ")
