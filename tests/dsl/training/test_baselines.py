"""dsl.training.baselines: the figures a trained model is compared with."""
from __future__ import annotations

import os

import numpy as np
import pytest

from dsl.training import baselines
from dsl.training.baselines import classification_baselines, nearest, regression_baselines
from dsl.training.data import read_csv, split_rows

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BOSTON = os.path.join(ROOT, "examples", "data", "boston.csv")


def boston_split():
    """The anchors' setup: X z-scored on all rows, 80/20 split by a permutation seeded 666."""
    a = read_csv(BOSTON).values
    X, y = a[:, :13], a[:, 13]
    X = (X - X.mean(0)) / X.std(0)
    train, test = split_rows(len(X), 0.8, 666)
    return X[train], y[train], X[test], y[test]


def test_boston_figures_match_the_anchors():
    got = regression_baselines(*boston_split())
    assert got["mean"] == pytest.approx(92.4, abs=0.2)
    assert got["least_squares"] == pytest.approx(24.0, abs=0.2)
    assert got["knn3"] == pytest.approx(15.9, abs=0.2)


def test_one_column_targets_give_the_same_figures():
    Xtr, ytr, Xte, yte = boston_split()
    assert regression_baselines(Xtr, ytr[:, None], Xte, yte[:, None]) == \
        regression_baselines(Xtr, ytr, Xte, yte)
    assert regression_baselines(Xtr, ytr, Xte, yte[:, None]) == \
        regression_baselines(Xtr, ytr, Xte, yte)


def test_regression_by_hand():
    Xtr = np.array([[0.0], [1.0], [2.0], [10.0]])
    ytr = np.array([1.0, 3.0, 5.0, 21.0])  # y = 2x + 1 exactly
    Xte, yte = np.array([[1.1], [9.0]]), np.array([3.2, 19.0])
    got = regression_baselines(Xtr, ytr, Xte, yte)
    assert got["mean"] == pytest.approx(((3.2 - 7.5) ** 2 + (19 - 7.5) ** 2) / 2)
    assert got["least_squares"] == pytest.approx(0.0, abs=1e-20)
    # neighbours of 1.1: 1, 2, 0 -> mean 3; of 9: 10, 2, 1 -> mean 29/3
    assert got["knn3"] == pytest.approx(((3.2 - 3) ** 2 + (19 - 29 / 3) ** 2) / 2)


def test_multi_output_mse_averages_all_elements():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(30, 2)), rng.normal(size=(30, 3))
    got = regression_baselines(X[:20], Y[:20], X[20:], Y[20:])
    assert got["mean"] == pytest.approx(np.mean((Y[20:] - Y[:20].mean(0)) ** 2))


def test_nothing_to_compare():
    X, y = np.ones((3, 2)), np.ones(3)
    assert regression_baselines(X, y, X[:0], y[:0]) == {}
    assert classification_baselines(X, np.eye(3), X[:0], np.eye(3)[:0]) == {}


def test_nearest_is_chunked_exactly(monkeypatch):
    rng = np.random.default_rng(2)
    Xtr, Xte = rng.normal(size=(50, 4)), rng.normal(size=(23, 4))
    d = ((Xte[:, None, :] - Xtr[None, :, :]) ** 2).sum(-1)
    want = np.argsort(d, axis=1)[:, :3]
    monkeypatch.setattr(baselines, "CHUNK_CELLS", 120)  # blocks of 2 test rows
    assert np.array_equal(nearest(Xtr, Xte, 3), want)
    assert nearest(Xtr[:2], Xte, 3).shape == (23, 2)


def test_classification_by_hand():
    Xtr = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [20.0]])
    ctr = np.array([0, 0, 1, 1, 1, 2])
    Xte = np.array([[0.4], [10.4], [14.0]])
    cte = np.array([0, 1, 2])
    eye = np.eye(3)
    got = classification_baselines(Xtr, eye[ctr], Xte, eye[cte])
    assert got["majority"] == pytest.approx(1 / 3)  # class 1 always
    # 0.4 -> 0,0,1 votes 0; 10.4 -> 1,1,1; 14 -> 11(1), 10(1), 20(2) votes 1
    assert got["knn3"] == pytest.approx(2 / 3)
    assert set(got) == {"majority", "least_squares", "knn3"}


def test_three_way_tie_goes_to_the_nearest():
    Xtr = np.array([[0.0], [1.0], [-2.5]])
    eye = np.eye(3)
    got = classification_baselines(Xtr, eye, np.array([[0.9]]), eye[[1]])
    assert got["knn3"] == 1.0
    got = classification_baselines(Xtr, eye, np.array([[-0.9]]), eye[[0]])
    assert got["knn3"] == 1.0


def test_least_squares_classifier_separates_separable_classes():
    rng = np.random.default_rng(3)
    c = rng.integers(0, 2, size=200)
    X = rng.normal(size=(200, 2)) + 6 * c[:, None]
    Y = np.eye(2)[c]
    got = classification_baselines(X[:150], Y[:150], X[150:], Y[150:])
    assert got["least_squares"] == 1.0 and got["knn3"] == 1.0
