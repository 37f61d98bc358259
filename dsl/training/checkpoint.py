"""What lets a run stop and go on: params.npz (the params, the inputs' transforms and one-hot
classes, and for --resume where training stopped) and history.csv, each written atomically and
read back without trusting the file (never unpickled, each member's size checked first)."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

from compiler.errors import DataError
from dsl.front.check import Checked
from dsl.front.files import NotRegularFile, open_regular, replacing
from dsl.training.data import OneHot, Standardizer
from dsl.training.runtime import atomic_write, check_sizes
from dsl.training.train import Checkpoint, FitResult, History

TRANSFORM_PREFIX = "__transform__"
CLASSES_PREFIX = "__classes__"  # a onehot input's classes, numbers or texts, sorted
CHECKPOINT_PREFIX = "__train__"  # where training stopped, saved with the params for --resume
HISTORY_COLUMNS = ["step", "epoch", "train_loss", "test_loss", "seconds"]


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
