"""After training: the figures a user compares (loss, RMSE, R² or accuracy, the baselines on the
same split) and the artifacts of a run, each written atomically."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from compiler.deps import ancestors
from compiler.errors import DataError
from dsl.training import baselines
from dsl.front.check import Checked
from dsl.training.data import OneHot, Standardizer
from dsl.front.files import NotRegularFile, open_regular, replacing
from dsl.training.runtime import Dataset, atomic_write, check_sizes
from dsl.training.train import Checkpoint, FitResult, Flat, History
from dsl.training.uncertainty import Uncertainty, delta_method, error_bars

if TYPE_CHECKING:  # the API (dsl.model) reads params files with `load_params`
    from dsl.model import Model

TRANSFORM_PREFIX = "__transform__"
CLASSES_PREFIX = "__classes__"  # a onehot input's classes, numbers or texts, sorted
CHECKPOINT_PREFIX = "__train__"  # where training stopped, saved with the params for --resume
HISTORY_COLUMNS = ["step", "epoch", "train_loss", "test_loss", "seconds"]
PLOT_ROWS = 5000  # a loss curve shows about this many of a history's rows (at most twice as many)
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

def save_params(path: str, params: dict, transforms: dict[str, Standardizer],
                checkpoint: Checkpoint | None = None,
                classes: dict[str, OneHot] | None = None) -> None:
    """The params, the inputs' transforms and one-hot classes (what `predict` needs to read new
    rows as training read its rows) and, for --resume, the training checkpoint, in one file
    written at once: they always belong together."""
    atomic_write(path, params_file(params, transforms, checkpoint, classes))


def params_file(params: dict, transforms: dict[str, Standardizer],
                checkpoint: Checkpoint | None = None,
                classes: dict[str, OneHot] | None = None) -> bytes:
    """The bytes of a params.npz (see `save_params`)."""
    arrays = dict(params)
    for name, t in transforms.items():
        for key, value in t.to_arrays().items():
            arrays[f"{TRANSFORM_PREFIX}{name}__{key}"] = value
    for name, onehot in (classes or {}).items():
        arrays[CLASSES_PREFIX + name] = onehot.classes
    if checkpoint is not None:
        arrays.update(_checkpoint_arrays(checkpoint))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save_fallback(name: str, data: bytes) -> str | None:
    """Where params that could not be saved where asked went: a new file in the temporary
    folder, else in the home folder; None when neither can be written either."""
    for folder in (tempfile.gettempdir(), os.path.expanduser("~")):
        try:
            fd, path = tempfile.mkstemp(dir=folder, prefix=f"dsl-{name}-", suffix="-params.npz")
        except OSError:
            continue
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return path
        except OSError:
            os.unlink(path)
    return None


def _read_npz(path: str, wanted, checked: Checked | None = None) -> dict[str, np.ndarray]:
    """The members of an .npz whose names `wanted(name)` accepts, and only those: each one's
    header (dtype and shape) is checked before its data is read, so that a small file cannot
    make us allocate gigabytes for a member the model never names. Never unpickles."""
    _check_is_npz(path)
    try:
        with open_regular(path) as f, zipfile.ZipFile(f) as z:
            out = {}
            for member in z.namelist():
                name = member[:-len(".npy")]
                if not member.endswith(".npy") or not wanted(name):
                    continue
                with z.open(member) as m:
                    version = np.lib.format.read_magic(m)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(m)
                _check_member(path, name, shape, dtype, checked)
                with z.open(member) as m:
                    out[name] = np.lib.format.read_array(m, allow_pickle=False)
            return out
    except FileNotFoundError:
        raise DataError(f"no such params file: {path}", hint="`dsl run` saves params.npz in its output folder") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not a params file") from None
    except NotRegularFile as e:
        raise DataError(f"cannot read params file {path}: {e.strerror}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path} is not a params file saved by dsl ({e})") from None


def _check_is_npz(path: str) -> None:
    """An .npz is a zip archive. Anything else is refused before numpy sees it: numpy takes an
    unknown file (a CSV, say) for a pickle and advises loading it unsafely with allow_pickle."""
    try:
        with open_regular(path) as f:
            head = f.read(4)
    except OSError:
        return  # _read_npz says why
    if head[:2] != b"PK":
        csv = path.lower().endswith((".csv", ".csv.gz"))
        raise DataError(f"{path} is not a params file saved by dsl: it is not an .npz archive",
                        hint="a CSV is data: give it with --data; params come from `dsl run`, "
                        "which saves runs/<model>/params.npz" if csv else
                        "`dsl run` saves the params in runs/<model>/params.npz")


class SavedParams(NamedTuple):
    """What a params file holds besides the checkpoint."""

    params: dict[str, np.ndarray]
    transforms: dict[str, Standardizer]
    classes: dict[str, OneHot]


def _check_member(path: str, name: str, shape: tuple, dtype: np.dtype,
                  checked: Checked | None) -> None:
    """Params and transforms are real arrays (classes may be text), a param of the model's
    declared shape: checked from the header, before the data is read."""
    if name.startswith(CHECKPOINT_PREFIX):
        return
    span = checked.params[name].span if checked and name in checked.params else None
    if dtype.kind not in ("biufU" if name.startswith(CLASSES_PREFIX) else "biuf"):
        raise DataError(f"`{name}` in {path} is an array of {dtype}, not of real numbers", span,
                        "was the file saved by `dsl run`?")
    if span is not None:
        check_sizes(checked, {name: np.broadcast_to(np.zeros((), dtype), shape)}, None)


def _input_of(name: str) -> str | None:
    """The input a transform's or classes' member belongs to, else None."""
    if name.startswith(CLASSES_PREFIX):
        return name[len(CLASSES_PREFIX):]
    if name.startswith(TRANSFORM_PREFIX) and "__" in name[len(TRANSFORM_PREFIX):]:
        return name[len(TRANSFORM_PREFIX):].rsplit("__", 1)[0]
    return None


def load_params(path: str, checked: Checked | None = None) -> SavedParams:
    """The params, the inputs' transforms and classes saved in `path`: with `checked`, only the
    model's own (each param checked against its declaration before it is read), else all."""
    def wanted(name: str) -> bool:
        if name.startswith((TRANSFORM_PREFIX, CLASSES_PREFIX, CHECKPOINT_PREFIX)):
            inp = _input_of(name)
            return inp is not None and (checked is None or inp in checked.inputs)
        return checked is None or name in checked.params
    arrays = _read_npz(path, wanted, checked)
    params = {k: v for k, v in arrays.items() if not k.startswith((TRANSFORM_PREFIX, CLASSES_PREFIX))}
    parts: dict[str, dict] = {}
    classes = {}
    try:
        for k, v in arrays.items():
            if k.startswith(TRANSFORM_PREFIX):
                name, key = k[len(TRANSFORM_PREFIX):].rsplit("__", 1)
                parts.setdefault(name, {})[key] = v
            elif k.startswith(CLASSES_PREFIX):
                classes[k[len(CLASSES_PREFIX):]] = OneHot.from_array(v)
        transforms = {n: Standardizer.from_arrays(d) for n, d in parts.items()}
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path} is not a params file saved by dsl ({e})") from None
    return SavedParams(params, transforms, classes)


def _checkpoint_arrays(c: Checkpoint) -> dict[str, np.ndarray]:
    p = CHECKPOINT_PREFIX
    order = None if c.order is None else {"rng": c.order[0], "pos": int(c.order[2])}
    out = {p + "step": np.array(c.step), p + "seconds": np.array(float(c.seconds)),
           p + "optimizer": np.array(c.optimizer), p + "rows": np.array(c.rows),
           p + "batch": np.array(0 if c.batch is None else c.batch),
           p + "order": np.array(json.dumps(order))}
    if c.order is not None and c.order[1] is not None:
        out[p + "perm"] = np.asarray(c.order[1])
    for key, value in c.buffers.items():
        out[f"{p}buffer__{key}"] = np.asarray(value)
    if c.model is not None:
        out[p + "model"] = np.array(c.model)
    return out


def load_checkpoint(path: str) -> Checkpoint | None:
    """The training checkpoint saved with the params, or None when the file has none."""
    p = CHECKPOINT_PREFIX
    arrays = _read_npz(path, lambda name: name.startswith(p))
    if p + "step" not in arrays:
        return None
    try:
        step, rows, batch = (int(arrays[p + k]) for k in ("step", "rows", "batch"))
        seconds = float(arrays[p + "seconds"])
        order = json.loads(str(arrays[p + "order"]))
        if order is not None:
            np.random.default_rng().bit_generator.state = order["rng"]  # refused if malformed
            perm = arrays.get(p + "perm")
            if perm is not None and not (perm.ndim == 1 and perm.dtype.kind in "iu"
                                         and len(perm) == rows
                                         and np.array_equal(np.sort(perm), np.arange(rows))):
                raise ValueError("the batch order is not a permutation of the rows")
            order = (order["rng"], perm, int(order["pos"]))
        buffers = {k[len(p + "buffer__"):]: v for k, v in arrays.items()
                   if k.startswith(p + "buffer__")}
        if step < 0 or rows < 1 or batch < 0 or not math.isfinite(seconds) or any(
                v.dtype.kind not in "iuf" for v in buffers.values()):
            raise ValueError("a value is out of range")
        model = str(arrays[p + "model"]) if p + "model" in arrays else None
        return Checkpoint(step, seconds, str(arrays[p + "optimizer"]), rows, batch or None, order,
                          buffers, model)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"the training checkpoint in {path} is damaged ({e})",
                        hint="run without --resume to start again") from None


def _history_rows(path: str):
    """The rows of a history.csv, parsed one at a time; ValueError when it is not one."""
    with open_regular(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        if next(reader, None) != HISTORY_COLUMNS:
            raise ValueError("not a history written by dsl")
        for r in reader:
            yield int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4])


_HISTORY_ERRORS = (OSError, UnicodeDecodeError, csv.Error, ValueError, IndexError)


def load_history(path: str, most: int | None = None) -> History | None:
    """A history written by `dsl run`, or None when there is none or it cannot be read. With
    `most`, at most about twice that many rows, evenly spaced, and the last (for a plot): read
    streaming, so that a long run's history is never in memory whole."""
    h, stride, last = History(), 1, None
    try:
        for i, row in enumerate(_history_rows(path)):
            last = (i, row)
            if i % stride == 0:
                _append(h, row)
                if most and len(h.step) > 2 * most:
                    for c in (h.step, h.epoch, h.train_loss, h.test_loss, h.seconds):
                        del c[1::2]
                    stride *= 2
    except _HISTORY_ERRORS:
        return None
    if last is not None and last[0] % stride:
        _append(h, last[1])
    if all(math.isnan(t) for t in h.test_loss):
        h.test_loss.clear()
    return h


def _append(h: History, row: tuple) -> None:
    for column, value in zip((h.step, h.epoch, h.train_loss, h.test_loss, h.seconds), row):
        column.append(value)


class HistoryFile:
    """`dsl run`'s history.csv, written as training logs (`history`, the History whose sink it
    is) rather than kept in memory. It starts with the earlier run's rows before the step a
    resumed run continues from; the rows at that step start `history`, which training keeps or
    drops as before. `finish` writes the rows `history` still holds."""

    def __init__(self, path: str, resume_step: int | None = None):
        self.path, self.history, self.readable = path, History(sink=self), True
        with replacing(path, text=True) as f:
            self.file, self.csv = f, csv.writer(f, lineterminator="\n")
            self.csv.writerow(HISTORY_COLUMNS)
            if resume_step is not None:
                self._copy(path, resume_step)
        self.file = open(path, "a", encoding="utf-8", newline="")
        self.csv = csv.writer(self.file, lineterminator="\n")

    def _copy(self, path: str, resume_step: int) -> None:
        start = self.file.tell()
        try:
            for row in _history_rows(path):
                if row[0] < resume_step:
                    self.write([row])
                elif row[0] == resume_step:
                    _append(self.history, row)
        except _HISTORY_ERRORS:  # the history starts here, as `run` says
            self.readable, self.history = False, History(sink=self)
            self.file.seek(start)
            self.file.truncate()

    def write(self, rows) -> None:
        self.csv.writerows([r[0], f"{r[1]:.6g}", repr(r[2]), repr(r[3]), f"{r[4]:.6f}"]
                           for r in rows)
        self.file.flush()  # a run killed outright keeps the rows written so far

    def finish(self, history: History) -> None:
        """Write the rows `history` still holds, and close."""
        self.write(list(history.rows()))
        self.file.close()


def save_history(path: str, fit: FitResult) -> None:
    """The end of a run's history.csv (`path`, written by its HistoryFile as training went):
    the rows the History still holds."""
    fit.history.sink.finish(fit.history)


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
