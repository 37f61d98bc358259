"""dsl.views.plots: each plot writes a PNG atomically, or returns None without matplotlib."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from dsl.views import plots
from dsl.training.data import Table

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == PNG


def only(directory, name) -> bool:
    """The plot is there and no temporary file was left beside it."""
    return sorted(os.listdir(directory)) == [name]


def test_loss_curve(tmp_path):
    steps = np.arange(50)
    train = np.exp(-steps / 10.0) + 0.1
    test = [None] * 25 + list(train[25:] + 0.05)
    path = str(tmp_path / "loss.png")
    assert plots.loss_curve(steps, train, test, path, "m: loss") == path
    assert is_png(path) and only(tmp_path, "loss.png")
    path2 = str(tmp_path / "sub" / "loss.png")
    train[10] = np.nan
    assert plots.loss_curve(list(steps), list(train), None, path2, "diverged") == path2
    assert is_png(path2)


def test_predicted_vs_true_and_residuals(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.normal(size=(40, 1))
    yhat = y + 0.1 * rng.normal(size=(40, 1))
    yhat[3] = np.inf
    a = str(tmp_path / "pvt.png")
    b = str(tmp_path / "res.png")
    assert plots.predicted_vs_true(y, yhat, a, "m: test") == a
    assert plots.residuals(y.ravel(), yhat, b, "m: test") == b
    assert is_png(a) and is_png(b)
    assert sorted(os.listdir(tmp_path)) == ["pvt.png", "res.png"]


def test_correlation_heatmap_with_a_constant_column(tmp_path):
    values = np.array([[1.0, 7, 2], [2, 7, 4], [3, 7, 7]])
    path = str(tmp_path / "corr.png")
    assert plots.correlation_heatmap(Table("c.csv", ["a", "k", "b"], values), path) == path
    assert is_png(path) and only(tmp_path, "corr.png")


def test_overwrites_atomically(tmp_path):
    path = tmp_path / "pvt.png"
    path.write_bytes(b"old")
    plots.predicted_vs_true([1.0, 2.0], [1.0, 2.5], str(path), "again")
    assert is_png(path) and only(tmp_path, "pvt.png")


def test_none_without_matplotlib(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    assert plots.available() is True  # installed here (importorskip above)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert plots.available() is False
    path = str(tmp_path / "x.png")
    assert plots.loss_curve([0, 1], [1.0, 0.5], None, path, "t") is None
    assert plots.predicted_vs_true([1.0], [1.0], path, "t") is None
    assert plots.residuals([1.0], [1.0], path, "t") is None
    assert plots.correlation_heatmap(Table("c.csv", ["a"], np.ones((2, 1))), path) is None
    assert os.listdir(tmp_path) == []


def test_names_with_dollar_signs_are_shown_as_written(tmp_path):
    """matplotlib reads `$...$` as maths: a model file or a column named `$\\frac{$` failed at
    save time, after training, and the report was lost (issue 13 item 11)."""
    name = r"a$\frac{$"
    y = np.array([1.0, 2.0, 3.0])
    for draw in (lambda p: plots.loss_curve([0, 1], [2.0, 1.0], None, p, f"{name}: loss"),
                 lambda p: plots.predicted_vs_true(y, y + 0.1, p, f"{name}: predicted vs true"),
                 lambda p: plots.residuals(y, y + 0.1, p, f"{name}: residuals")):
        path = str(tmp_path / "plot.png")
        assert draw(path) == path and is_png(path)
    table = Table(f"{name}.csv", ["a", name, "$x_$"], np.array([[1.0, 2, 3], [2, 3, 5], [4, 1, 2]]))
    path = str(tmp_path / "heat.png")
    assert plots.correlation_heatmap(table, path) == path and is_png(path)


def drawn(monkeypatch) -> list:
    """The figures the plots draw, kept as they are saved."""
    figures = []
    real = plots._save

    def keep(fig, path):
        figures.append(fig)
        return real(fig, path)
    monkeypatch.setattr(plots, "_save", keep)
    return figures


def test_run_plots_are_drawn_once_and_log_labels_are_plain_text(tmp_path, monkeypatch):
    """A `run` draws its plots in well under a second: no layout engine (which draws each
    figure twice to measure it) and no mathtext (whose parser alone costs more than a plot)
    for the loss curve's log axis, whose labels read as numbers (`100`, `0.01`, `1e+04`)."""
    figures = drawn(monkeypatch)
    steps = np.arange(30)
    plots.loss_curve(steps, np.logspace(5, -8, 30), None, str(tmp_path / "loss.png"), "m: loss")
    y = np.linspace(0.0, 1.0, 20)
    plots.predicted_vs_true(y, y + 0.01, str(tmp_path / "predicted.png"), "m")
    plots.residuals(y, y + 0.01, str(tmp_path / "residuals.png"), "m")
    assert len(figures) == 3 and all(f.get_layout_engine() is None for f in figures)
    axis = figures[0].axes[0].yaxis
    labels = [t.get_text() for t in axis.get_ticklabels() if t.get_text()]
    assert "100" in labels and "0.01" in labels and "1e+04" in labels
    assert not any("$" in label for label in labels)


def test_the_heatmap_keeps_a_layout_that_makes_room_for_its_names(tmp_path, monkeypatch):
    figures = drawn(monkeypatch)
    values = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0]])
    table = Table("d.csv", ["a_long_column_name", "b"], values)
    plots.correlation_heatmap(table, str(tmp_path / "h.png"))
    assert figures[0].get_layout_engine() is not None
