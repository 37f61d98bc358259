"""After training: the figures a user compares (loss, RMSE, R² or accuracy, the baselines on the
same split) and report.json. The files a run resumes from (params.npz, history.csv) are
dsl.training.checkpoint's."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from compiler.deps import ancestors
from dsl.training import baselines
from dsl.training.runtime import Dataset, atomic_write
from dsl.training.train import FitResult, Flat
from dsl.training.uncertainty import Uncertainty, delta_method, error_bars

if TYPE_CHECKING:
    from dsl.model import Model

# What `dsl run` writes in its folder, besides MODEL_compiled.py.
ARTIFACTS = ("params.npz", "history.csv", "report.json", "loss.png", "predicted.png",
             "residuals.png")


LOG_LOSS_CLIP = 1e-15  # probabilities of exactly 0 or 1 would make the log-loss infinite


def target_and_features(model: Model) -> tuple[str | None, list[str]]:
    """The target the prediction is scored against, and the inputs the prediction reads: the
    `target` statement's node, else the data input the objective reads and `predict` does not."""
    m = model.checked
    if not (m.objective and m.predict):
        return None, []
    reads = ancestors([m.predict], m.reads)
    features = [n for n, i in m.inputs.items() if n in reads and i.binding]
    if m.target:
        return m.target, features
    targets = [n for n, i in m.inputs.items()
               if i.binding and n not in reads and n in ancestors([m.objective], m.reads)]
    return (targets[0] if targets else None), features


@dataclass
class Scored:
    """The target's values on the training and test rows, and how the prediction is scored:
    `classes` (one-hot, by the largest column), `binary` (0/1 against a sigmoid's probability)
    or `numeric` (RMSE and R²)."""

    name: str
    train: np.ndarray
    test: np.ndarray
    kind: str

    def on(self, ds: Dataset, split: dict) -> np.ndarray:
        return self.test if split is ds.test else self.train


def scored_target(model: Model, ds: Dataset) -> Scored | None:
    target, _ = target_and_features(model)
    if target is None:
        return None
    m, mod = model.checked, model.module

    def values(split: dict) -> np.ndarray:
        if target in split:
            return np.asarray(split[target], dtype=float)
        with np.errstate(all="ignore"):  # a node of data only: the generated `target`
            return np.asarray(mod.target(model.params, split), dtype=float)

    train, test = values(ds.train), values(ds.test) if _rows(ds.test) else np.zeros(0)
    if target in ds.classes:
        kind = "classes"
    elif _is_sigmoid(m, m.predict) and all(np.all(np.isin(y, (0, 1))) for y in (train, test)):
        kind = "binary"
    else:
        kind = "numeric"
    return Scored(target, train, test, kind)


def _is_sigmoid(m, name: str) -> bool:
    """Is the node `sigmoid(...)` (through plain renamings)?"""
    t = m.nodes.get(name)
    while t is not None and t.op == "name":
        t = m.nodes.get(t.name)
    return t is not None and t.op == "sigmoid"


def metrics(model: Model, ds: Dataset, fit: FitResult) -> dict:
    m, mod = model.checked, model.module
    out: dict = {"model": os.path.basename(m.file), "optimizer": str(m.train.optimizer)}
    with np.errstate(all="ignore"):
        out["train_loss"] = float(mod.loss(model.params, ds.train))
        out["test_loss"] = float(mod.loss(model.params, ds.test)) if _rows(ds.test) else None
    out.update(steps=fit.steps, seconds=fit.seconds, us_per_step=fit.us_per_step,
               compile_seconds=model.compiled.compile_seconds, compile_cached=model.compiled.cached,
               stable_rewrites=list(mod.STABLE_REWRITES))
    t = scored_target(model, ds)
    _, features = target_and_features(model)
    split = ds.test if _rows(ds.test) else ds.train
    out["evaluated_on"] = "test" if split is ds.test else "train"
    if t:
        out["target"] = t.name
        with np.errstate(all="ignore"):
            yhat = np.asarray(mod.predict(model.params, split), dtype=float)
        y = t.on(ds, split)
        if yhat.shape == y.shape:
            if t.kind == "classes":
                out["accuracy"] = float(np.mean(np.argmax(yhat, 1) == np.argmax(y, 1)))
            elif t.kind == "binary":
                out["accuracy"] = float(np.mean((yhat > 0.5) == (y == 1)))
                p = np.clip(yhat, LOG_LOSS_CLIP, 1 - LOG_LOSS_CLIP)
                out["log_loss"] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
            else:
                err = yhat - y
                out["rmse"] = float(np.sqrt(np.mean(err**2)))
                # A constant target has no variance to explain: R² is undefined (null), not
                # 1 - SSE / (rounding error of its mean), which printed -2.268e+31.
                constant = bool(np.all(y.max(axis=0) == y.min(axis=0))) if y.size else True
                sst = float(np.sum((y - y.mean(axis=0)) ** 2))
                out["r2"] = None if constant or not sst > 0 else float(1 - np.sum(err**2) / sst)
        out["baselines"] = _baselines(ds, t, features)
        out["baseline_metric"] = "test MSE" if t.kind == "numeric" else "test accuracy"
    else:
        out["baselines"] = {}
    if len(ds.sources) > 1:
        out.update(_global_fit(model, ds, t.name if t else None))
    if fit.divergence:
        out["diverged"] = {"step": fit.divergence.step, "node": fit.divergence.node,
                           "detail": fit.divergence.detail}
    if fit.convergence:
        out["fit"] = fit.convergence.to_json()
    if not fit.divergence:
        out.update(error_report(model, ds, fit))
    out["interrupted"] = fit.interrupted
    if fit.first_step:
        out["resumed_from_step"] = fit.first_step
    return out


def error_report(model: Model, ds: Dataset, fit: FitResult) -> dict:
    """`params` (value, stderr, ci95 of each scalar param and each element of a small one),
    `correlation` between them, and `uncertainty`: the rule used, or why there are no numbers.
    Error bars describe a minimum: a fit that did not converge gets the values alone."""
    with np.errstate(all="ignore"):
        bars, cov = error_bars(model.module, model.params, ds.train)
    conv = fit.convergence
    if conv is not None and not conv.converged and cov is not None:
        bars.covariance = cov = None
        bars.why_not = (f"the fit did not converge ({conv.reason}), and error bars describe a "
                        "minimum")
    pinned = at_bounds(model.module, model.params)
    if pinned and cov is not None:
        bars.covariance = cov = None
        bars.why_not = (", ".join(pinned) + (" is" if len(pinned) == 1 else " are")
                        + " at a bound, where the curvature does not give error bars")
    with np.errstate(all="ignore"):
        reports = {name: reported(model, ds, name, bars, cov) for name in model.checked.reports}
    out = {"params": bars.params_json(), "correlation": bars.correlation_json(),
           "uncertainty": bars.to_json()}
    if reports:
        out["reports"] = reports
    return out


def at_bounds(module, params) -> list[str]:
    """The params with an element on (within 1e-9 relative of) a finite bound."""
    out = []
    for name, (lo, hi) in module.BOUNDS.items():
        v = np.asarray(params[name], dtype=float)
        for end in (lo, hi):
            if np.isfinite(end) and np.any(np.abs(v - end) <= 1e-9 * max(1.0, abs(end))):
                out.append(name)
                break
    return out


def reported(model: Model, ds: Dataset, name: str, bars: Uncertainty, cov) -> dict:
    """A `report NAME` scalar on the training rows, ± σ by the delta method with its exact
    gradient (the generated `report_NAME`) and the params' covariance."""
    value, grads = getattr(model.module, f"report_{name}")(model.params, ds.train)
    value = float(value)
    if cov is None:
        return {"value": value, "stderr": None, "ci95": None}
    gradient = Flat(model.module, model.params).pack(grads)
    sigma = delta_method(gradient, cov)
    return {"value": value, "stderr": sigma, "ci95": list(bars.interval(value, sigma))}


def _global_fit(model: Model, ds: Dataset, target: str | None) -> dict:
    """A global fit's report: the shared params, and for each source its own params, its rows
    and how well the model fits them (the objective on its rows; RMSE against the target)."""
    m, mod = model.checked, model.module
    own = m.per_source
    out: dict = {"shared_params": {n: _plain(model.params[n]) for n in m.params if n not in own},
                 "sources": []}
    start = [0, 0]
    for k, (name, n_train, n_test) in enumerate(ds.sources):
        rows = {split: {i: v[start[j]:start[j] + n] for i, v in arrays.items()}
                for j, (split, arrays, n) in enumerate((("train", ds.train, n_train),
                                                        ("test", ds.test, n_test)))}
        start = [start[0] + n_train, start[1] + n_test]
        entry = {"name": name, "train_rows": n_train, "test_rows": n_test,
                 "params": {n: _plain(model.params[n][k]) for n in own}}
        with np.errstate(all="ignore"):
            entry["train_loss"] = float(mod.loss(model.params, rows["train"]))
            if target and target not in ds.classes:
                yhat = np.asarray(mod.predict(model.params, rows["train"]), dtype=float)
                entry["rmse"] = float(np.sqrt(np.mean((yhat - rows["train"][target]) ** 2)))
        out["sources"].append(entry)
    return out


def _plain(v) -> float | list:
    """A param's value for JSON: a number, or nested lists."""
    v = np.asarray(v, dtype=float)
    return float(v) if v.ndim == 0 else v.tolist()


def _rows(arrays: dict) -> int:
    return len(next(iter(arrays.values()))) if arrays else 0


def _baselines(ds: Dataset, t: Scored, features: list[str]) -> dict[str, float]:
    if not features or not _rows(ds.test):
        return {}
    Xtr = np.column_stack([ds.train[f].reshape(len(ds.train[f]), -1) for f in features])
    Xte = np.column_stack([ds.test[f].reshape(len(ds.test[f]), -1) for f in features])
    ytr, yte = t.train, t.test
    if t.kind == "binary":  # as two one-hot columns: class 0, class 1
        ytr, yte = (np.column_stack([1 - y.ravel(), y.ravel()]) for y in (ytr, yte))
    if t.kind == "numeric":
        return baselines.regression_baselines(Xtr, ytr, Xte, yte)
    return baselines.classification_baselines(Xtr, ytr, Xte, yte)


# ---- artifacts ------------------------------------------------------------------------------


def save_report(path: str, report: dict) -> None:
    text = json.dumps(_clean_for_json(report), indent=2, allow_nan=False)
    atomic_write(path, (text + "\n").encode())


def _clean_for_json(report: dict) -> dict:
    """NaN and inf are not JSON: they become null."""
    def fix(v):
        if isinstance(v, float) and not np.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return v
    return fix(report)
