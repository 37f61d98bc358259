"""PNG plots of a run: loss curve, predicted vs true, residuals, and a data file's correlations.

matplotlib is optional: every function returns the written path, or None when matplotlib is
not installed (the caller says so in one line). Figures are drawn on matplotlib's Agg canvas
directly, without pyplot, so that nothing global changes: no backend switch under a notebook
that has its own, and no figures left open in pyplot's registry.

A fresh `dsl run` draws them in a process forked at its start (dsl.views.painter), which
imports this module while the run works: the drawing functions need only numpy and matplotlib,
and the functions that read dsl's data types import them when called (the parser and the
training modules would cost that process 0.06 s more).
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from dsl.views.painter import Painter, available

if TYPE_CHECKING:
    from dsl.training.data import Table
    from dsl.model import Model
    from dsl.training.runtime import Dataset
    from dsl.training.train import FitResult

PLOT_ROWS = 5000  # a loss curve shows about this many of a history's rows (at most twice as many)
ANNOTATE_MAX = 20  # annotate each heatmap cell with its value up to this many columns
LABEL_MAX = 40  # name the heatmap's rows and columns up to this many columns
# A heatmap shows at most this many columns: more are unreadable, and their n x n correlations
# grow without bound (40,000 columns would need 12 GiB).
HEATMAP_MAX = 100


_PLOTTABLE = 1e100


def loss_curve(steps: Sequence[float], train_loss: Sequence[float],
               test_loss: Sequence[float | None] | None, path: str, title: str) -> str | None:
    """Training (and test) loss against steps; log scale when every loss is positive."""
    fig = _figure((7, 4.5))
    if fig is None:
        return None
    ax = fig.add_subplot()
    x = np.asarray(steps, dtype=np.float64)
    curves = [("train", _floats(train_loss))]
    if test_loss is not None:
        curves.append(("test", _floats(test_loss)))
    for label, y in curves:  # a diverged run's huge losses would overflow the axis ticks
        ok = np.isfinite(y) & (np.abs(y) < _PLOTTABLE)
        ax.plot(x[ok], y[ok], label=label, linewidth=1.2)
    finite = np.concatenate([y[np.isfinite(y) & (np.abs(y) < _PLOTTABLE)] for _, y in curves])
    if len(finite) and np.all(finite > 0):
        ax.set_yscale("log")
        _plain_log_labels(ax.yaxis)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(_plain(title))
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


def predicted_vs_true(y: np.ndarray, yhat: np.ndarray, path: str, title: str) -> str | None:
    """Each prediction against its target, with the diagonal a perfect model would sit on."""
    fig = _figure((5.5, 5.5))
    if fig is None:
        return None
    ax = fig.add_subplot()
    t, p = _pair(y, yhat)
    ax.scatter(t, p, s=10, alpha=0.6, edgecolors="none")
    both = np.concatenate([t, p])
    if len(both):
        lo, hi = float(both.min()), float(both.max())
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, linestyle="--", label="y = x")
        ax.legend(loc="upper left")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(_plain(title))
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def residuals(y: np.ndarray, yhat: np.ndarray, path: str, title: str) -> str | None:
    """Residuals (true - predicted) against the prediction, and their histogram."""
    fig = _figure((10, 4.5))
    if fig is None:
        return None
    t, p = _pair(y, yhat)
    r = t - p
    left, right = fig.subplots(1, 2)
    left.scatter(p, r, s=10, alpha=0.6, edgecolors="none")
    left.axhline(0.0, color="black", linewidth=1, linestyle="--")
    left.set_xlabel("predicted")
    left.set_ylabel("true - predicted")
    left.grid(True, alpha=0.3)
    if len(r):
        right.hist(r, bins=min(50, max(5, len(r) // 10)))
    right.set_xlabel("true - predicted")
    right.set_ylabel("count")
    fig.suptitle(_plain(title))
    return _save(fig, path)


def correlation_heatmap(table: Table, path: str) -> str | None:
    """Pearson correlations between a data file's first HEATMAP_MAX numeric columns
    (`heatmap_columns`); blank where a column is constant."""
    from dsl.training.data import Table, correlations, numeric_part
    table = numeric_part(table)
    n, total = heatmap_columns(table), len(table.columns)
    if n < total:
        table = Table(table.path, table.columns[:n], table.values[:, :n])
    side = min(4 + 0.45 * n, 16)
    fig = _figure((side + 1.5, side), layout="tight")  # room for the names and the colorbar
    if fig is None:
        return None
    ax = fig.add_subplot()
    c = correlations(table)
    image = ax.imshow(np.ma.masked_invalid(c), cmap="RdBu_r", vmin=-1, vmax=1,
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="correlation")
    if n <= LABEL_MAX:
        labels = [_plain(c) for c in table.columns]
        ax.set_xticks(range(n), labels, rotation=90)
        ax.set_yticks(range(n), labels)
    if n <= ANNOTATE_MAX:
        for i in range(n):
            for j in range(n):
                if np.isfinite(c[i, j]):
                    ax.text(j, i, f"{c[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(c[i, j]) > 0.6 else "black")
    ax.set_title(_plain(f"correlations: {table.name}" + (f" (first {n} of {total} columns)"
                                                         if n < total else "")))
    return _save(fig, path)


def _plain_log_labels(axis) -> None:
    """Label a log axis's ticks as matplotlib would choose them, in plain text (`0.01`, `1e+04`):
    its default writes 10^k in mathtext, whose parser takes longer than drawing the plot."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        def __call__(self, x, pos=None):
            return super().__call__(x, pos) and f"{x:.3g}"
    axis.set_major_formatter(Plain())
    axis.set_minor_formatter(Plain(labelOnlyBase=False))


def _plain(text: str) -> str:
    """A name from the user (a file, a column) shown as written: matplotlib reads `$...$` as
    maths, and a name such as `$\\frac{$` would fail at save time, after training."""
    return text.replace("$", r"\$")


def heatmap_columns(table: Table) -> int:
    """How many of the table's numeric columns, the first ones, a heatmap shows."""
    from dsl.training.data import numeric_part
    return min(len(numeric_part(table).columns), HEATMAP_MAX)


def _figure(size: tuple[float, float], layout: str | None = None):
    """A Figure on the Agg canvas, or None without matplotlib. Without a layout engine the
    default margins hold a plot's short tick labels, and the figure is drawn once, not twice."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> str:
    """Write next to the target and rename, so a reader never sees half a PNG."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            fig.savefig(f, format=fmt, dpi=100)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _floats(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _pair(y: np.ndarray, yhat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets and predictions flattened, keeping only the pairs where both are finite."""
    t = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(yhat, dtype=np.float64).ravel()
    ok = np.isfinite(t) & np.isfinite(p)
    return t[ok], p[ok]


def save_plots(out: str, model: Model, ds: Dataset, fit: FitResult,
               painter: Painter | None = None) -> list[str]:
    """The loss curve, predicted against true, residuals; [] when matplotlib is missing. Drawn
    by `painter` when given (a child process that has imported matplotlib meanwhile)."""
    if not available():
        return []
    from dsl.training.checkpoint import HistoryFile, load_history
    from dsl.training.report import scored_target
    name = os.path.splitext(os.path.basename(model.checked.file))[0]
    h = fit.history
    if isinstance(h.sink, HistoryFile):  # the rows are in the file: read a plot's worth back
        h = load_history(h.sink.path, PLOT_ROWS) or h
    jobs = [(loss_curve, (h.step, h.train_loss, h.test_loss or None,
                          os.path.join(out, "loss.png"), f"{name}: loss"))]
    t = scored_target(model, ds)
    split = ds.test if ds.test and len(next(iter(ds.test.values()))) else ds.train
    if t and t.kind == "numeric":
        with np.errstate(all="ignore"):
            yhat = np.asarray(model.module.predict(model.params, split), dtype=float).ravel()
        y = t.on(ds, split).ravel()
        if yhat.shape == y.shape and np.all(np.isfinite(yhat)):
            jobs.append((predicted_vs_true, (y, yhat, os.path.join(out, "predicted.png"),
                                             f"{name}: predicted vs true")))
            jobs.append((residuals, (y, yhat, os.path.join(out, "residuals.png"),
                                     f"{name}: residuals")))
    written = (painter or Painter(wanted=False)).draw(jobs)
    return [w for w in written if w]
