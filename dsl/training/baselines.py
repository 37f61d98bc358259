"""The simple predictors a trained model is compared with, on the same train/test split.

A model that does not beat predicting the mean, or least squares, has learned nothing worth
its training time; k-nearest-neighbours (k = 3) was the tutorial's first comparison on Boston.
"""
from __future__ import annotations

import numpy as np

K = 3
CHUNK_CELLS = 2_000_000  # test rows x train rows per distance block: about 16 MB of float64


def regression_baselines(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray,
                         yte: np.ndarray) -> dict[str, float]:
    """Test MSE of `mean`, `least_squares` and `knn3`; empty when there is nothing to compare."""
    Xtr, Xte = _as_matrix(Xtr), _as_matrix(Xte)
    ytr, yte = _as_matrix(ytr), _as_matrix(yte)  # 1-D targets as one column: no broadcasting slip
    if len(Xtr) == 0 or len(Xte) == 0:
        return {}
    neighbours = nearest(Xtr, Xte, K)
    predictions = {
        "mean": np.broadcast_to(ytr.mean(axis=0), yte.shape),
        "least_squares": _least_squares(Xtr, ytr, Xte),
        "knn3": ytr[neighbours].mean(axis=1),
    }
    return {name: _mse(yte, p) for name, p in predictions.items()}


def classification_baselines(Xtr: np.ndarray, Ytr: np.ndarray, Xte: np.ndarray,
                             Yte: np.ndarray) -> dict[str, float]:
    """Test accuracy of `majority`, `least_squares` and `knn3` for one-hot targets (rows x k)."""
    Xtr, Xte = _as_matrix(Xtr), _as_matrix(Xte)
    Ytr, Yte = _as_matrix(Ytr), _as_matrix(Yte)
    if len(Xtr) == 0 or len(Xte) == 0:
        return {}
    ctr, cte = Ytr.argmax(axis=1), Yte.argmax(axis=1)
    majority = np.full(len(Xte), Ytr.sum(axis=0).argmax())
    least_squares = _least_squares(Xtr, Ytr, Xte).argmax(axis=1)
    votes = ctr[nearest(Xtr, Xte, K)]
    if votes.shape[1] == K:
        # Two of three agreeing wins; three different classes go to the nearest neighbour.
        knn = np.where(votes[:, 1] == votes[:, 2], votes[:, 1], votes[:, 0])
    else:
        knn = votes[:, 0]
    return {name: float(np.mean(pred == cte))
            for name, pred in (("majority", majority), ("least_squares", least_squares),
                               ("knn3", knn))}


def nearest(Xtr: np.ndarray, Xte: np.ndarray, k: int) -> np.ndarray:
    """Indices (test rows x min(k, train rows)) of the nearest training rows, nearest first.

    Squared Euclidean distances from |a|^2 + |b|^2 - 2ab, in blocks of test rows so that
    5000 x 5000 never holds the whole distance matrix at once.
    """
    k = min(k, len(Xtr))
    train_sq = np.einsum("ij,ij->i", Xtr, Xtr)
    block = max(1, CHUNK_CELLS // max(len(Xtr), 1))
    out = np.empty((len(Xte), k), dtype=np.intp)
    for start in range(0, len(Xte), block):
        q = Xte[start:start + block]
        d = train_sq[None, :] - 2.0 * (q @ Xtr.T)  # + |q|^2, which does not change the order
        idx = np.argpartition(d, k - 1, axis=1)[:, :k] if k < len(Xtr) else np.tile(
            np.arange(len(Xtr)), (len(q), 1))
        dist = np.take_along_axis(d, idx, axis=1)
        order = np.lexsort((idx, dist), axis=1)  # by distance, then by training row
        out[start:start + block] = np.take_along_axis(idx, order, axis=1)
    return out


def _least_squares(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray) -> np.ndarray:
    """Closed-form linear fit with an intercept; lstsq copes with collinear columns."""
    A = np.hstack([Xtr, np.ones((len(Xtr), 1))])
    coef = np.linalg.lstsq(A, ytr, rcond=None)[0]
    return np.hstack([Xte, np.ones((len(Xte), 1))]) @ coef


def _mse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((y - p) ** 2))


def _as_matrix(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(-1, 1) if a.ndim == 1 else a
