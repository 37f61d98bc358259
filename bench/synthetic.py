"""Synthetic `.model` texts of a chosen size, for the compile-time growth curve.

- chain(n): the tutorial's graph stretched out, `z1 = sigmoid(w1 * x)`, `z2 = sigmoid(w2 * z1)`,
  ... n scalar neurons, loss `(z_n - y)^2`: about 2n + 3 graph nodes.
- mlp(depth): `h1 = tanh(X @ W1 + b1)`, ... `depth` layers of width 8, then a linear read-out
  and an MSE loss: about 4 graph nodes per layer (W, b, the product, the layer).
"""
from __future__ import annotations

MLP_WIDTH = 8


def chain(n: int) -> str:
    lines = [f"# synthetic chain of {n} sigmoid neurons", "input x", "input y", ""]
    prev = "x"
    for i in range(1, n + 1):
        lines.append(f"param w{i} ~ normal(0, 1)")
        lines.append(f"z{i} = sigmoid(w{i} * {prev})")
        prev = f"z{i}"
    lines += [f"loss = ({prev} - y)^2", "minimize loss", f"predict {prev}"]
    return "\n".join(lines) + "\n"


def mlp(depth: int, width: int = MLP_WIDTH) -> str:
    lines = [f"# synthetic MLP: {depth} tanh layers of width {width}",
             f"input X[N, {width}]", "input y[N, 1]", ""]
    prev = "X"
    for i in range(1, depth + 1):
        lines.append(f"param W{i}[{width}, {width}] ~ glorot")
        lines.append(f"param b{i}[{width}] = 0")
        lines.append(f"h{i} = tanh({prev} @ W{i} + b{i})")
        prev = f"h{i}"
    lines += [f"param Wout[{width}, 1] ~ glorot", "param bout[1] = 0",
              f"yhat = {prev} @ Wout + bout", "loss = mean((yhat - y)^2)",
              "minimize loss", "predict yhat"]
    return "\n".join(lines) + "\n"


def sized(kind: str, nodes: int) -> str:
    """A model of about `nodes` graph nodes (the exact count is read off the compiled graph)."""
    if kind == "chain":
        return chain(max(1, (nodes - 3) // 2))
    if kind == "mlp":
        return mlp(max(1, (nodes - 8) // 4))
    raise ValueError(f"unknown synthetic model kind {kind!r}")
