"""Error bars after a fit: each param's standard error and 95% interval, their correlations, and
the uncertainty of derived quantities (`report NAME`) by the delta method.

The covariance of the params, on the training rows, by one of three rules (the report names it):

- least squares: s²·(JᵀJ)⁻¹ with s² = RSS / (n - p), as `scipy.optimize.curve_fit` with
  `absolute_sigma=False` (NIST's certified standard deviations follow the same rule);
- a chi-square, residuals divided by sigmas read from the data: (JᵀJ)⁻¹, as `curve_fit` with
  `absolute_sigma=True`;
- any other objective, read as a negative log-likelihood: the inverse of its Hessian.

The matrix is inverted through its column-scaled singular value (or eigen-) decomposition;
directions it barely constrains name the params that are not identifiable, instead of numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dsl.training.train import MAX_SOLVER_PARAMS, Flat, is_least_squares

SHOWN_ELEMENTS = 20  # a param with at most this many elements gets an error bar per element
# The scaled matrix is singular for our purposes when its smallest singular value (of J) is
# below this fraction of its largest; for a Hessian, the same on its eigenvalues, squared.
SINGULAR = 1e-10
Z95 = 1.959963984540054  # the normal distribution's 97.5% quantile


@dataclass
class Uncertainty:
    rule: str  # which rule, in words
    labels: list[str]  # the param elements shown: scalars, and elements of small params
    values: np.ndarray
    covariance: np.ndarray | None = None  # of the shown elements; None when there are no numbers
    dof: int | None = None  # n - p for the s² rule: the t distribution's degrees of freedom
    unidentifiable: list[str] = field(default_factory=list)
    why_not: str | None = None  # why there are no numbers

    @property
    def stderr(self) -> np.ndarray | None:
        return None if self.covariance is None else np.sqrt(np.diag(self.covariance))

    @property
    def quantile(self) -> float:
        """Half-width of a 95% interval in standard errors: Student's t with n - p degrees of
        freedom for the s² rule (as lmfit and curve_fit users compute it), else normal."""
        from scipy.special import stdtrit  # imported when needed: scipy costs every command
        return float(stdtrit(self.dof, 0.975)) if self.dof else Z95

    @property
    def correlation(self) -> np.ndarray | None:
        if self.covariance is None:
            return None
        s = self.stderr
        with np.errstate(all="ignore"):
            return self.covariance / np.outer(s, s)

    def interval(self, value: float, stderr: float) -> tuple[float, float]:
        return value - self.quantile * stderr, value + self.quantile * stderr

    def strongest(self, k: int = 10) -> list[tuple[str, str, float]]:
        """The k correlations largest in size, between different params."""
        r = self.correlation
        if r is None:
            return []
        pairs = [(self.labels[i], self.labels[j], float(r[i, j]))
                 for i in range(len(self.labels)) for j in range(i)]
        return sorted(pairs, key=lambda p: -abs(p[2]))[:k]

    def params_json(self) -> dict:
        out = {}
        err = self.stderr
        for i, label in enumerate(self.labels):
            v = float(self.values[i])
            if err is None:
                out[label] = {"value": v, "stderr": None, "ci95": None}
            else:
                out[label] = {"value": v, "stderr": float(err[i]),
                              "ci95": list(self.interval(v, float(err[i])))}
        return out

    def correlation_json(self) -> dict | None:
        r = self.correlation
        if r is None:
            return None
        return {a: {b: float(r[i, j]) for j, b in enumerate(self.labels)}
                for i, a in enumerate(self.labels)}

    def to_json(self) -> dict:
        return {"rule": self.rule, "dof": self.dof, "confidence": 0.95,
                "interval": (f"Student's t, {self.dof} degrees of freedom" if self.dof
                             else "normal"),
                "not_identifiable": self.unidentifiable, "why_not": self.why_not}


def error_bars(module, params: dict[str, np.ndarray], train: dict[str, np.ndarray]
               ) -> tuple[Uncertainty, np.ndarray | None]:
    """The error bars of the params at `params` on the training rows, and the covariance of
    every param element (for the delta method; None when there are no numbers)."""
    flat = Flat(module, params)
    x = flat.pack(params)
    labels = flat.labels()
    shown = _shown(flat)
    result = Uncertainty("", [labels[i] for i in shown], x[shown])
    if len(x) > MAX_SOLVER_PARAMS:
        result.why_not = f"{len(x)} param elements, more than {MAX_SOLVER_PARAMS}"
        result.rule = "none"
        return result, None
    with np.errstate(all="ignore"):
        if is_least_squares(module):
            cov = _least_squares(module, params, train, result, labels)
        else:
            cov = _inverse_hessian(module, params, train, result, labels)
    if cov is not None:
        result.covariance = cov[np.ix_(shown, shown)]
    return result, cov


def _shown(flat: Flat) -> list[int]:
    out, at = [], 0
    for size in flat.sizes:
        if size <= SHOWN_ELEMENTS:
            out += range(at, at + size)
        at += size
    return out


def _least_squares(module, params, train, result: Uncertainty, labels) -> np.ndarray | None:
    r = np.asarray(module.residuals(params, train), dtype=float)
    J = np.asarray(module.jacobian(params, train), dtype=float)
    n, p = J.shape
    if module.SIGMA_WEIGHTED:
        result.rule = ("(JᵀJ)⁻¹: a chi-square with the data's sigmas, as curve_fit with "
                       "absolute_sigma=True")
        s2 = 1.0
    else:
        if n <= p:
            result.rule = "s²·(JᵀJ)⁻¹"
            result.why_not = f"{n} residuals for {p} params: no degrees of freedom left for s²"
            return None
        s2 = float(r @ r) / (n - p)
        result.dof = n - p
        result.rule = (f"s²·(JᵀJ)⁻¹ with s² = RSS/(n - p) = {s2:.6g} (n = {n}, p = {p}), as "
                       "curve_fit with absolute_sigma=False")
    if not (np.all(np.isfinite(J)) and math.isfinite(s2)):
        result.why_not = "the Jacobian is not finite at the fitted params"
        return None
    norms = np.linalg.norm(J, axis=0)
    dead = [labels[i] for i in np.flatnonzero(norms == 0)]
    if dead:
        result.unidentifiable = dead
        result.why_not = "the residuals do not depend on " + ", ".join(dead)
        return None
    _, s, vt = np.linalg.svd(J / norms, full_matrices=False)
    weak = s < SINGULAR * s[0]
    if np.any(weak):
        return _singular(result, labels, vt[weak])
    inv = (vt.T / s**2) @ vt  # (JᵀJ)⁻¹ of the scaled columns
    return s2 * inv / np.outer(norms, norms)


def _inverse_hessian(module, params, train, result: Uncertainty, labels) -> np.ndarray | None:
    result.rule = "inverse Hessian of the objective, read as a negative log-likelihood"
    if not hasattr(module, "hessian"):
        result.why_not = "the model has no generated Hessian"
        return None
    H = np.asarray(module.hessian(params, train), dtype=float)
    if not np.all(np.isfinite(H)):
        result.why_not = "the Hessian is not finite at the fitted params"
        return None
    H = (H + H.T) / 2
    d = np.diag(H)
    flat = [labels[i] for i in np.flatnonzero(d <= 0)]
    if flat:
        result.unidentifiable = flat
        result.why_not = ("the objective does not curve up along " + ", ".join(flat)
                          + ": not a minimum in them, or they do not change it")
        return None
    scale = 1 / np.sqrt(d)
    w, v = np.linalg.eigh(H * np.outer(scale, scale))
    weak = w < SINGULAR**2 * w[-1]
    if np.any(weak):
        return _singular(result, labels, v[:, weak].T)
    return ((v / w) @ v.T) * np.outer(scale, scale)


def _singular(result: Uncertainty, labels, directions: np.ndarray) -> None:
    """Name the params that the weak directions move: the data fix only a combination of them."""
    moved = np.max(np.abs(directions), axis=0) >= 0.1
    result.unidentifiable = [labels[i] for i in np.flatnonzero(moved)]
    result.why_not = ("the data do not determine " + ", ".join(result.unidentifiable)
                      + " separately (the matrix is singular or nearly so)")
    return None


def delta_method(gradient: np.ndarray, covariance: np.ndarray) -> float:
    """σ of a derived quantity f(p): sqrt(∇fᵀ Σ ∇f)."""
    return float(math.sqrt(max(float(gradient @ covariance @ gradient), 0.0)))
