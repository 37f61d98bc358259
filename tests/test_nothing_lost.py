"""Nothing lost (issue 8): Ctrl-C, divergence, `--resume`, and atomic writes, through `run`.

- Ctrl-C (a KeyboardInterrupt raised inside training, here by the progress callback at a log
  point or by the generated step halfway through an update) ends `run` with exit status 130,
  after saving consistent params, the training checkpoint and the history so far, and saying
  where. `--resume --out DIR` continues from them: the step count goes on from where it stopped,
  the optimizer state and the batch order are restored, and the history is appended to, so the
  resumed run ends with exactly the params of a run never stopped.
- Divergence saves the last good params (finite, before the update that led to the first
  non-finite value) and the history up to them, names the step and the node with its line, and
  `--resume` (with a lower learning rate) continues from there.
- Every artifact is written to a temporary file and renamed: a failure or Ctrl-C while writing
  leaves the previous file whole and no temporary file behind.

Small linear models on a CSV generated here, so that each test takes a fraction of a second.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import pytest

import dsl
import dsl.cli
import dsl.training.runtime
import dsl.training.train
from dsl.views import plots
from dsl.cli import main
from dsl.training.checkpoint import CHECKPOINT_PREFIX, load_checkpoint, load_params
from dsl.front.build import parse

MODEL = """\
data "data.csv" split 0.8 seed 1
input X[N, 2] <- x1, x2
input y[N]    <- y

param w[2] ~ normal(0, 1)
param b    = 0

yhat = X @ w + b
loss = mean((yhat - y)^2)

minimize loss
predict yhat

train {{
    optimizer {optimizer}
    batch 8
    epochs 20
    seed 3{extra}
}}
"""

OPTIMIZERS = {
    "sgd": "sgd(lr = 0.05)",
    "momentum": "sgd(lr = 0.02, momentum = 0.9)",
    "adam": "adam(lr = 0.05)",
    "gd": "gd(lr = 0.1)",
    "random_search": "random_search(trials = 300, low = -3, high = 3)",
}


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    monkeypatch.setattr(plots, "available", lambda: False)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    y = 2 * x[:, 0] - x[:, 1] + 0.5 + 0.1 * rng.normal(size=60)
    lines = ["x1,x2,y"] + [f"{a:.6f},{b:.6f},{c:.6f}" for (a, b), c in zip(x, y)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def write_model(folder: Path, optimizer: str, log_every: int | None = None, name="m") -> Path:
    extra = f"\n    log every {log_every}" if log_every else ""
    path = folder / f"{name}.model"
    path.write_text(MODEL.format(optimizer=OPTIMIZERS.get(optimizer, optimizer), extra=extra))
    return path


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def saved_params(out: Path) -> dict[str, np.ndarray]:
    params = load_params(str(out / "params.npz")).params
    return params


def history(out: Path) -> list[dict]:
    with open(out / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def curve(rows: list[dict]) -> list[tuple]:
    """A history without its timings: step, epoch, train and test loss."""
    return [(r["step"], r["epoch"], r["train_loss"], r["test_loss"]) for r in rows]


def loss_at(model: Path, params: dict[str, np.ndarray]) -> float:
    m = dsl.load(str(model))
    return float(m.module.loss(params, m.dataset().train))


def interrupt_at_log_point(monkeypatch, step: int) -> None:
    """Ctrl-C as the progress bar draws step `step` (a log point, between two updates)."""
    real = dsl.cli.ProgressBar.update

    def update(self, s, total, loss):
        real(self, s, total, loss)
        if s >= step:
            raise KeyboardInterrupt

    monkeypatch.setattr(dsl.cli.ProgressBar, "update", update)


def interrupt_inside_update(monkeypatch, call: int) -> None:
    """Ctrl-C inside the generated code at its `call`-th training step, after it has changed a
    param in place: the params are then half updated, as a real Ctrl-C may leave them."""
    real_fit = dsl.model.fit  # `run` trains through Model.fit
    calls = {"n": 0}

    def flaky(fn):
        def step(params, inputs, *rest):
            calls["n"] += 1
            if calls["n"] == call:
                params["w"] += 1e6  # a half-applied update
                raise KeyboardInterrupt
            return fn(params, inputs, *rest)
        return step

    def fit(module, *args, **kwargs):
        proxy = types.SimpleNamespace(**{k: getattr(module, k) for k in dir(module)
                                         if not k.startswith("__")})
        proxy.sgd_step, proxy.grad = flaky(module.sgd_step), flaky(module.grad)
        return real_fit(proxy, *args, **kwargs)

    monkeypatch.setattr(dsl.model, "fit", fit)


def assert_steps_run_on(rows: list[dict], last: int) -> None:
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(set(steps)), steps  # increasing, no step twice
    assert steps[0] == 0 and steps[-1] == last


# ---- Ctrl-C and --resume ---------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_ctrl_c_saves_everything_and_resume_ends_where_an_unstopped_run_ends(
        folder, capsys, monkeypatch, optimizer):
    model = write_model(folder, optimizer)
    whole, stopped = folder / "whole", folder / "stopped"
    rc, _, err = run(["run", model, "--out", whole], capsys)
    assert rc == 0, err
    total = int(history(whole)[-1]["step"])
    # 20 epochs of 6 batches of 8 (48 training rows); gd takes the whole set: 20 steps
    assert total == {"gd": 20, "random_search": 300}.get(optimizer, 120)

    with monkeypatch.context() as patch:
        interrupt_at_log_point(patch, total // 3)
        rc, out, err = run(["run", model, "--out", stopped], capsys)
    assert rc == 130, err
    stop = int(re.search(r"interrupted at step (\d+)", err).group(1))
    assert total // 3 <= stop < total
    assert f"saved the params of step {stop} in {stopped / 'params.npz'}" in err
    assert str(stopped / "history.csv") in err and "--resume --out" in err
    assert "Traceback" not in out + err
    params = saved_params(stopped)
    assert set(params) == {"w", "b"} and all(np.all(np.isfinite(v)) for v in params.values())
    rows = history(stopped)
    assert_steps_run_on(rows, stop)
    assert rows[-1]["train_loss"] == pytest.approx(loss_at(model, params), rel=1e-12)
    if optimizer != "random_search":  # the history so far is that of the whole run
        assert curve(rows) == curve(history(whole))[:len(rows)]

    rc, out, err = run(["run", model, "--out", stopped, "--resume"], capsys)
    assert rc == 0, err
    assert f"resuming from {stopped / 'params.npz'} at step {stop}" in out
    assert "note:" not in out  # everything was restored
    resumed = history(stopped)
    assert_steps_run_on(resumed, total)
    first = next(r for r in resumed if r["step"] == stop)
    assert first["train_loss"] == pytest.approx(rows[-1]["train_loss"], rel=1e-12)
    a, b = saved_params(whole), saved_params(stopped)
    assert all(np.array_equal(a[k], b[k]) for k in a), "resumed run ends elsewhere"
    assert curve(resumed) == curve(history(whole)) or optimizer == "random_search"


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_ctrl_c_inside_an_update_goes_back_to_the_last_log_point(folder, capsys, monkeypatch,
                                                                 optimizer):
    model = write_model(folder, optimizer, log_every=10)
    whole, stopped = folder / "whole", folder / "stopped"
    rc, _, err = run(["run", model, "--out", whole], capsys)
    assert rc == 0, err
    with monkeypatch.context() as patch:
        interrupt_inside_update(patch, call=25)
        rc, out, err = run(["run", model, "--out", stopped], capsys)
    assert rc == 130, err
    assert "interrupted at step 24: saved the params of step 20, the last log point" in err
    params = saved_params(stopped)
    assert np.all(np.abs(params["w"]) < 100)  # not the half-updated ones
    rows = history(stopped)
    assert_steps_run_on(rows, 20)
    assert curve(rows) == curve(history(whole))[:len(rows)]
    assert rows[-1]["train_loss"] == pytest.approx(loss_at(model, params), rel=1e-12)

    rc, out, err = run(["run", model, "--out", stopped, "--resume"], capsys)
    assert rc == 0 and "at step 20" in out, err
    a, b = saved_params(whole), saved_params(stopped)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert curve(history(stopped)) == curve(history(whole))


def test_resume_with_other_settings_continues_from_the_params_and_says_what_starts_afresh(
        folder, capsys, monkeypatch):
    model = write_model(folder, "adam", log_every=10)
    out = folder / "out"
    with monkeypatch.context() as patch:
        interrupt_at_log_point(patch, 30)
        rc, _, err = run(["run", model, "--out", out], capsys)
    assert rc == 130, err
    before = history(out)[-1]
    rc, stdout, err = run(["run", model, "--out", out, "--resume", "--optimizer", "sgd",
                           "--batch", "16", "--epochs", "40"], capsys)
    assert rc == 0, err
    assert "at step 30" in stdout
    assert "note: the batch order starts afresh" in stdout
    rows = history(out)
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == 40 * 3  # 48 rows in batches of 16
    at_30 = next(r for r in rows if r["step"] == 30)
    assert at_30["train_loss"] == pytest.approx(before["train_loss"])


def test_resume_after_a_finished_run_trains_no_more(folder, capsys):
    model = write_model(folder, "sgd")
    out = folder / "out"
    assert run(["run", model, "--out", out], capsys)[0] == 0
    done = saved_params(out)
    rows = history(out)
    rc, stdout, err = run(["run", model, "--out", out, "--resume"], capsys)
    assert rc == 0, err
    assert "at step 120" in stdout
    again = saved_params(out)
    assert all(np.array_equal(done[k], again[k]) for k in done)
    assert [r["step"] for r in history(out)] == [r["step"] for r in rows]


def test_resume_needs_saved_params_of_this_model(folder, capsys):
    model = write_model(folder, "sgd")
    rc, _, err = run(["run", model, "--out", folder / "nothing", "--resume"], capsys)
    assert rc == 1 and "no such params file" in err and "Traceback" not in err
    other = folder / "other"
    other.mkdir()
    np.savez(other / "params.npz", W=np.zeros((2, 1)))
    rc, _, err = run(["run", model, "--out", other, "--resume"], capsys)
    assert rc == 1 and "has no value for param `w`" in err


@pytest.mark.parametrize("content", [
    b"not a zip file at all",
    b"PK\x03\x04 a zip that stops here",
    "npy",  # one array saved with np.save, not named params
    "pickled",  # an object array: loading it would need pickle
    "bad checkpoint",
])
def test_a_damaged_params_file_is_a_clean_error(folder, capsys, content):
    model = write_model(folder, "sgd")
    out = folder / "out"
    out.mkdir()
    path = out / "params.npz"
    if content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif content == "pickled":
        np.savez(path, w=np.array([None, 1], dtype=object), b=np.zeros(()))
    elif content == "bad checkpoint":
        np.savez(path, w=np.zeros(2), b=np.zeros(()), **{
            CHECKPOINT_PREFIX + "step": np.array(3), CHECKPOINT_PREFIX + "seconds": np.array(0.0),
            CHECKPOINT_PREFIX + "optimizer": np.array("sgd"),
            CHECKPOINT_PREFIX + "rows": np.array(48),
            CHECKPOINT_PREFIX + "batch": np.array(8),
            CHECKPOINT_PREFIX + "order": np.array('{"rng": {"bit_generator": "nope"}, "pos": 0}')})
    else:
        path.write_bytes(content)
    for argv in (["run", model, "--out", out, "--resume"],
                 ["eval", model, "--params", path, "--set", "X=[[1, 2]]", "--set", "y=[3]"],
                 ["predict", model, "--params", path, "--data", folder / "data.csv"]):
        rc, stdout, err = run(argv, capsys)
        if content == "bad checkpoint" and argv[0] != "run":
            assert rc == 0, err  # the params themselves are fine
            continue
        assert rc == 1, (argv[0], err)
        assert str(path) in err and "Traceback" not in err and "internal error" not in err


def test_saved_params_with_a_checkpoint_still_feed_eval_and_predict(folder, capsys):
    model = write_model(folder, "adam")
    out = folder / "out"
    assert run(["run", model, "--out", out], capsys)[0] == 0
    with np.load(out / "params.npz") as z:
        assert any(k.startswith(CHECKPOINT_PREFIX) for k in z.files)
    assert set(saved_params(out)) == {"w", "b"}
    rc, _, err = run(["predict", model, "--params", out / "params.npz", "--data",
                      folder / "data.csv"], capsys)
    assert rc == 0, err
    rc, _, err = run(["eval", model, "--params", out / "params.npz", "--set", "X=[[1, 2]]",
                      "--set", "y=[3]"], capsys)
    assert rc == 0, err


# ---- divergence -------------------------------------------------------------------------------

def test_divergence_saves_the_last_good_params_names_step_and_node_and_resumes(folder, capsys):
    model = write_model(folder, "gd(lr = 50)")
    out = folder / "out"
    rc, stdout, err = run(["run", model, "--out", out, "--steps", 1000], capsys)
    assert rc == 1, err
    assert "Traceback" not in err and "internal error" not in err
    m = re.search(r"training diverged: `(\w+)` became non-finite (?:at step|over all training "
                  r"rows after step) (\d+); the last finite params \(step (\d+)\) are saved in "
                  r"(\S+) and the history in (\S+)", err)
    assert m, err
    node, step, kept = m.group(1), int(m.group(2)), int(m.group(3))
    assert m.group(4) == str(out / "params.npz") and m.group(5) == str(out / "history.csv")
    assert 1 <= kept < step <= 1000
    lines = model.read_text().split("\n")
    line = next(i for i, text in enumerate(lines, 1) if re.match(rf"\s*{node}\s*=", text))
    assert err.startswith(f"{model}:{line}:")  # the node's statement, shown under the message
    assert lines[line - 1].strip() in err
    assert "lower the learning rate (now 50)" in err and f"continues from step {kept}" in err

    params = saved_params(out)
    assert all(np.all(np.isfinite(v)) for v in params.values())
    rows = history(out)
    assert_steps_run_on(rows, kept)
    assert np.isfinite(rows[-1]["train_loss"])
    assert rows[-1]["train_loss"] == pytest.approx(loss_at(model, params), rel=1e-12)

    rc, stdout, err = run(["run", model, "--out", out, "--steps", 1000, "--resume", "--lr", 0.01],
                          capsys)
    assert rc == 0, err
    assert f"at step {kept}" in stdout
    resumed = history(out)
    assert_steps_run_on(resumed, 1000)
    assert all(np.isfinite(r["train_loss"]) for r in resumed)
    assert resumed[-1]["train_loss"] < rows[-1]["train_loss"]


def test_divergence_advises_a_tenth_of_the_learning_rate_and_that_command_resumes(folder, capsys):
    model = write_model(folder, "gd(lr = 50)")
    out = folder / "out"
    rc, _, err = run(["run", model, "--out", out, "--steps", 1000, "--seed", 4], capsys)
    assert rc == 1, err
    kept = int(re.search(r"the last finite params \(step (\d+)\)", err).group(1))
    advice = re.search(r"`dsl run (.*?)` continues from step (\d+) at lr 5\b", err)
    assert advice, err
    argv = advice.group(1).split()
    assert argv[0] == str(model) and int(advice.group(2)) == kept
    assert argv[1:] == ["--steps", "1000", "--seed", "4", "--resume", "--lr", "5", "--out",
                        str(out)]
    rc, stdout, err = run(["run", *argv], capsys)
    assert f"resuming from {out / 'params.npz'} at step {kept}" in stdout, err
    assert "gd(lr = 5)" in stdout
    rows = history(out)
    assert rows[0]["step"] == 0 and any(r["step"] > kept for r in rows)


@pytest.mark.parametrize("optimizer", ["gd(lr = 0.1)", "lbfgs()"])
def test_a_start_that_is_already_non_finite_says_so_not_step_1(folder, capsys, optimizer):
    model = write_model(folder, optimizer)
    model.write_text(model.read_text().replace("param b    = 0", "param b    = 1e200")
                     .replace("loss = mean((yhat - y)^2)", "loss = mean((yhat * b - y)^2)")
                     .replace("    batch 8\n", ""))
    out = folder / "out"
    rc, _, err = run(["run", model, "--out", out], capsys)
    assert rc == 1, err
    assert "training cannot start: `loss` is not finite at the start" in err, err
    if optimizer.startswith("gd"):
        assert "(step 0), before any update" in err
    assert "step 1" not in err and "lower the learning rate" not in err
    assert "no learning rate can help" in err
    params = saved_params(out)
    assert params["b"] == 1e200 and all(np.all(np.isfinite(v)) for v in params.values())
    assert [r["step"] for r in history(out)] == [0]


def test_a_failure_after_training_loses_neither_params_nor_history(folder, capsys, monkeypatch):
    """Params and history are saved before the report: a bug there does not lose training."""
    model = write_model(folder, "sgd")
    out = folder / "out"

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the report")

    monkeypatch.setattr(dsl.cli, "metrics", broken)
    rc, _, err = run(["run", model, "--out", out], capsys)
    assert rc == 3 and "internal error" in err
    assert saved_params(out) and history(out)[-1]["step"] == 120


# ---- atomic writes -----------------------------------------------------------------------------

class _HalfWriter:
    """A file whose write stores half the bytes, then fails (a full disk, Ctrl-C)."""

    def __init__(self, f, error):
        self.f, self.error = f, error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        return False

    def write(self, data):
        self.f.write(data[:len(data) // 2])
        self.f.flush()
        raise self.error

    def __getattr__(self, name):
        return getattr(self.f, name)


@pytest.mark.parametrize("error, status", [(OSError(28, "No space left on device"), 1),
                                           (KeyboardInterrupt(), 130)])
def test_a_write_that_fails_halfway_leaves_the_previous_file_whole(folder, capsys, monkeypatch,
                                                                    error, status):
    model = write_model(folder, "sgd")
    out = folder / "out"
    assert run(["run", model, "--out", out], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        return _HalfWriter(f, error) if "w" in mode else f

    with monkeypatch.context() as patch:
        patch.setattr(os, "fdopen", fdopen)
        rc, _, err = run(["run", model, "--out", out, "--epochs", 3], capsys)
    assert rc == status, err
    assert "Traceback" not in err and "internal error" not in err
    if status == 1:  # history.csv is the first file a run writes: it streams it as it trains
        assert f"cannot write {out / 'history.csv'}: No space left on device" in err
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before  # the earlier run's files, whole; no temporary file
    with np.load(out / "params.npz") as z:
        assert {"w", "b"} <= set(z.files)


def test_savez_failing_midway_leaves_the_previous_params(folder, capsys, monkeypatch):
    model = write_model(folder, "sgd")
    out = folder / "out"
    assert run(["run", model, "--out", out], capsys)[0] == 0
    before = (out / "params.npz").read_bytes()
    real = np.savez

    def savez(file, *args, **kwargs):
        real(file, *args, **kwargs)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(np, "savez", savez)
    rc, _, err = run(["run", model, "--out", out, "--epochs", 2], capsys)
    assert rc == 1 and "cannot write" in err, err
    assert (out / "params.npz").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_artifacts_get_the_usual_file_mode(folder, capsys):
    model = write_model(folder, "sgd")
    out = folder / "out"
    assert run(["run", model, "--out", out], capsys)[0] == 0
    umask = os.umask(0)
    os.umask(umask)
    for name in ("params.npz", "history.csv", "report.json", "m_compiled.py"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_an_unwritable_out_folder_is_a_clean_error(folder, capsys):
    model = write_model(folder, "sgd")
    blocker = folder / "afile"
    blocker.write_text("not a folder")
    rc, _, err = run(["run", model, "--out", blocker], capsys)
    assert rc == 1 and "cannot write" in err and "Traceback" not in err, err


# ---- commands never write over their own inputs ------------------------------------------------

def _refused(argv, capsys, flag: str, what: str) -> None:
    rc, out, err = run(argv, capsys)
    assert rc == 2, err
    assert f"error: {flag} " in err and f"would overwrite {what}" in err, err
    assert "Traceback" not in err and "internal error" not in err


def test_compile_refuses_to_write_over_the_model_or_its_data(folder, capsys, monkeypatch):
    model = write_model(folder, "sgd")
    text, data = model.read_bytes(), (folder / "data.csv").read_bytes()
    monkeypatch.chdir(folder)
    for target in (model, "m.model", "./sub/../m.model"):
        _refused(["compile", model, "-o", target], capsys, "-o", "the model")
    (folder / "link.py").symlink_to(model)
    _refused(["compile", "m.model", "-o", "link.py"], capsys, "-o", "the model")
    _refused(["compile", model, "-o", folder / "data.csv"], capsys, "-o", "the model's data")
    assert model.read_bytes() == text and (folder / "data.csv").read_bytes() == data
    rc, _, err = run(["compile", model, "-o", folder / "m.py"], capsys)
    assert rc == 0, err


def test_predict_refuses_to_write_over_its_data_params_or_model(folder, capsys):
    model = write_model(folder, "sgd")
    out = folder / "out"
    assert run(["run", model, "--out", out], capsys)[0] == 0
    new = folder / "new.csv"
    new.write_text("x1,x2\n1,2\n3,4\n")
    params = out / "params.npz"
    before = {p: p.read_bytes() for p in (model, new, params, folder / "data.csv")}
    base = ["predict", model, "--params", params, "--data", new, "--out"]
    _refused(base + [new], capsys, "--out", "the data")
    _refused(base + [params], capsys, "--out", "the params")
    _refused(base + [model], capsys, "--out", "the model")
    _refused(base + [folder / "data.csv"], capsys, "--out", "the model's data")
    assert {p: p.read_bytes() for p in before} == before
    rc, _, err = run(base + [folder / "predictions.csv"], capsys)
    assert rc == 0, err


def test_run_refuses_an_out_folder_whose_artifacts_would_replace_its_inputs(folder, capsys):
    """`--out` over the model folder is fine until an artifact has the name of an input there:
    a data file called history.csv, a model called report.json; or `--out` is the model."""
    model = write_model(folder, "sgd")
    (folder / "data.csv").rename(folder / "history.csv")
    model.write_text(model.read_text().replace('"data.csv"', '"history.csv"'))
    data = (folder / "history.csv").read_bytes()
    _refused(["run", model, "--out", folder, "--steps", 2], capsys, "--out", "the model's data")
    assert (folder / "history.csv").read_bytes() == data
    assert not (folder / "params.npz").exists()
    _refused(["run", model, "--out", model], capsys, "--out", "the model")
    named = folder / "report.json"
    named.write_text(model.read_text())
    _refused(["run", named, "--out", folder], capsys, "--out", "the model")
    rc, _, err = run(["run", model, "--out", folder / "elsewhere", "--steps", 2], capsys)
    assert rc == 0, err


def test_data_plot_refuses_to_write_over_the_data(folder, capsys):
    data = folder / "data.csv"
    before = data.read_bytes()
    _refused(["data", data, "--plot", data], capsys, "--plot", "the data")
    assert data.read_bytes() == before


# ---- the output folder is checked before training; a failed save still keeps the params ------

def _trains(monkeypatch) -> list[int]:
    """The calls of `fit`, to show that a refused folder is refused before training."""
    calls = []
    real = dsl.model.fit

    def fit(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dsl.model, "fit", fit)
    return calls


def test_params_npz_being_a_folder_is_refused_before_training(folder, capsys, monkeypatch):
    model = write_model(folder, "sgd")
    out = folder / "out"
    (out / "params.npz").mkdir(parents=True)
    calls = _trains(monkeypatch)
    rc, stdout, err = run(["run", model, "--out", out], capsys)
    assert rc == 1 and not calls, err
    assert f"cannot write {out / 'params.npz'}: it is a directory" in err
    assert "training m" not in stdout and "Traceback" not in err


def test_a_read_only_out_folder_is_refused_before_training(folder, capsys, monkeypatch):
    model = write_model(folder, "sgd")
    out = folder / "ro"
    out.mkdir()
    out.chmod(0o555)
    if os.access(out, os.W_OK):  # root writes anywhere; sysfs refuses even root
        out = Path("/sys")
    calls = _trains(monkeypatch)
    rc, stdout, err = run(["run", model, "--out", out], capsys)
    assert rc == 1 and not calls, err
    assert f"cannot write in {out}:" in err and "Traceback" not in err


def test_a_failed_save_at_the_end_keeps_the_params_in_a_fallback_file(folder, capsys,
                                                                       monkeypatch):
    """A disk that fills up during training: the params go to a file the message names."""
    model = write_model(folder, "adam")
    out = folder / "out"
    whole = folder / "whole"
    assert run(["run", model, "--out", whole], capsys)[0] == 0
    spare = folder / "spare"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    real = dsl.cli.atomic_write

    def full_disk(path, data, *args):
        if os.path.basename(path) == "params.npz":
            raise OSError(28, "No space left on device")
        return real(path, data, *args)

    monkeypatch.setattr(dsl.cli, "atomic_write", full_disk)
    rc, _, err = run(["run", model, "--out", out], capsys)
    assert rc == 1, err
    m = re.search(rf"cannot write {re.escape(str(out / 'params.npz'))}: No space left on device; "
                  r"the params are saved in (\S+) instead", err)
    assert m, err
    saved = Path(m.group(1))
    assert saved.parent == spare and "Traceback" not in err
    params = load_params(str(saved)).params
    expected = saved_params(whole)
    assert all(np.array_equal(params[k], expected[k]) for k in expected)
    assert load_checkpoint(str(saved)).step == 120  # with the checkpoint: --resume can use it


# ---- SIGTERM, SIGHUP and kill -9 -----------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _start_run(model: Path, out: Path) -> subprocess.Popen:
    """A `dsl run` that would take hours, in its own process; returns once it has saved its
    first checkpoint (training has begun)."""
    proc = subprocess.Popen([sys.executable, "-m", "dsl", "run", str(model), "--out", str(out),
                             "--steps", "100000000"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for _ in range(1200):
        if (out / "params.npz").exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    assert (out / "params.npz").exists(), "no checkpoint within two minutes"
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_like_ctrl_c(folder, sig):
    model = write_model(folder, "adam", log_every=20)
    out = folder / "out"
    proc = _start_run(model, out)
    proc.send_signal(sig)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    m = re.search(rf"interrupted by {sig.name} at step (\d+): saved the params of step (\d+)"
                  r"(, the last log point \(an update may have been half done\))? in "
                  + re.escape(str(out / "params.npz")), err)
    assert m, err
    assert "Traceback" not in err
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is True and report["steps"] == int(m.group(2))
    params = saved_params(out)
    assert all(np.all(np.isfinite(v)) for v in params.values())
    assert history(out)[-1]["step"] == int(m.group(2))
    assert load_checkpoint(str(out / "params.npz")).step == int(m.group(2))


def test_kill_9_loses_only_the_steps_since_the_last_log_point(folder, capsys):
    model = write_model(folder, "adam", log_every=20)
    out = folder / "out"
    proc = _start_run(model, out)
    time.sleep(1)  # let it write a few more checkpoints
    proc.kill()
    proc.communicate(timeout=60)
    saved = load_checkpoint(str(out / "params.npz"))  # a whole file: written atomically
    assert saved.step > 0 and saved.step % 20 == 0
    params = saved_params(out)
    assert all(np.all(np.isfinite(v)) for v in params.values())
    # the checkpoint continues exactly: resuming it to a step gives an unstopped run's params
    stop = saved.step + 40
    rc, stdout, err = run(["run", model, "--out", out, "--resume", "--steps", stop], capsys)
    assert rc == 0 and f"at step {saved.step}" in stdout, err
    whole = folder / "whole"
    assert run(["run", model, "--out", whole, "--steps", stop], capsys)[0] == 0
    a, b = saved_params(whole), saved_params(out)
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "random_search"])
def test_a_checkpoint_is_written_at_every_log_point(folder, capsys, monkeypatch, optimizer):
    model = write_model(folder, optimizer, log_every=30)
    out = folder / "out"
    monkeypatch.setattr(dsl.training.train.Saver, "SHARE", math.inf)  # saving costs what it costs
    written = []
    real = dsl.cli.save_params

    def save_params(path, *args):
        real(path, *args)
        written.append(load_checkpoint(path).step)
        assert load_params(path).params.keys() == {"w", "b"}

    monkeypatch.setattr(dsl.cli, "save_params", save_params)
    rc, _, err = run(["run", model, "--out", out], capsys)
    assert rc == 0, err
    total = 300 if optimizer == "random_search" else 120
    assert written == list(range(30, total + 1, 30))


def test_saving_checkpoints_is_skipped_when_it_would_cost_more_than_a_tenth():
    """`Saver` keeps the share of time spent saving bounded: a save that took 1 s is not
    followed by another until 10 s have passed."""
    clock = [0.0]
    saves = []

    def slow_save(params, checkpoint):
        saves.append(clock[0])
        clock[0] += 1.0

    saver = dsl.training.train.Saver(slow_save)
    real = dsl.training.train.time.perf_counter
    try:
        dsl.training.train.time.perf_counter = lambda: clock[0]
        for _ in range(40):
            saver({}, lambda: None)
            clock[0] += 0.5  # half a second of steps between log points
    finally:
        dsl.training.train.time.perf_counter = real
    gaps = [b - a for a, b in zip(saves, saves[1:])]
    assert saves[0] == 0.0 and gaps and all(g >= 10.0 for g in gaps)
    assert len(saves) >= 2


# ---- a run folder belongs to one model ---------------------------------------------------------

def _two_models_named_lin(folder: Path) -> tuple[Path, Path]:
    paths = []
    for sub, opt in (("a", "sgd"), ("b", "adam")):
        (folder / sub).mkdir()
        (folder / sub / "data.csv").write_bytes((folder / "data.csv").read_bytes())
        paths.append(write_model(folder / sub, opt, name="lin"))
    paths[1].write_text(paths[1].read_text().replace("param b    = 0", "param b    = 0.5"))
    return paths[0], paths[1]


def test_two_models_with_the_same_name_get_different_run_folders(folder, capsys, monkeypatch):
    monkeypatch.chdir(folder)
    a, b = _two_models_named_lin(folder)
    rc, out_a, err = run(["run", "a/lin.model"], capsys)
    assert rc == 0, err
    folder_a = Path(re.search(r"saved (\S+)/: params.npz", out_a).group(1))
    assert folder_a == Path(dsl.training.runtime.default_out("a/lin.model"))
    assert folder_a.parent == Path("runs") and folder_a.name.startswith("lin-")
    params_a = saved_params(folder_a)
    # b's --resume does not find a's params, and b's run does not overwrite them
    rc, _, err = run(["run", "b/lin.model", "--resume"], capsys)
    assert rc == 1 and "no such params file" in err, err
    rc, out_b, err = run(["run", "b/lin.model"], capsys)
    assert rc == 0, err
    folder_b = Path(re.search(r"saved (\S+)/: params.npz", out_b).group(1))
    assert folder_b != folder_a and folder_b.name.startswith("lin-")
    again = saved_params(folder_a)
    assert all(np.array_equal(params_a[k], again[k]) for k in params_a)
    # however the same model is spelt, it is the same folder
    for spelling in ("./a/lin.model", str(a), "b/../a/lin.model"):
        assert dsl.training.runtime.default_out(spelling) == str(folder_a)
    rc, stdout, err = run(["run", str(a), "--resume"], capsys)
    assert rc == 0 and f"resuming from {folder_a / 'params.npz'} at step 120" in stdout, err


def test_resuming_another_models_checkpoint_is_refused(folder, capsys):
    a, b = _two_models_named_lin(folder)
    out = folder / "shared"
    assert run(["run", a, "--out", out], capsys)[0] == 0
    before = (out / "params.npz").read_bytes()
    with np.load(out / "params.npz") as z:
        text = a.read_text()
        digest = dsl.training.runtime.model_digest(text, parse(text, str(a)))
        assert str(z[CHECKPOINT_PREFIX + "model"]) == digest
    rc, stdout, err = run(["run", b, "--out", out, "--resume"], capsys)
    assert rc == 1, err
    assert f"{out / 'params.npz'} is the checkpoint of another model, not of {b}" in err
    assert "run without --resume" in err and "Traceback" not in err
    assert (out / "params.npz").read_bytes() == before
    # an edited model is another model too; its train { } settings may change
    a.write_text(a.read_text().replace("epochs 20", "epochs 30"))
    rc, stdout, err = run(["run", a, "--out", out, "--resume"], capsys)
    assert rc == 0 and "resuming from" in stdout and "at step 120" in stdout, err
    a.write_text(a.read_text().replace("param b    = 0", "param b    = 1"))
    rc, _, err = run(["run", a, "--out", out, "--resume"], capsys)
    assert rc == 1 and "is the checkpoint of another model" in err, err
