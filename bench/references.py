"""The hand-written references the benchmark measures `dsl` against, and their shared data.

Set up as in the project's anchors (the seed benchmark and MNIST-5k, written by hand in numpy,
PyTorch and JAX): the same data arrays, the same initial weights and the same minibatch index
stream go to every implementation, so equal final losses double as a correctness check.

Every implementation is a small class with `reset()` (back to the initial weights, untimed),
`loop(idx)` (one SGD step per row of `idx`: the only timed part) and `evaluate()` (the final
metric). torch and jax are optional: `TORCH` and `JAX` are None when they are not installed.
The caller pins the thread counts before this module is imported (see bench/run.py).
"""
from __future__ import annotations

import gzip
import os

import numpy as np

try:
    import torch
except ImportError:  # optional: the torch columns are skipped
    torch = None

try:
    import jax
    import jax.numpy as jnp
except ImportError:  # optional: the jax columns are skipped
    jax = jnp = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "examples", "data")

TORCH = torch.__version__ if torch is not None else None
JAX = jax.__version__ if jax is not None else None
if torch is not None:
    torch.set_num_threads(1)
if jax is not None:
    jax.config.update("jax_enable_x64", True)


# ---- the seed network: Boston, 13 -> 10 sigmoid -> 1, MSE, SGD lr 0.01, batch 16 -------------

SEED_BATCH, SEED_HIDDEN, SEED_LR = 16, 10, 1e-2


def boston():
    """Standardized on all rows, then an 80/20 split by a fixed permutation (seed 666)."""
    a = np.loadtxt(os.path.join(DATA, "boston.csv"), delimiter=",", skiprows=1)
    X, y = a[:, :13], a[:, 13:14]
    X = (X - X.mean(0)) / X.std(0)
    p = np.random.default_rng(666).permutation(len(X))
    n = int(0.8 * len(X))
    return X[p[:n]], y[p[:n]], X[p[n:]], y[p[n:]]


def seed_batches(n_train: int, steps: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_train, size=(steps, SEED_BATCH))


def seed_init(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W1": rng.standard_normal((13, SEED_HIDDEN)), "b1": np.zeros(SEED_HIDDEN),
            "W2": rng.standard_normal((SEED_HIDDEN, 1)), "b2": np.zeros(1)}


def _copy(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in params.items()}


class SeedNumpy:
    name = "numpy-hand"

    def __init__(self, data, init):
        self.Xtr, self.ytr, self.Xte, self.yte = data
        self.init = init

    def reset(self):
        self.p = _copy(self.init)

    def loop(self, idx):
        Xtr, ytr, LR = self.Xtr, self.ytr, SEED_LR
        W1, b1, W2, b2 = self.p["W1"], self.p["b1"], self.p["W2"], self.p["b2"]
        for i in idx:
            X = Xtr[i]; y = ytr[i]
            h = 1.0 / (1.0 + np.exp(-(X @ W1 + b1)))
            yhat = h @ W2 + b2
            g = (2.0 / len(y)) * (yhat - y)
            gW2 = h.T @ g; gb2 = g.sum(0)
            gL1 = (g @ W2.T) * h * (1 - h)
            gW1 = X.T @ gL1; gb1 = gL1.sum(0)
            W1 -= LR * gW1; b1 -= LR * gb1; W2 -= LR * gW2; b2 -= LR * gb2

    def evaluate(self) -> float:
        p = self.p
        h = 1.0 / (1.0 + np.exp(-(self.Xte @ p["W1"] + p["b1"])))
        return float(np.mean((h @ p["W2"] + p["b2"] - self.yte) ** 2))


class _TorchSGD:
    """PyTorch eager, as its users write it: nn.Sequential(Linear, activation, Linear), plain
    SGD, one zero_grad / forward / backward / step per minibatch; weights from `init`."""

    activation, loss, hidden, lr = None, None, 0, 0.0

    def __init__(self, init, dtype, X, y):
        self.dtype, self.init = dtype, init
        self.name = f"torch-eager-{str(dtype)[6:]}"
        self.Xt, self.yt = torch.tensor(X, dtype=dtype), y
        self.lossf = self.loss()

    def reset(self):
        W1, W2 = self.init["W1"], self.init["W2"]
        net = torch.nn.Sequential(torch.nn.Linear(W1.shape[0], self.hidden), self.activation(),
                                  torch.nn.Linear(self.hidden, W2.shape[1])).to(self.dtype)
        with torch.no_grad():
            net[0].weight.copy_(torch.tensor(W1.T)); net[0].bias.zero_()
            net[2].weight.copy_(torch.tensor(W2.T)); net[2].bias.zero_()
        self.net = net
        self.opt = torch.optim.SGD(net.parameters(), lr=self.lr)

    def loop(self, idx):
        net, opt, lossf, Xt, yt = self.net, self.opt, self.lossf, self.Xt, self.yt
        for i in torch.as_tensor(idx):
            opt.zero_grad()
            loss = lossf(net(Xt[i]), yt[i])
            loss.backward()
            opt.step()


class SeedTorch(_TorchSGD):
    activation, loss = (torch.nn.Sigmoid, torch.nn.MSELoss) if torch else (None, None)
    hidden, lr = SEED_HIDDEN, SEED_LR

    def __init__(self, data, init, dtype):
        Xtr, ytr, Xte, yte = data
        super().__init__(init, dtype, Xtr, torch.tensor(ytr, dtype=dtype))
        self.Xte, self.yte = torch.tensor(Xte, dtype=dtype), torch.tensor(yte, dtype=dtype)

    def evaluate(self) -> float:
        with torch.no_grad():
            return float(((self.net(self.Xte) - self.yte) ** 2).mean())


def _seed_jax_loss(p, X, y):
    W1, b1, W2, b2 = p
    h = jax.nn.sigmoid(X @ W1 + b1)
    return jnp.mean((h @ W2 + b2 - y) ** 2)


class _JaxSGD:
    """JAX as its users write it: one `jit`-compiled step of `grad` and plain SGD on a list
    of arrays, fed numpy batches (each call copies its batch to the device, as the anchor)."""

    name = "jax-jit-f64"

    def __init__(self, init, loss, lr, X, Y):
        self.init, self.X, self.Y = init, X, Y

        @jax.jit
        def step(p, X, Y):
            g = jax.grad(loss)(p, X, Y)
            return [a - lr * b for a, b in zip(p, g)]
        self.step = step

    def reset(self):
        self.p = [jnp.asarray(self.init[k]) for k in ("W1", "b1", "W2", "b2")]

    def loop(self, idx):
        step, X, Y, p = self.step, self.X, self.Y, self.p
        for i in idx:
            p = step(p, X[i], Y[i])
        jax.block_until_ready(p)
        self.p = p


class SeedJax(_JaxSGD):
    def __init__(self, data, init):
        Xtr, ytr, self.Xte, self.yte = data
        super().__init__(init, _seed_jax_loss, SEED_LR, Xtr, ytr)

    def evaluate(self) -> float:
        return float(_seed_jax_loss(self.p, self.Xte, self.yte))


# ---- MNIST-5k: 784 -> 128 relu -> 10, softmax cross-entropy, SGD lr 0.1, batch 64 ----------

MNIST_BATCH, MNIST_HIDDEN, MNIST_LR = 64, 128, 0.1


def mnist():
    """All 5,000 rows, pixels scaled to [0, 1], labels, and the one-hot targets."""
    with gzip.open(os.path.join(DATA, "mnist_5k.csv.gz"), "rt") as f:
        a = np.loadtxt(f, delimiter=",", skiprows=1)
    y = a[:, 784].astype(int)
    return a[:, :784] / 255.0, y, np.eye(10)[y], a[:, :784]


def mnist_batches(n: int, steps: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(steps, MNIST_BATCH))


def mnist_init(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((784, MNIST_HIDDEN)) * np.sqrt(2 / 784)
    W2 = rng.standard_normal((MNIST_HIDDEN, 10)) * np.sqrt(1 / MNIST_HIDDEN)
    return {"W1": W1, "b1": np.zeros(MNIST_HIDDEN), "W2": W2, "b2": np.zeros(10)}


def mnist_metrics(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(cross-entropy, accuracy) of logits over all rows."""
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean()), float(np.mean(np.argmax(logits, 1) == y))


class MnistNumpy:
    name = "numpy-hand"

    def __init__(self, data, init):
        self.X, self.y, self.Y, _ = data
        self.init = init

    def reset(self):
        self.p = _copy(self.init)

    def loop(self, idx):
        X, Y, LR = self.X, self.Y, MNIST_LR
        W1, b1, W2, b2 = self.p["W1"], self.p["b1"], self.p["W2"], self.p["b2"]
        for i in idx:
            xb = X[i]; yb = Y[i]
            a1 = xb @ W1 + b1; h = np.maximum(a1, 0)
            z = h @ W2 + b2; z = z - z.max(1, keepdims=True); e = np.exp(z)
            p = e / e.sum(1, keepdims=True)
            g = (p - yb) / len(i)
            gW2 = h.T @ g; gb2 = g.sum(0); gh = g @ W2.T; ga = gh * (a1 > 0)
            gW1 = xb.T @ ga; gb1 = ga.sum(0)
            W1 -= LR * gW1; b1 -= LR * gb1; W2 -= LR * gW2; b2 -= LR * gb2

    def evaluate(self) -> tuple[float, float]:
        p = self.p
        return mnist_metrics(np.maximum(self.X @ p["W1"] + p["b1"], 0) @ p["W2"] + p["b2"], self.y)


class MnistTorch(_TorchSGD):
    activation, loss = (torch.nn.ReLU, torch.nn.CrossEntropyLoss) if torch else (None, None)
    hidden, lr = MNIST_HIDDEN, MNIST_LR

    def __init__(self, data, init, dtype):
        X, y, _, _ = data
        super().__init__(init, dtype, X, torch.tensor(y))
        self.y = y

    def evaluate(self) -> tuple[float, float]:
        with torch.no_grad():
            logits = self.net(self.Xt).double().numpy()
        return mnist_metrics(logits, self.y)


def _mnist_jax_loss(p, X, Y):
    W1, b1, W2, b2 = p
    h = jnp.maximum(X @ W1 + b1, 0)
    return jnp.mean(-jnp.sum(Y * jax.nn.log_softmax(h @ W2 + b2, axis=1), axis=1))


class MnistJax(_JaxSGD):
    def __init__(self, data, init):
        X, self.y, Y, _ = data
        super().__init__(init, _mnist_jax_loss, MNIST_LR, X, Y)

    def evaluate(self) -> tuple[float, float]:
        W1, b1, W2, b2 = (np.asarray(a) for a in self.p)
        return mnist_metrics(np.maximum(self.X @ W1 + b1, 0) @ W2 + b2, self.y)


# ---- the seed network's full-batch gradient ---------------------------------------------------

def seed_loss_numpy(p: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> float:
    """mean((yhat - y)^2) on all rows at once."""
    W1, b1, W2, b2 = p["W1"], p["b1"], p["W2"], p["b2"]
    h = 1.0 / (1.0 + np.exp(-(X @ W1 + b1)))
    return float(np.mean((h @ W2 + b2 - y) ** 2))


def seed_grad_numpy(p: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The gradient of mean((yhat - y)^2) for every param, on all rows at once."""
    W1, b1, W2, b2 = p["W1"], p["b1"], p["W2"], p["b2"]
    h = 1.0 / (1.0 + np.exp(-(X @ W1 + b1)))
    yhat = h @ W2 + b2
    g = (2.0 / len(y)) * (yhat - y)
    gW2 = h.T @ g; gb2 = g.sum(0)
    gL1 = (g @ W2.T) * h * (1 - h)
    gW1 = X.T @ gL1; gb1 = gL1.sum(0)
    return {"W1": gW1, "b1": gb1, "W2": gW2, "b2": gb2}
