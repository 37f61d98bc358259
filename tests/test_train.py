"""Training: every optimizer, random search, seeds, `run` overrides and artifacts, divergence,
`predict` from saved files, and bad data through `run` (golden messages).

Small linear regressions on CSVs generated here, so that every test takes a fraction of a
second. The golden data errors live in `tests/golden/bad/data/` (NAME.model, its CSV, NAME.err);
rewrite them with DSL_UPDATE_GOLDEN=1 and review the diff.
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import dsl
from compiler.errors import DataError
from dsl.views import plots
from dsl.cli import main
from dsl.training.config import make_optimizer
from dsl.training.checkpoint import load_params
from dsl.training.runtime import init_params
from dsl.training.train import fit
from tests.golden_util import compare

ROOT = Path(__file__).resolve().parents[1]
BAD_DATA = ROOT / "tests" / "golden" / "bad" / "data"

LINEAR = """\
# y = 2 x1 - 3 x2 + 1 + noise
data "lin.csv" split 0.75 seed 1

input X[N, 2] <- x1..x2 standardize
input y[N, 1] <- y

param W[2, 1] ~ normal(0, 0.1)
param b[1]    = 0

yhat = X @ W + b
loss = mean((yhat - y)^2)

minimize loss
predict yhat

train {
    optimizer sgd(lr = 0.05)
    batch 16
    epochs 20
    seed 0
}
"""

RANDOM = """\
# y = 0.3 x - 0.5 exactly: the optimum is a = 0.3, b = -0.5
data "line.csv"
input x[N] <- x
input y[N] <- y
param a ~ uniform(-1, 1)
param b ~ uniform(-1, 1)
loss = mean((a * x + b - y)^2)
minimize loss
train {
    optimizer random_search(trials = 3000, low = -1, high = 1)
    seed 0
}
"""


def write_csv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([[repr(float(v)) for v in r] for r in rows])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(2, 3, 64), rng.normal(-1, 0.5, 64)
    y = 2 * x1 - 3 * x2 + 1 + 0.1 * rng.normal(size=64)
    write_csv(d / "lin.csv", ["x1", "x2", "y"], zip(x1, x2, y))
    (d / "lin.model").write_text(LINEAR)
    x = rng.uniform(-2, 2, 40)
    write_csv(d / "line.csv", ["x", "y"], zip(x, 0.3 * x - 0.5))
    (d / "random.model").write_text(RANDOM)
    new = np.column_stack([rng.normal(2, 3, 7), rng.normal(-1, 0.5, 7)])
    write_csv(d / "new.csv", ["x1", "x2"], new)  # no `y`: predict needs only what it reads
    return d


@pytest.fixture(scope="module")
def lin(folder):
    return dsl.load(str(folder / "lin.model"))


@pytest.fixture
def no_plots(monkeypatch):
    """Plots are matplotlib's business and slow; most tests do not need them."""
    monkeypatch.setattr(plots, "available", lambda: False)


def train(model, optimizer: str, args: dict, **settings):
    """Train a fresh seeded start of `model` with the given optimizer and settings."""
    opt = make_optimizer(optimizer, [(k, v, None) for k, v in args.items()], None)
    cfg = replace(model.checked.train, optimizer=opt, **settings)
    params = init_params(model.checked, cfg.seed, cfg.dtype)
    ds = model.dataset(cfg.dtype)
    start = float(model.module.loss(params, ds.train))
    result = fit(model.module, params, ds.train, ds.test, cfg)
    return start, float(model.module.loss(params, ds.train)), result, params


def run_cli(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ---- optimizers ------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer, args, settings", [
    ("gd", {"lr": 0.1}, {"steps": 100, "epochs": None}),
    ("sgd", {"lr": 0.05}, {"batch": 8, "epochs": 10}),
    ("sgd", {"lr": 0.01, "momentum": 0.9}, {"batch": 8, "epochs": 10}),
    ("adam", {"lr": 0.1}, {"batch": 16, "steps": 300, "epochs": None}),
])
def test_each_optimizer_lowers_the_loss(lin, optimizer, args, settings):
    start, end, result, params = train(lin, optimizer, args, **settings)
    assert result.divergence is None
    assert end < 0.01 * start and end < 0.1  # the noise is 0.1, so the best MSE is about 0.01
    h = result.history
    assert h.step[0] == 0 and h.step[-1] == result.steps
    assert h.train_loss[0] == pytest.approx(start) and h.train_loss[-1] == pytest.approx(end)
    assert len(h.test_loss) == len(h.step) and h.test_loss[-1] < h.test_loss[0]


def test_momentum_changes_the_path(lin):
    _, _, plain, _ = train(lin, "sgd", {"lr": 0.01}, batch=8, epochs=3)
    _, _, heavy, _ = train(lin, "sgd", {"lr": 0.01, "momentum": 0.9}, batch=8, epochs=3)
    assert plain.history.train_loss[-1] != heavy.history.train_loss[-1]


def test_random_search_finds_a_known_optimum(folder):
    m = dsl.load(str(folder / "random.model"))
    ds = m.dataset()
    params = init_params(m.checked, 0)
    result = fit(m.module, params, ds.train, ds.test, m.checked.train)
    assert result.steps == 3000
    assert float(params["a"]) == pytest.approx(0.3, abs=0.05)
    assert float(params["b"]) == pytest.approx(-0.5, abs=0.05)
    losses = result.history.train_loss
    assert all(b <= a for a, b in zip(losses, losses[1:]))  # the best so far never worsens


# ---- seeds -----------------------------------------------------------------------------------

def test_same_seed_same_history_bit_for_bit(lin):
    runs = [train(lin, "sgd", {"lr": 0.05}, batch=8, epochs=4, seed=s) for s in (5, 5, 6)]
    (_, _, a, pa), (_, _, b, pb), (_, _, c, pc) = runs
    assert a.history.train_loss == b.history.train_loss
    assert a.history.test_loss == b.history.test_loss
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    assert a.history.train_loss != c.history.train_loss
    assert not np.array_equal(pa["W"], pc["W"])


def test_same_seed_same_history_through_run(folder, tmp_path, capsys, no_plots):
    def history(out, seed):
        rc, _, err = run_cli(["run", folder / "lin.model", "--seed", seed, "--epochs", 3,
                              "--out", out], capsys)
        assert rc == 0, err
        with open(out / "history.csv") as f:
            return [(r["step"], r["train_loss"], r["test_loss"]) for r in csv.DictReader(f)]
    one, two, other = (history(tmp_path / n, s) for n, s in (("a", 1), ("b", 1), ("c", 2)))
    assert one == two and one != other
    assert np.array_equal(np.load(tmp_path / "a" / "params.npz")["W"],
                          np.load(tmp_path / "b" / "params.npz")["W"])


# ---- run: overrides and artifacts --------------------------------------------------------------

def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_run_writes_the_artifacts(folder, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["run", folder / "lin.model", "--out", out], capsys)
    assert rc == 0 and "Traceback" not in err
    names = {p.name for p in out.iterdir()}
    assert {"params.npz", "history.csv", "report.json", "lin_compiled.py"} <= names
    if plots.available():
        assert {"loss.png", "predicted.png", "residuals.png"} <= names
    r = report(out)
    for key in ("train_loss", "test_loss", "rmse", "r2", "steps", "seconds", "us_per_step",
                "compile_seconds", "baselines"):
        assert key in r, key
    assert r["steps"] == 20 * 3  # 48 training rows in batches of 16, 20 epochs
    assert r["train_loss"] < 0.1 and r["r2"] > 0.99
    assert r["rmse"] == pytest.approx(math.sqrt(r["test_loss"]), rel=1e-9)
    assert set(r["baselines"]) >= {"mean", "least_squares", "knn3"}
    assert r["baselines"]["least_squares"] < r["baselines"]["mean"]
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "epoch", "train_loss", "test_loss", "seconds"]
    assert int(rows[-1]["step"]) == 60 and float(rows[-1]["train_loss"]) == r["train_loss"]
    saved = np.load(out / "params.npz")
    assert saved["W"].shape == (2, 1) and saved["b"].shape == (1,)
    assert "train loss" in stdout and "baseline" in stdout


@pytest.mark.parametrize("flags, steps, optimizer, dtype", [
    (["--steps", 25, "--lr", 0.05, "--optimizer", "adam", "--batch", 8, "--dtype", "float32"],
     25, "adam(lr = 0.05,", "float32"),
    (["--epochs", 4, "--batch", 12], 16, "sgd(lr = 0.05,", "float64"),
    (["--epochs", 7, "--optimizer", "gd", "--lr", 0.2], 7, "gd(lr = 0.2)", "float64"),
])
def test_run_overrides(folder, tmp_path, capsys, no_plots, flags, steps, optimizer, dtype):
    rc, out, err = run_cli(["run", folder / "lin.model", *flags, "--out", tmp_path], capsys)
    assert rc == 0, err
    r = report(tmp_path)
    assert r["steps"] == steps
    assert r["optimizer"].startswith(optimizer)
    assert f"{steps} steps, {dtype}" in out
    saved = np.load(tmp_path / "params.npz")
    assert saved["W"].dtype == np.dtype(dtype)
    with open(tmp_path / "history.csv") as f:
        assert int(list(csv.DictReader(f))[-1]["step"]) == steps


def test_divergence_names_the_step_and_node_and_keeps_finite_params(folder, tmp_path, capsys,
                                                                  no_plots):
    model = folder / "lin.model"
    rc, out, err = run_cli(["run", model, "--optimizer", "gd", "--lr", 1e6, "--steps", 200,
                            "--out", tmp_path], capsys)
    assert rc == 1 and "Traceback" not in err
    assert "training diverged" in err
    m = re.search(r"`(\w+)`.* at step (\d+)|step (\d+) made `(\w+)`", err)
    assert m, err
    node = m.group(1) or m.group(4)
    assert node in {"W", "b", "yhat", "loss"}
    assert err.startswith(f"{model}:")  # pointing at the statement of that node
    saved = np.load(tmp_path / "params.npz")
    assert all(np.all(np.isfinite(saved[k])) for k in ("W", "b"))
    r = report(tmp_path)
    assert r["diverged"]["node"] == node
    step = int(m.group(2) or m.group(3))
    assert r["diverged"]["step"] == step and 1 <= step <= 200


# ---- predict ---------------------------------------------------------------------------------

def test_predict_from_saved_files_equals_model_predict(folder, tmp_path, capsys, no_plots):
    model = folder / "lin.model"
    rc, _, err = run_cli(["run", model, "--epochs", 30, "--out", tmp_path], capsys)
    assert rc == 0, err
    out_csv = tmp_path / "pred.csv"
    rc, out, err = run_cli(["predict", model, "--params", tmp_path / "params.npz",
                            "--data", folder / "new.csv", "--out", out_csv], capsys)
    assert rc == 0 and out == f"wrote 7 predictions to {out_csv}\n", err
    with open(out_csv) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["yhat"]
    from_cli = np.array([float(r[0]) for r in rows[1:]])

    m = dsl.load(str(model))
    m.dataset()  # the same split, so the same standardizer as the run
    params = load_params(str(tmp_path / "params.npz")).params
    m.set_params(params)
    with open(folder / "new.csv") as f:
        X = np.array([[float(v) for v in r] for r in list(csv.reader(f))[1:]])
    in_process = m.predict(X)
    assert in_process.shape == (7, 1)
    np.testing.assert_array_equal(from_cli, in_process[:, 0])
    # and the prediction is the fitted plane, close to the truth for these rows
    np.testing.assert_allclose(from_cli, 2 * X[:, 0] - 3 * X[:, 1] + 1, atol=0.3)


CLASSES = """\
data "colors.csv"
input C[N, 3] <- onehot(color)
input y[N] <- y
param w[3] = 0
yhat = C @ w
loss = mean((yhat - y)^2)
minimize loss
predict yhat
train {
    optimizer gd(lr = 0.5)
    steps 300
}
"""


@pytest.fixture
def colors(tmp_path, capsys, no_plots) -> Path:
    """A run of a model of one-hot classes 0, 1, 2 (y = 10 color + 1), saved in tmp_path/run."""
    write_csv(tmp_path / "colors.csv", ["color", "y"], [(c, 10 * c + 1) for c in [0, 1, 2] * 5])
    (tmp_path / "colors.model").write_text(CLASSES)
    rc, _, err = run_cli(["run", tmp_path / "colors.model", "--out", tmp_path / "run"], capsys)
    assert rc == 0, err
    return tmp_path


def test_onehot_classes_are_saved_with_the_params(colors, capsys):
    """issue 12 item 1: rows of classes {1, 2} only were one-hot encoded as [N, 2] (a confusing
    shape error), and classes 2, 7 as the new file's own classes (class 1's and 2's values)."""
    write_csv(colors / "two.csv", ["color"], [(2,), (1,), (2,)])
    rc, out, err = run_cli(["predict", colors / "colors.model", "--params",
                            colors / "run/params.npz", "--data", colors / "two.csv"], capsys)
    assert rc == 0, err
    np.testing.assert_allclose([float(v) for v in out.split()[1:]], [21, 11, 21], atol=1e-3)


def test_an_unseen_class_names_the_file_row_and_value(colors, capsys):
    write_csv(colors / "new.csv", ["color"], [(2,), (0,), (7,)])
    rc, out, err = run_cli(["predict", colors / "colors.model", "--params",
                            colors / "run/params.npz", "--data", colors / "new.csv"], capsys)
    assert rc == 1 and out == "" and "Traceback" not in err
    assert err.startswith(f"{colors / 'new.csv'}:4:1: error: row 3 of `{colors / 'new.csv'}` has "
                          "class 7 in column color, which onehot(color) did not have in training "
                          "(its classes: 0, 1, 2)")


def test_predict_refuses_params_without_the_onehot_classes(colors, capsys):
    saved = load_params(str(colors / "run/params.npz"))
    np.savez(colors / "old.npz", **saved.params)  # as an older dsl saved them
    write_csv(colors / "new.csv", ["color"], [(2,), (1,)])
    rc, out, err = run_cli(["predict", colors / "colors.model", "--params", colors / "old.npz",
                            "--data", colors / "new.csv"], capsys)
    assert rc == 1 and out == "" and "Traceback" not in err
    assert (f"error: input `C` is one-hot in training, but {colors / 'old.npz'} has no saved "
            "classes for it") in err


def test_predict_refuses_params_without_the_transform(folder, tmp_path, capsys, no_plots):
    """issue 12 item 3: a params file without the `standardize` transform predicted from raw
    columns (14.15 instead of 27.66), exit 0."""
    rc, _, err = run_cli(["run", folder / "lin.model", "--epochs", 5, "--out", tmp_path], capsys)
    assert rc == 0, err
    np.savez(tmp_path / "bare.npz", **load_params(str(tmp_path / "params.npz")).params)
    rc, out, err = run_cli(["predict", folder / "lin.model", "--params", tmp_path / "bare.npz",
                            "--data", folder / "new.csv"], capsys)
    assert rc == 1 and out == "" and "Traceback" not in err
    assert (f"lin.model:4:1: error: input `X` is standardized in training, but "
            f"{tmp_path / 'bare.npz'} has no saved transformation for it") in err


# ---- target ----------------------------------------------------------------------------------

CLASSIFIER = """\
data "s.csv" split 0.75 seed 0
input x[N] <- x
input s[N] <- s
param w = 0
param b = 0
y = (s - 1) * (s - 2) / 2
p = sigmoid(w * x + b)
loss = -mean(y * log(p) + (1 - y) * log(1 - p))
minimize loss
predict p
target y
train {
    optimizer gd(lr = 1)
    steps 300
}
"""


def test_the_report_scores_the_named_target(tmp_path, capsys, no_plots):
    """issue 12 item 4: the report compared p with the raw column `s` (R² -2.34 for a perfect
    classifier); a 0/1 target with a sigmoid prediction gets accuracy and log-loss."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, 80)
    s = np.where(x > 0, 3.0, rng.choice([1.0, 2.0], 80))
    write_csv(tmp_path / "s.csv", ["x", "s"], zip(x, s))
    (tmp_path / "c.model").write_text(CLASSIFIER)
    rc, out, err = run_cli(["run", tmp_path / "c.model", "--out", tmp_path / "run"], capsys)
    assert rc == 0, err
    report = json.loads((tmp_path / "run/report.json").read_text())
    assert report["target"] == "y" and report["accuracy"] == 1.0
    assert 0 < report["log_loss"] < 0.2
    assert "rmse" not in report and "r2" not in report
    assert report["baseline_metric"] == "test accuracy"
    assert set(report["baselines"]) == {"majority", "least_squares", "knn3"}
    assert "accuracy (test)" in out and "log-loss (test)" in out


def test_a_computed_numeric_target_is_scored_as_computed(folder, tmp_path, capsys, no_plots):
    text = LINEAR.replace("input y[N, 1] <- y", "input raw[N, 1] <- y\ny = raw / 2 + 5").replace(
        "predict yhat", "predict yhat\ntarget y")
    (folder / "half.model").write_text(text)
    rc, out, err = run_cli(["run", folder / "half.model", "--out", tmp_path], capsys)
    assert rc == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    m = dsl.load(str(folder / "half.model"))
    m.load_params(str(tmp_path / "params.npz"))
    ds = m.dataset()
    y = ds.test["raw"] / 2 + 5
    assert report["rmse"] == pytest.approx(float(np.sqrt(np.mean((m.module.predict(m.params, ds.test) - y) ** 2))))
    assert report["rmse"] < 0.2 and report["r2"] > 0.99


# ---- bad data through `run` --------------------------------------------------------------------

DATA_MODELS = sorted(p.name for p in BAD_DATA.glob("*.model"))


@pytest.mark.parametrize("name", DATA_MODELS)
def test_bad_data_golden(name, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(ROOT)
    rel = f"tests/golden/bad/data/{name}"
    rc, out, err = run_cli(["run", rel, "--no-cache", "--out", tmp_path], capsys)
    assert rc == 1 and "Traceback" not in err and out == ""
    compare(str(BAD_DATA / name.replace(".model", ".err")), err)


def test_bad_data_goldens_name_file_row_and_column():
    def text(name):
        return (BAD_DATA / f"{name}.err").read_text()
    assert set(DATA_MODELS) >= {f"{n}.model" for n in (
        "data_missing_file", "data_unknown_column", "data_non_numeric", "data_empty_file",
        "data_nan_cell")}
    assert "data file `tests/golden/bad/data/nowhere.csv` not found" in text("data_missing_file")
    assert "unknown column `room`" in text("data_unknown_column")
    assert "did you mean `rooms`?" in text("data_unknown_column")
    non_numeric = text("data_non_numeric")
    assert non_numeric.startswith("tests/golden/bad/data/non_numeric.csv:3:4: error:")
    assert "non-numeric value 'three' in column rooms, row 2" in non_numeric
    assert "data file `tests/golden/bad/data/empty.csv` is empty" in text("data_empty_file")
    nan = text("data_nan_cell")
    assert nan.startswith("tests/golden/bad/data/nan.csv:4:")
    assert "NaN value 'NaN' in column price, row 3" in nan


# ---- dsl data --------------------------------------------------------------------------------

def test_data_command_ranks_rm_and_lstat_first(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    rc, out, err = run_cli(["data", "examples/data/boston.csv", "--target", "MEDV"], capsys)
    assert rc == 0 and err == ""
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:1] == ["column"])
    assert "corr(MEDV)" in lines[head]
    assert lines[head + 1].split()[0] == "MEDV" and lines[head + 1].split()[-1] == "target"
    strongest = [line.split()[0] for line in lines[head + 2:head + 5]]
    assert {"RM", "LSTAT"} <= set(strongest[:2])
    corr = {line.split()[0]: float(line.split()[-1]) for line in lines[head + 2:] if line.strip()}
    assert corr["LSTAT"] < -0.7 and corr["RM"] > 0.65


# ---- inputs training cannot feed ---------------------------------------------------------------

_DECAY = """data "decay.csv"
input t[N] <- time_min
{c}
param A = 1
param k = 0.1
chat = A * exp(-k * t)
sse = sum((chat - c)^2)
minimize sse
predict chat
{train}"""


@pytest.mark.parametrize("c", ["input c", "input c[N]"])
@pytest.mark.parametrize("train", ["", "train {\n  optimizer lm\n}", "train {\n  optimizer adam(lr=0.1)\n}"])
def test_an_unbound_input_the_objective_reads_is_said_before_a_fit(tmp_path, capsys, no_plots, c,
                                                                   train):
    """It has no rows: counting lm's residuals on the training rows (the default picks lm for a
    sum of squares) ended in `internal error: KeyError: 'c'`, found by the fuzzer."""
    (tmp_path / "decay.csv").write_text("time_min,conc_mM\n0,1.0\n1,0.9\n2,0.8\n3,0.7\n4,0.65\n")
    model = tmp_path / "decay.model"
    model.write_text(_DECAY.format(c=c, train=train))
    rc, out, err = run_cli(["run", model, "--out", tmp_path / "out"], capsys)
    assert rc == 1, err
    assert "decay.model:3:1: error: input `c` is not bound to a column of the data" in err
    assert "hint: bind it to a column, e.g. `input c[N] <- COLUMN`" in err
    with pytest.raises(DataError) as e:
        dsl.load(str(model)).fit(steps=5)
    assert "input `c` is not bound to a column of the data" in str(e.value)
