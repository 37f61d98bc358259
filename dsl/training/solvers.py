"""Full-batch fits through scipy.optimize, on the generated module's exact derivatives.

- `lm`: MINPACK's Levenberg-Marquardt (`scipy.optimize.leastsq`) on `residuals` and the exact
  `jacobian`, or `least_squares`' trust-region reflective ('trf') when a param has bounds; both
  scale each param by its Jacobian column, so units do not matter.
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
import warnings

import numpy as np
import scipy.optimize as so

from dsl.training.train import (CONVERGED_RELATIVE_GRADIENT, Checkpoint, Convergence, Divergence,
                                FitResult, Flat, History, first_nonfinite, relative_gradient)


class _Run:
    """One solver run: counts the evaluations, keeps the best params seen, writes the history."""

    def __init__(self, module, flat: Flat, train, test, history: History, progress, cap: int,
                 first: int):
        self.module, self.flat, self.train, self.test = module, flat, train, test
        self.history, self.progress, self.cap, self.first = history, progress, cap, first
        self.counts = {"objective": 0, "gradient": 0, "jacobian": 0, "hessian": 0}
        self.iterations = 0
        self.best_f, self.best_key, self.best_r = math.inf, None, None  # x's bytes; residuals
        self.logging = 0.0  # seconds spent writing history rows, not solving
        self.t0 = time.perf_counter()
        # (x's bytes, sum of squares, size, residuals) of the latest residuals, and (x's bytes,
        # Jacobian) of the latest Jacobian: bytes compare in a fraction of np.array_equal's time
        self.last = self.last_jacobian = None
        self.before = 0.0  # seconds of the run resumed from
        self.nonfinite = False  # residuals or a Jacobian that were not finite were handed out

    def seen(self, key: bytes, f: float, r=None) -> None:
        if f < self.best_f and math.isfinite(f):
            self.best_f, self.best_key, self.best_r = f, key, r

    @property
    def best_x(self):
        """The params of the lowest objective seen, if they are all finite."""
        if self.best_key is None:
            return None
        x = np.frombuffer(self.best_key, dtype=np.float64).copy()
        return x if np.isfinite(x).all() else None

    def loss(self, x) -> float:
        self.counts["objective"] += 1
        f = float(self.module.loss(self.flat.unpack(x), self.train))
        self.seen(x.tobytes(), f)
        return f if math.isfinite(f) else math.inf

    def loss_and_grad(self, x):
        self.counts["objective"] += 1
        self.counts["gradient"] += 1
        f, g = self.module.loss_and_grad(self.flat.unpack(x), self.train)
        f = float(f)
        self.seen(x.tobytes(), f)
        if not math.isfinite(f):
            return math.inf, np.zeros_like(x)
        return f, self.flat.pack(g)

    def grad(self, x):
        self.counts["gradient"] += 1
        return self.flat.pack(self.module.grad(self.flat.unpack(x), self.train))

    def hessian(self, x):
        self.counts["hessian"] += 1
        return np.asarray(self.module.hessian(self.flat.unpack(x), self.train), dtype=np.float64)

    # residuals and jacobian are called 30 to 60 times in a NIST fit, on a few rows: their
    # own cost is a fair part of the fit's, so they do as little as they can
    def residuals(self, x):
        key = x.tobytes()
        last = self.last
        if last is not None and last[0] == key:
            return last[3]  # leastsq checks the start's shape before MINPACK evaluates it
        self.counts["objective"] += 1
        r = np.asarray(self.module.residuals(self.flat.unpack(x), self.train), dtype=np.float64)
        rss = float(r.dot(r))  # r @ r costs twice as long on a few rows
        if rss < self.best_f:
            self.seen(key, rss, r)
        elif rss != rss or rss == math.inf:
            self.nonfinite = True
        self.last = (key, rss, r.size, r)
        return r

    def jacobian(self, x):
        """The Jacobian, at each accepted point: for lm an iteration begins here."""
        key = x.tobytes()
        last = self.last_jacobian
        if last is not None and last[0] == key:
            return last[1]  # as for the residuals: leastsq's check, then MINPACK
        self.counts["jacobian"] += 1
        self.iteration(x, key)
        j = np.asarray(self.module.jacobian(self.flat.unpack(x), self.train), dtype=np.float64)
        self.last_jacobian = (key, j)
        return j

    def checked_jacobian(self, x):
        """`jacobian` for least_squares, which raises on a Jacobian that is not finite; MINPACK
        does not, and is spared the check."""
        j = self.jacobian(x)
        if not self.nonfinite and not np.isfinite(j).all():
            self.nonfinite = True
        return j

    def iteration(self, x, key: bytes | None = None) -> None:
        t0 = time.perf_counter()
        self.iterations += 1
        loss = self.row(self.first + self.iterations, x, key)
        if self.progress:
            self.progress(self.first + self.iterations, self.first + self.cap, loss)
        self.logging += time.perf_counter() - t0

    def row(self, step: int, x, key: bytes | None = None) -> float:
        last = self.last
        if last is not None and last[0] == (key or x.tobytes()):  # lm: from the residuals
            _, rss, size, _ = last
            mean = self.module.LEAST_SQUARES == "mean"
            loss = self.module.LEAST_SQUARES_FACTOR * (rss / size if mean else rss)
        else:
            loss = float(self.module.loss(self.flat.unpack(x), self.train))
        h = self.history
        h.step.append(step)
        h.epoch.append(float(step))
        h.train_loss.append(loss)
        if self.test:
            h.test_loss.append(float(self.module.loss(self.flat.unpack(x), self.test)))
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
    bounded = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
    run = _Run(module, flat, train, test, result.history, progress, cap, first)
    run.before = start.seconds if start else 0.0
    if opt.name == "lm":
        run.residuals(x0)  # the start's row from the residuals lm evaluates first anyway
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
    refused = False  # least_squares raises on residuals or a Jacobian that are not finite
    try:
        res = _SOLVERS[opt.name](run, x0, lo, hi, bounded, opt.args, cap)
    except KeyboardInterrupt:
        res = None
        result.interrupted, result.stopped_at = True, first + run.iterations
    except ValueError:
        if not run.nonfinite:
            raise
        res, refused = None, True
    spent = time.perf_counter() - t0 - run.logging
    best = run.best_x
    x = best if best is not None else x0
    reason, detail, converged = "interrupted", "stopped by Ctrl-C", False
    if refused:
        reason, detail = "diverged", ("the solver stopped on residuals or a Jacobian that were "
                                      "not finite; the best params it saw are kept")
    end = None  # (loss, gradient) at x
    if res is not None:
        reason, detail, converged = _reason(opt.name, bounded, res)
        if np.isfinite(res.x).all():
            end = module.loss_and_grad(flat.unpack(res.x), train)
        if end is not None and math.isfinite(float(end[0])):
            x = np.asarray(res.x, dtype=np.float64)
        else:
            end = None
            reason, detail, converged = "diverged", ("the solver ended on non-finite values; the "
                                                     "best params it saw are kept"), False
    params.update(flat.unpack(x))
    f, grad = end or module.loss_and_grad(params, train)
    grad = flat.pack(grad)
    steps = first + run.iterations
    h = result.history
    h.truncate(steps)
    if not h.step or h.step[-1] != steps:
        run.row(steps, x)
    h.seconds[-1] = (start.seconds if start else 0.0) + spent
    result.steps, result.seconds = steps, spent
    result.convergence = Convergence(converged, reason, detail, run.iterations,
                                     dict(run.counts), float(np.linalg.norm(grad)),
                                     relative_gradient(grad, x, float(f)))
    if reason == "stalled" and result.convergence.relative_gradient <= CONVERGED_RELATIVE_GRADIENT:
        result.convergence.converged = True  # no further progress possible, at a stationary point
    result.checkpoint = Checkpoint(steps, (start.seconds if start else 0.0) + spent, opt.name,
                                   len(next(iter(train.values()))), None, None, {})
    return result


def _lm(run: _Run, x0, lo, hi, bounded, args, cap):
    """MINPACK's Levenberg-Marquardt (`leastsq`), or `least_squares`' 'trf' with bounds. An 'lm'
    fit that ends where a param has stopped changing the residuals (its Jacobian column
    vanished: a saturated exponential) is stuck on a plateau MINPACK cannot leave; it is fitted
    again from the start with 'trf', and the lower sum of squares is kept."""
    tol = {k: max(args[k], EPS) for k in ("ftol", "xtol", "gtol")}
    if bounded:
        return so.least_squares(run.residuals, x0, jac=run.checked_jacobian, method="trf",
                                bounds=(lo, hi), x_scale="jac", max_nfev=cap, **tol)
    res = _minpack(run, x0, tol, cap)
    if not _vanished(res.jac, res.x):
        return res
    try:
        again = so.least_squares(run.residuals, x0, jac=run.checked_jacobian, method="trf",
                                 x_scale="jac", max_nfev=max(cap - res.nfev, 1), **tol)
    except ValueError:  # trf refuses a Jacobian that is not finite: the lm fit stands
        if not run.nonfinite:
            raise
        again = None
    better = (again if again is not None and np.all(np.isfinite(again.fun))
              and again.cost < res.cost else res)
    better.message = (f"{better.message} (after 'lm' stopped where a param no longer changed "
                      f"the residuals, fitted again with 'trf'; kept the "
                      f"{'trf' if better is again else 'lm'} fit)")
    return better


def _minpack(run: _Run, x0, tol, cap) -> so.OptimizeResult:
    """`leastsq`: MINPACK's lmder as `least_squares(method='lm', x_scale='jac')` calls it (each
    param scaled by the norm of its Jacobian column), but without least_squares' per-call
    wrapping, which costs as much as a small fit, and with the first step bound FACTOR. The
    result as least_squares gives it: status and message in its words, the Jacobian at x."""
    with warnings.catch_warnings():  # without full_output leastsq warns of a stop at the cap:
        warnings.simplefilter("ignore", RuntimeWarning)  # the run's report says it in its words
        x, ier = so.leastsq(run.residuals, x0, Dfun=run.jacobian, maxfev=cap, factor=FACTOR,
                            **tol)
    key = x.tobytes()  # without full_output, leastsq skips a covariance the fit does not use
    if run.best_key == key:  # MINPACK ends at its best point, not always its last
        fun = run.best_r
    else:
        fun = np.asarray(run.module.residuals(run.flat.unpack(x), run.train), dtype=np.float64)
    if run.last_jacobian is not None and run.last_jacobian[0] == key:
        jac = run.last_jacobian[1]
    else:  # the solution's Jacobian, for the vanished-column test; no iteration of the fit
        run.counts["jacobian"] += 1
        jac = np.asarray(run.module.jacobian(run.flat.unpack(x), run.train), dtype=np.float64)
    status, message = _MINPACK[ier]
    return so.OptimizeResult(x=x, cost=0.5 * float(fun @ fun), fun=fun, jac=jac, status=status,
                             message=message, nfev=run.counts["objective"])


# MINPACK's first step is at most FACTOR times the scaled params' norm. Its usual 100 throws a
# saturated exponential (NIST's BoxBOD from start 1) onto a plateau where a param's Jacobian
# column vanishes; 1 is trf's first trust radius and keeps all 27 NIST problems at >= 6 digits.
FACTOR = 1.0
# MINPACK's `info` as least_squares' status (1-4 a tolerance met, 0 the cap, -1 bad input, and
# here -2 for a tolerance too small for any further progress) and its message.
_MINPACK = {0: (-1, "Improper input parameters status returned from `leastsq`"),
            1: (2, "`ftol` termination condition is satisfied."),
            2: (3, "`xtol` termination condition is satisfied."),
            3: (4, "Both `ftol` and `xtol` termination conditions are satisfied."),
            4: (1, "`gtol` termination condition is satisfied."),
            5: (0, "The maximum number of function evaluations is exceeded."),
            6: (-2, "`ftol` is too small: no further reduction of the sum of squares is possible."),
            7: (-2, "`xtol` is too small: no further improvement of the solution is possible."),
            8: (-2, "`gtol` is too small: the residuals are orthogonal to the Jacobian's columns "
                    "to machine precision.")}
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
