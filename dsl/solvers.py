"""Full-batch fits through scipy.optimize, on the generated module's exact derivatives.

- `lm`: `scipy.optimize.least_squares` on `residuals` and the exact `jacobian`: MINPACK's
  Levenberg-Marquardt (method 'lm'), or trust-region reflective ('trf') when a param has bounds;
  both scale each param by its Jacobian column (`x_scale='jac'`), so units do not matter.
- `newton`: trust-region Newton with the exact `hessian` (`minimize`, method 'trust-exact'), or
  'trust-constr' when a param has bounds.
- `lbfgs`: L-BFGS-B (`minimize`) with the exact gradient, bounds as its box.

`steps` caps the iterations (for lm, the evaluations of the residuals: MINPACK counts those;
an iteration takes one, more when a step is rejected). The params are one vector in the order of
`PARAMS`, each flattened in C order, as the Jacobian's columns are. A history row is written at
every iteration. Ctrl-C, or a solver that ends on non-finite values, keeps the best params seen.
"""
from __future__ import annotations

import math
import time

import numpy as np
import scipy.optimize as so

from dsl.train import (CONVERGED_RELATIVE_GRADIENT, Checkpoint, Convergence, Divergence, FitResult,
                       Flat, History, first_nonfinite, relative_gradient)


class _Run:
    """One solver run: counts the evaluations, keeps the best params seen, writes the history."""

    def __init__(self, module, flat: Flat, train, test, history: History, progress, cap: int,
                 first: int):
        self.module, self.flat, self.train, self.test = module, flat, train, test
        self.history, self.progress, self.cap, self.first = history, progress, cap, first
        self.counts = {"objective": 0, "gradient": 0, "jacobian": 0, "hessian": 0}
        self.iterations = 0
        self.best_x, self.best_f = None, math.inf
        self.logging = 0.0  # seconds spent writing history rows, not solving
        self.t0 = time.perf_counter()
        self.last = None  # (x, sum of squares, size) of the latest residuals
        self.before = 0.0  # seconds of the run resumed from

    def seen(self, x, f: float) -> None:
        if math.isfinite(f) and f < self.best_f and np.all(np.isfinite(x)):
            self.best_x, self.best_f = np.array(x), f

    def loss(self, x) -> float:
        self.counts["objective"] += 1
        f = float(self.module.loss(self.flat.unpack(x), self.train))
        self.seen(x, f)
        return f if math.isfinite(f) else math.inf

    def loss_and_grad(self, x):
        self.counts["objective"] += 1
        self.counts["gradient"] += 1
        f, g = self.module.loss_and_grad(self.flat.unpack(x), self.train)
        f = float(f)
        self.seen(x, f)
        if not math.isfinite(f):
            return math.inf, np.zeros_like(x)
        return f, self.flat.pack(g)

    def grad(self, x):
        self.counts["gradient"] += 1
        return self.flat.pack(self.module.grad(self.flat.unpack(x), self.train))

    def hessian(self, x):
        self.counts["hessian"] += 1
        return np.asarray(self.module.hessian(self.flat.unpack(x), self.train), dtype=np.float64)

    def residuals(self, x):
        self.counts["objective"] += 1
        r = np.asarray(self.module.residuals(self.flat.unpack(x), self.train), dtype=np.float64)
        rss = float(r @ r)
        self.seen(x, rss)
        self.last = (np.array(x), rss, r.size)
        return r

    def jacobian(self, x):
        """The Jacobian, at each accepted point: for lm an iteration begins here."""
        self.counts["jacobian"] += 1
        self.iteration(x)
        return np.asarray(self.module.jacobian(self.flat.unpack(x), self.train), dtype=np.float64)

    def iteration(self, x) -> None:
        t0 = time.perf_counter()
        self.iterations += 1
        loss = self.row(self.first + self.iterations, x)
        if self.progress:
            self.progress(self.first + self.iterations, self.first + self.cap, loss)
        self.logging += time.perf_counter() - t0

    def row(self, step: int, x) -> float:
        params = self.flat.unpack(x)
        if self.last is not None and np.array_equal(self.last[0], x):  # lm: from the residuals
            _, rss, size = self.last
            mean = self.module.LEAST_SQUARES == "mean"
            loss = self.module.LEAST_SQUARES_FACTOR * (rss / size if mean else rss)
        else:
            loss = float(self.module.loss(params, self.train))
        h = self.history
        h.step.append(step)
        h.epoch.append(float(step))
        h.train_loss.append(loss)
        if self.test:
            h.test_loss.append(float(self.module.loss(params, self.test)))
        h.seconds.append(self.before + time.perf_counter() - self.t0 - self.logging)
        h.spill()
        return loss


def solve(module, params, train, test, cfg, progress=None, start: Checkpoint | None = None,
          history: History | None = None, cap: int = 1000) -> FitResult:
    """Fit `params` in place with lm, newton or lbfgs; at most `cap` iterations."""
    opt = cfg.optimizer
    flat = Flat(module, params)
    first = start.step if start else 0
    result = FitResult(history or History(), first, 0.0, first_step=first)
    result.history.truncate(first)
    x0 = flat.pack(params)
    lo, hi = flat.bounds(module)
    bounded = bool(np.any(np.isfinite(lo)) or np.any(np.isfinite(hi)))
    run = _Run(module, flat, train, test, result.history, progress, cap, first)
    run.before = start.seconds if start else 0.0
    f0 = run.row(first, x0)
    if not math.isfinite(f0):
        node = first_nonfinite(module.forward(params, train), module)
        result.divergence = Divergence(first, node, f"`{node}` is not finite at the start"
                                       if node else "the loss is not finite at the start", first,
                                       at_start=True)
        result.convergence = Convergence(False, "diverged", result.divergence.detail, 0,
                                         dict(run.counts), math.nan)
        return result
    run.t0 = t0 = time.perf_counter()
    try:
        res = _SOLVERS[opt.name](run, x0, lo, hi, bounded, opt.args, cap)
    except KeyboardInterrupt:
        res = None
        result.interrupted, result.stopped_at = True, first + run.iterations
    spent = time.perf_counter() - t0 - run.logging
    x = run.best_x if run.best_x is not None else x0
    reason, detail, converged = "interrupted", "stopped by Ctrl-C", False
    if res is not None:
        reason, detail, converged = _reason(opt.name, bounded, res)
        if np.all(np.isfinite(res.x)) and math.isfinite(float(module.loss(flat.unpack(res.x), train))):
            x = np.asarray(res.x, dtype=np.float64)
        else:
            reason, detail, converged = "diverged", ("the solver ended on non-finite values; the "
                                                     "best params it saw are kept"), False
    params.update(flat.unpack(x))
    steps = first + run.iterations
    h = result.history
    h.truncate(steps)
    if not h.step or h.step[-1] != steps:
        run.row(steps, x)
    h.seconds[-1] = (start.seconds if start else 0.0) + spent
    result.steps, result.seconds = steps, spent
    grad = run.flat.pack(module.grad(params, train))
    result.convergence = Convergence(converged, reason, detail, run.iterations,
                                     dict(run.counts), float(np.linalg.norm(grad)),
                                     relative_gradient(grad, x, float(module.loss(params, train))))
    if reason == "stalled" and result.convergence.relative_gradient <= CONVERGED_RELATIVE_GRADIENT:
        result.convergence.converged = True  # no further progress possible, at a stationary point
    result.checkpoint = Checkpoint(steps, (start.seconds if start else 0.0) + spent, opt.name,
                                   len(next(iter(train.values()))), None, None, {})
    return result


def _lm(run: _Run, x0, lo, hi, bounded, args, cap):
    """least_squares: 'lm' (MINPACK), or 'trf' with bounds. An 'lm' fit that ends where a
    param has stopped changing the residuals (its Jacobian column vanished: a saturated
    exponential, as in NIST's BoxBOD from start 1) is stuck on a plateau MINPACK cannot leave;
    it is fitted again from the start with 'trf', and the lower sum of squares is kept."""
    tol = {k: max(args[k], EPS) for k in ("ftol", "xtol", "gtol")}
    if bounded:
        return so.least_squares(run.residuals, x0, jac=run.jacobian, method="trf",
                                bounds=(lo, hi), x_scale="jac", max_nfev=cap, **tol)
    res = so.least_squares(run.residuals, x0, jac=run.jacobian, method="lm", x_scale="jac",
                           max_nfev=cap, **tol)
    run.iterations -= 1  # least_squares takes MINPACK's Jacobian once more at the solution
    if not _vanished(res.jac, res.x):
        return res
    used = res.nfev
    again = so.least_squares(run.residuals, x0, jac=run.jacobian, method="trf", x_scale="jac",
                             max_nfev=max(cap - used, 1), **tol)
    better = again if np.all(np.isfinite(again.fun)) and again.cost < res.cost else res
    better.message = (f"{better.message} (after 'lm' stopped where a param no longer changed "
                      f"the residuals, fitted again with 'trf'; kept the {'trf' if better is again else 'lm'} fit)")
    return better


EPS = float(np.finfo(float).eps)


def _vanished(jac, x) -> bool:
    """Some param's Jacobian column, scaled by the param (∂r/∂log p), is nothing next to the
    largest: below 1e-10 of it."""
    if jac is None or not np.all(np.isfinite(jac)) or jac.shape[1] < 2:
        return False
    scaled = np.linalg.norm(jac, axis=0) * np.maximum(np.abs(x), 1.0)
    return bool(scaled.max() > 0 and scaled.min() < 1e-10 * scaled.max())


def _newton(run: _Run, x0, lo, hi, bounded, args, cap):
    def callback(intermediate_result):
        run.iteration(intermediate_result.x)
    if bounded:
        return so.minimize(run.loss, x0, jac=run.grad, hess=run.hessian, method="trust-constr",
                           bounds=so.Bounds(lo, hi), callback=callback,
                           options={"gtol": args["gtol"], "maxiter": cap,
                                    # a barrier that starts small lets an active bound be
                                    # reached to machine precision, not to the barrier's 1e-5
                                    "initial_barrier_parameter": 1e-10,
                                    "initial_barrier_tolerance": 1e-10})
    return so.minimize(run.loss, x0, jac=run.grad, hess=run.hessian, method="trust-exact",
                       callback=callback, options={"gtol": args["gtol"], "maxiter": cap})


def _lbfgs(run: _Run, x0, lo, hi, bounded, args, cap):
    def callback(intermediate_result):
        run.iteration(intermediate_result.x)
    return so.minimize(run.loss_and_grad, x0, jac=True, method="L-BFGS-B",
                       bounds=so.Bounds(lo, hi) if bounded else None, callback=callback,
                       options={"ftol": args["ftol"], "gtol": args["gtol"], "maxiter": cap,
                                "maxfun": 20 * cap})


_SOLVERS = {"lm": _lm, "newton": _newton, "lbfgs": _lbfgs}


def _reason(name: str, bounded: bool, res) -> tuple[str, str, bool]:
    """(reason, detail, converged) from scipy's status codes, which differ by method."""
    message, status = str(res.message), int(res.status)
    if name == "lm":  # least_squares: 1-4 a tolerance, 0 the cap, -1 bad input
        met, cap = status > 0, status == 0
    elif name == "newton" and bounded:  # trust-constr: 1 gtol, 2 xtol, 0 the cap
        met, cap = status in (1, 2), status == 0
    else:  # L-BFGS-B and trust-exact: 0 success, 1 the cap, others a failed step
        met, cap = status == 0, status == 1
    if met:
        return "tolerance met", message, True
    return ("step cap reached" if cap else "stalled"), message, False
