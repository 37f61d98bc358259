"""Training: the optimizers, the loop, the history, and divergence that loses nothing.

The loop adds nothing per step that hand-written numpy would not: one permutation per epoch,
slices, the generated step. The full training loss is computed only at log points; there the
params are also checked and a snapshot is kept. When a loss goes non-finite, training replays
from the last snapshot one step at a time to name the first step and node that went non-finite,
and keeps the last finite params.

Ctrl-C (KeyboardInterrupt) stops training with consistent params: those of the step it stopped
at when it came between steps (at a log point), else those of the last snapshot, since an
update may have been half applied. Either way the result carries a `Checkpoint` (step, batch
order, optimizer state, time), saved with the params, from which `fit(..., start=)` continues
exactly as if never stopped.
"""
from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from compiler.errors import ModelWarning
from dsl.training.config import SOLVERS, TrainConfig, make_optimizer

SNAPSHOTS_PER_RUN = 100
# A log point evaluates the loss on every training and test row; a step works on one batch
# forward and backward (about three forward passes). Log points at least this many
# batch-equivalents apart keep their cost near a tenth of the training's.
LOG_COST = 3.0


# Rows a History with a sink keeps in memory: more than a truncation ever drops (a Ctrl-C or a
# divergence drops the rows after the last snapshot, at most one log point's).
HISTORY_IN_MEMORY = 4


@dataclass
class History:
    """The rows logged: step, epoch, losses, time. With a `sink` (`dsl run`'s history.csv,
    `dsl.training.checkpoint.HistoryFile`) the older rows go there as training logs and only the last
    HISTORY_IN_MEMORY stay here: `log every 1` would otherwise grow the lists without bound."""

    step: list[int] = field(default_factory=list)
    epoch: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    sink: object = None  # `write(rows)`: rows no longer kept here
    written: int = 0  # rows handed to the sink

    @property
    def logged(self) -> int:
        """Rows logged, those handed to the sink included."""
        return self.written + len(self.step)

    def spill(self) -> None:
        """Hand all but the last HISTORY_IN_MEMORY rows to the sink (after a whole row)."""
        n = len(self.step) - HISTORY_IN_MEMORY
        if self.sink is None or n <= 0:
            return
        self.sink.write(list(self.rows())[:n])
        for c in (self.step, self.epoch, self.train_loss, self.test_loss, self.seconds):
            del c[:n]
        self.written += n

    def truncate(self, last_step: int) -> None:
        """Keep the whole rows up to `last_step` (a row being written when Ctrl-C came is
        dropped, whatever columns it had reached)."""
        columns = [self.step, self.epoch, self.train_loss, self.seconds]
        n = min(len(c) for c in columns + ([self.test_loss] if self.test_loss else []))
        while n and self.step[n - 1] > last_step:
            n -= 1
        for c in columns + [self.test_loss]:
            del c[n:]

    def rows(self):
        has_test = len(self.test_loss) == len(self.step)
        for i in range(len(self.step)):
            yield (self.step[i], self.epoch[i], self.train_loss[i],
                   self.test_loss[i] if has_test else float("nan"), self.seconds[i])


@dataclass
class Divergence:
    step: int
    node: str | None  # the first node whose value went non-finite, in topological order
    detail: str
    kept: int = 0  # the step of the params kept, the last finite ones
    at_start: bool = False  # the loss was not finite before any update: no learning rate helps


@dataclass
class Checkpoint:
    """Where training stopped, so that it can continue exactly: the step, the time spent so
    far, the batch order (`Batches.state()`; random search: its generator's state) and the
    optimizer's state, with what they belong to (optimizer, training rows, batch size)."""

    step: int
    seconds: float
    optimizer: str
    rows: int
    batch: int | None
    order: tuple | None
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    model: str | None = None  # the digest of the model's text (`dsl.training.runtime.model_digest`)


@dataclass
class Convergence:
    """How a run ended: `converged`, the reason (tolerance met, step cap reached, stalled,
    diverged, interrupted), the solver's own words, iterations, evaluations of the objective and
    of its derivatives, and the final gradient over all training rows."""

    converged: bool
    reason: str
    detail: str
    iterations: int
    evaluations: dict[str, int]
    gradient_norm: float  # Euclidean norm of the gradient over every param element
    relative_gradient: float = math.nan  # see `relative_gradient`

    def to_json(self) -> dict:
        return {"converged": self.converged, "reason": self.reason, "detail": self.detail,
                "iterations": self.iterations, "evaluations": dict(self.evaluations),
                "gradient_norm": self.gradient_norm,
                "relative_gradient": self.relative_gradient}


# A run is judged converged by its gradient (a first-order method at its step cap, a stalled
# line search) when `relative_gradient` is at most this; above LARGE_RELATIVE_GRADIENT a run
# that stopped at its cap is warned about.
CONVERGED_RELATIVE_GRADIENT = 1e-6
LARGE_RELATIVE_GRADIENT = 1e-3


def relative_gradient(grad: np.ndarray, x: np.ndarray, f: float) -> float:
    """max |∂f/∂p|·max(|p|, 1) / max(|f|, 1e-12): the relative change of the objective for a
    relative change of a param, free of the units that make a gradient's norm large or small."""
    if grad.size == 0:
        return 0.0
    return float(np.max(np.abs(grad) * np.maximum(np.abs(x), 1.0)) / max(abs(f), 1e-12))


def gradient_figures(module, params, train) -> tuple[float, float]:
    """The gradient's norm and `relative_gradient` over all training rows."""
    with np.errstate(all="ignore"):
        f, g = module.loss_and_grad(params, train)
    names = list(module.PARAMS)
    if not names:
        return 0.0, 0.0
    grad = np.concatenate([np.asarray(g[n], dtype=float).ravel() for n in names])
    x = np.concatenate([np.asarray(params[n], dtype=float).ravel() for n in names])
    return float(np.linalg.norm(grad)), relative_gradient(grad, x, float(f))


class Flat:
    """The params as one float64 vector, in the order of PARAMS, and back."""

    def __init__(self, module, params: dict[str, np.ndarray]):
        self.names = list(module.PARAMS)
        self.shapes = [np.shape(params[n]) for n in self.names]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.dtype = params[self.names[0]].dtype if self.names else np.float64
        ends = [0, *itertools.accumulate(self.sizes)]
        self.slices = [(n, slice(a, b), s)
                       for n, a, b, s in zip(self.names, ends, ends[1:], self.shapes)]

    def pack(self, values: dict[str, np.ndarray]) -> np.ndarray:
        if not self.names:
            return np.zeros(0)
        return np.concatenate([np.asarray(values[n], dtype=np.float64).ravel() for n in self.names])

    def unpack(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Views of `x` where it has the params' dtype: a solver calls this at every evaluation,
        and on NIST's small problems its cost is a fair part of a fit's."""
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        return {n: x[s].reshape(shape) for n, s, shape in self.slices}

    def labels(self) -> list[str]:
        """Each element's name: `g`, `b[2]`, `W[0, 1]`."""
        out = []
        for n, shape in zip(self.names, self.shapes):
            if shape == ():
                out.append(n)
            else:
                out += [f"{n}[{', '.join(map(str, i))}]" for i in np.ndindex(*shape)]
        return out

    def bounds(self, module) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bound of every element (-inf, inf where none is declared)."""
        declared = bounds(module)
        lo, hi = [], []
        for n, size in zip(self.names, self.sizes):
            a, b = declared.get(n, (-math.inf, math.inf))
            lo.append(np.full(size, -math.inf if a is None else a, dtype=np.float64))
            hi.append(np.full(size, math.inf if b is None else b, dtype=np.float64))
        if not lo:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(lo), np.concatenate(hi)


@dataclass
class FitResult:
    history: History
    steps: int  # the step the params are at (counting the steps of a run resumed from)
    seconds: float  # time spent in steps by this call, without the loss evaluations
    divergence: Divergence | None = None
    interrupted: bool = False
    stopped_at: int | None = None  # the step Ctrl-C came at
    first_step: int = 0  # the step this call started from (a checkpoint's)
    checkpoint: Checkpoint | None = None
    notes: list[str] = field(default_factory=list)  # what a resumed run could not restore
    convergence: Convergence | None = None

    @property
    def us_per_step(self) -> float:
        done = self.steps - self.first_step
        return self.seconds / done * 1e6 if done > 0 else float("nan")


class Batches:
    """Minibatch indices: a fresh permutation every epoch, from one seeded generator.
    Its state can be saved and restored, so a stretch of training can be replayed exactly."""

    def __init__(self, n: int, batch: int | None, seed: int):
        self.n, self.batch = n, (batch if batch and batch < n else n)
        self.full = self.batch == n
        self.rng = np.random.default_rng(seed)
        self.perm = None if self.full else self.rng.permutation(n)
        self.pos = 0
        self.steps_per_epoch = math.ceil(n / self.batch)

    def next(self):
        """Indices of the next batch, or None for the whole training set."""
        if self.full:
            return None
        if self.pos >= self.n:
            self.perm = self.rng.permutation(self.n)
            self.pos = 0
        idx = self.perm[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return idx

    def state(self):
        return (self.rng.bit_generator.state, None if self.perm is None else self.perm.copy(), self.pos)

    def restore(self, state) -> None:
        self.rng.bit_generator.state, self.perm, self.pos = state[0], state[1], state[2]


def total_steps(cfg: TrainConfig, n: int) -> int:
    if cfg.optimizer.name == "random_search":  # its steps are trials; `steps` overrides them
        return cfg.steps or int(cfg.optimizer.args["trials"])
    if cfg.steps:
        return cfg.steps
    per_epoch = 1 if cfg.full_batch else math.ceil(n / min(cfg.batch, n))
    return (cfg.epochs or 1000) * per_epoch


def fit(module, params: dict[str, np.ndarray], train: dict[str, np.ndarray],
        test: dict[str, np.ndarray] | None, cfg: TrainConfig, progress=None,
        start: Checkpoint | None = None, history: History | None = None,
        save=None) -> FitResult:
    """Train `params` in place on `train`; `progress(step, total, loss)` at each log point.

    With `start` (a checkpoint saved with `params`), training continues from its step up to the
    configured total, and `history` (that of the earlier run) is continued too. With `save`,
    `save(params, checkpoint)` is called at the log points after the first (see `Saver`), so
    that a process killed outright loses only the steps since the last one."""
    saver = Saver(save)
    with np.errstate(all="ignore"):
        if cfg.optimizer.name in SOLVERS:
            from dsl.training.solvers import solve  # solvers builds on this module's results
            n = len(next(iter(train.values())))
            return solve(module, params, train, test, cfg, progress, start, history,
                         total_steps(cfg, n))
        if cfg.optimizer.name == "random_search":
            result = _random_search(module, params, train, test, cfg, progress, start, history,
                                    saver)
            evaluations = {"objective": result.steps - result.first_step + 1}
        else:
            result = _descend(module, params, train, test, cfg, progress, start, history, saver)
            evaluations = {"objective": result.history.logged,
                           "gradient": result.steps - result.first_step}
        result.convergence = _at_cap(module, params, train, result, evaluations)
        return result


class Saver:
    """Calls `save(params, checkpoint)` at a log point unless the last call took more than a
    tenth of the time since it ended: saving then costs at most about a tenth of the training
    even when the params are large and the steps between log points quick."""

    SHARE = 0.1

    def __init__(self, save):
        self.save, self.cost, self.done = save, 0.0, -math.inf

    def __call__(self, params, checkpoint) -> None:
        """`checkpoint()` makes the Checkpoint; it is only called when a save is due."""
        start = time.perf_counter()
        if self.save is None or start - self.done < self.cost / self.SHARE:
            return
        self.save(params, checkpoint())
        self.done = time.perf_counter()
        self.cost = self.done - start


def _at_cap(module, params, train, result: FitResult, evaluations) -> Convergence:
    """A fixed-step run's convergence: it stops at its cap (or diverged, or was interrupted);
    it has converged if its final gradient is small."""
    norm, rel = gradient_figures(module, params, train)
    iterations = result.steps - result.first_step
    if result.divergence:
        return Convergence(False, "diverged", result.divergence.detail, iterations, evaluations,
                           norm, rel)
    if result.interrupted:
        return Convergence(False, "interrupted", "stopped by Ctrl-C", iterations, evaluations,
                           norm, rel)
    return Convergence(rel <= CONVERGED_RELATIVE_GRADIENT, "step cap reached",
                       f"ran the {result.steps} steps asked for", iterations, evaluations, norm,
                       rel)


def choose_optimizer(cfg: TrainConfig, module, params: dict[str, np.ndarray],
                     rows: Callable[[], dict[str, np.ndarray]] | None = None) -> TrainConfig:
    """The optimizer of a `train` block that names none (LANGUAGE.md section 2.8): lm for a
    least-squares objective of at most MAX_SOLVER_PARAMS param elements (and, given the
    training `rows`, at least as many residuals), lbfgs for any other objective of that size,
    gd(lr = 0.01) for bigger models."""
    if cfg.optimizer is not None:
        return cfg
    if count_params(params) > MAX_SOLVER_PARAMS:
        name = "gd"
    elif is_least_squares(module) and (rows is None or not unfit_solver("lm", module, params, rows())):
        name = "lm"
    else:
        name = "lbfgs"
    return replace(cfg, optimizer=make_optimizer(name, [], None))


def unfit_solver(name: str, module, params: dict[str, np.ndarray],
                 train: dict[str, np.ndarray]) -> tuple[str, str] | None:
    """Why the solver `name` cannot fit this model on the rows `train`, and a hint; None when it
    can. Said before the fit in the model's words, not as scipy's error from inside it."""
    if name == "newton" and not hasattr(module, "hessian"):
        return (f"`newton` needs the exact Hessian, and this model has none: "
                f"{module.HESSIAN_SKIPPED}", "use lbfgs")
    if name != "lm":
        return None
    if not is_least_squares(module):
        return (f"`lm` fits a sum or mean of squares, and the objective `{module.OBJECTIVE}` is "
                "not one", "use lbfgs or newton, or write the objective as `sum(r^2)` or "
                "`mean((f - y)^2)`")
    if not hasattr(module, "jacobian"):
        return (f"`lm` needs the Jacobian, which is generated for at most "
                f"{module.JACOBIAN_MAX_PARAMS:,} param elements; this model has "
                f"{module.N_PARAMS:,}", "use lbfgs, or adam for a model this size")
    bounded = any(np.isfinite(lo) or np.isfinite(hi) for lo, hi in module.BOUNDS.values())
    if not bounded:  # MINPACK's lm needs M >= N; least_squares' trf (bounds) does not
        with np.errstate(all="ignore"):
            m = int(np.size(module.residuals(params, train)))
        if m < module.N_PARAMS:
            return (f"`lm` needs at least as many residuals as param elements: {m:,} "
                    f"residuals, {module.N_PARAMS:,} param elements", "use lbfgs, or more rows")
    return None


MAX_SOLVER_PARAMS = 1000


def count_params(params: dict[str, np.ndarray]) -> int:
    return sum(int(np.size(v)) for v in params.values())


def is_least_squares(module) -> bool:
    """The generated module recognised its objective as a sum or mean of squares."""
    return module.LEAST_SQUARES is not None


def convergence_warning(conv: Convergence, cfg: TrainConfig, module, params) -> ModelWarning | None:
    """A warning for a run that stopped at its step cap with the gradient still large, with the
    figures and what to try next; None otherwise."""
    if conv.reason != "step cap reached" or not conv.relative_gradient > LARGE_RELATIVE_GRADIENT:
        return None
    small = count_params(params) <= MAX_SOLVER_PARAMS
    name = cfg.optimizer.name
    if small and is_least_squares(module) and name != "lm":
        advice = "try `optimizer lm()` in the train block (or `--optimizer lm`)"
    elif small and name not in SOLVERS:
        advice = "try `optimizer lbfgs()` in the train block (or `--optimizer lbfgs`)"
    else:
        advice = f"raise `steps` (now {conv.iterations}), e.g. `--steps {10 * conv.iterations}`"
    return ModelWarning(
        f"{name} stopped at its step cap ({conv.iterations} steps) with the gradient still large "
        f"(norm {conv.gradient_norm:.3g}, relative gradient {conv.relative_gradient:.3g}, where "
        f"converged is at most {CONVERGED_RELATIVE_GRADIENT:g}): the params are not at a minimum",
        None, advice)


def _update_rule(module, cfg: TrainConfig, params):
    """The per-step update for the configured optimizer, and its state (momentum buffers,
    Adam's moments and step count) as a dict of arrays that snapshots copy. sgd without
    momentum is the generated in-place step itself. Params with bounds are projected back into
    them after every update."""
    update, state = _unbounded_rule(module, cfg, params)
    box = [(k, lo, hi) for k, (lo, hi) in bounds(module).items()
           if k in params and (lo > -math.inf or hi < math.inf)]
    if not box:
        return update, state

    def projected(batch):
        update(batch)
        for k, lo, hi in box:
            np.clip(params[k], lo, hi, out=params[k])
    return projected, state


def bounds(module) -> dict[str, tuple[float, float]]:
    """The declared bounds of params, by name (lo, hi; infinite where open)."""
    return getattr(module, "BOUNDS", {})


def _unbounded_rule(module, cfg: TrainConfig, params):
    opt = cfg.optimizer
    lr = opt.args["lr"]
    state: dict[str, np.ndarray] = {}
    if opt.name == "gd" or (opt.name == "sgd" and opt.args["momentum"] == 0):
        step = module.sgd_step
        return (lambda batch: step(params, batch, lr)), state
    for k, v in params.items():
        state["m." + k] = np.zeros_like(v)
    if opt.name == "sgd":
        mu = opt.args["momentum"]

        def momentum(batch):
            for k, g in module.grad(params, batch).items():
                state["m." + k] = mu * state["m." + k] + g
                params[k] -= lr * state["m." + k]
        return momentum, state
    b1, b2, eps = opt.args["beta1"], opt.args["beta2"], opt.args["eps"]
    for k, v in params.items():
        state["v." + k] = np.zeros_like(v)
    state["t"] = np.array(0)

    def adam(batch):
        state["t"] = state["t"] + 1
        c1, c2 = 1 - b1 ** int(state["t"]), 1 - b2 ** int(state["t"])
        for k, g in module.grad(params, batch).items():
            state["m." + k] = b1 * state["m." + k] + (1 - b1) * g
            state["v." + k] = b2 * state["v." + k] + (1 - b2) * (g * g)
            params[k] -= lr * (state["m." + k] / c1) / (np.sqrt(state["v." + k] / c2) + eps)
    return adam, state


def _descend(module, params, train, test, cfg, progress, start, history, saver) -> FitResult:
    n = len(next(iter(train.values())))
    total = total_steps(cfg, n)
    batches = Batches(n, None if cfg.full_batch else cfg.batch, cfg.seed)
    rows = n + (len(next(iter(test.values()))) if test else 0)
    log_every = cfg.log_every or max(1, total // SNAPSHOTS_PER_RUN,
                                     math.ceil(LOG_COST * rows / batches.batch))
    update, opt_state = _update_rule(module, cfg, params)
    result = FitResult(history or History(), 0, 0.0)
    step, spent = _restore(start, cfg, batches, opt_state, result)
    history, result.first_step = result.history, step
    history.truncate(step - 1)  # the earlier run's rows before the step it stopped at
    snapshot = (step, _copy(params), batches.state(), _copy(opt_state), spent)
    stepping = False  # between the first and the last update of a stretch, or replaying

    def checkpoint() -> Checkpoint:
        return Checkpoint(step, spent, cfg.optimizer.name, n,
                          None if batches.full else batches.batch, batches.state(),
                          _copy(opt_state))
    try:
        if not math.isfinite(_log(module, params, train, test, history, step, batches, spent)):
            node = first_nonfinite(module.forward(params, train), module)
            what = f"`{node}` is" if node else "the loss is"
            result.divergence = Divergence(step, node, f"{what} not finite at the start (step "
                                           f"{step}), before any update", step, True)
        while step < total and result.divergence is None:
            stop = min(total, step + log_every - step % log_every)
            t0 = time.perf_counter()
            stepping = True
            while step < stop:
                idx = batches.next()
                update(train if idx is None else {k: a[idx] for k, a in train.items()})
                step += 1
            stepping = False
            spent += time.perf_counter() - t0
            loss = _log(module, params, train, test, history, step, batches, spent)
            if progress:
                progress(step, total, loss)
            if not (math.isfinite(loss) and _finite(params)):
                stepping = True
                result.divergence = _replay(update, opt_state, module, params, train, snapshot,
                                            step, batches)
                stepping = False
                step = result.divergence.kept
                break
            snapshot = (step, _copy(params), batches.state(), _copy(opt_state), spent)
            saver(params, checkpoint)
    except KeyboardInterrupt:
        result.interrupted, result.stopped_at = True, step
        if stepping or not _finite(params):  # perhaps half an update: back to the snapshot
            step, saved, order, saved_opt, spent = snapshot
            params.update(_copy(saved))
            opt_state.update(_copy(saved_opt))
            batches.restore(order)
    _close(module, params, train, test, history, step, batches, spent)
    result.steps, result.seconds = step, spent - (start.seconds if start else 0.0)
    result.checkpoint = checkpoint()
    return result


def _restore(start: Checkpoint | None, cfg, batches: Batches, opt_state,
             result) -> tuple[int, float]:
    """A checkpoint's step and time; its batch order and optimizer state where they belong to
    this configuration (otherwise they start afresh, and a note says so)."""
    if start is None:
        return 0, 0.0
    if start.optimizer == cfg.optimizer.name and _fits(start.buffers, opt_state):
        opt_state.update({k: np.array(v, dtype=opt_state[k].dtype)
                          for k, v in start.buffers.items()})
    elif opt_state:
        result.notes.append(f"the state of {cfg.optimizer.name} starts afresh (the checkpoint has "
                            f"that of {start.optimizer})")
    batch = None if batches.full else batches.batch
    if start.order is not None and (start.rows, start.batch) == (batches.n, batch) \
            and start.optimizer != "random_search":
        batches.restore(start.order)
    elif not batches.full:
        result.notes.append("the batch order starts afresh (the checkpoint's is for other "
                            "batches or rows)")
    return start.step, start.seconds


def _fits(saved: dict[str, np.ndarray], state: dict[str, np.ndarray]) -> bool:
    return saved.keys() == state.keys() and all(np.shape(saved[k]) == np.shape(state[k])
                                                for k in state)


def _close(module, params, train, test, history, step, batches, spent) -> None:
    """End the history with a row for the params kept (unless it has one, or Ctrl-C again)."""
    history.truncate(step)
    if not history.step or history.step[-1] != step:
        try:
            _log(module, params, train, test, history, step, batches, spent)
        except KeyboardInterrupt:
            history.truncate(step - 1)


def _replay(update, opt_state, module, params, train, snapshot, bad_step, batches) -> Divergence:
    """From the last finite snapshot, step once at a time until something is non-finite; name
    the step and the first node (in topological order) that went non-finite, and leave `params`,
    the optimizer state and the batch order as they were before the update that led there:
    one that made a param non-finite, or made the next forward pass non-finite."""
    start, saved, state, saved_opt, _ = snapshot
    params.update(_copy(saved))
    opt_state.update(_copy(saved_opt))
    batches.restore(state)

    def back(to):
        params.update(to[0])
        batches.restore(to[1])
        opt_state.update(to[2])

    previous = None  # the state before the update of the step before
    for step in range(start + 1, bad_step + 1):
        before = (_copy(params), batches.state(), _copy(opt_state))
        idx = batches.next()
        batch = train if idx is None else {k: a[idx] for k, a in train.items()}
        node = first_nonfinite(module.forward(params, batch), module)
        if node is not None:
            back(previous or before)
            return Divergence(step, node, f"`{node}` became non-finite at step {step}",
                              step - 2 if previous else step - 1)
        update(batch)
        bad = next((k for k, v in params.items() if not np.all(np.isfinite(v))), None)
        if bad is not None:
            back(before)
            return Divergence(step, bad, f"the update of step {step} made `{bad}` non-finite",
                              step - 1)
        previous = before
    node = first_nonfinite(module.forward(params, train), module)
    if node is None or previous is None:
        return Divergence(bad_step, node, "the loss over all training rows became non-finite",
                          bad_step)
    back(previous)
    return Divergence(bad_step, node, f"`{node}` became non-finite over all training rows after "
                      f"step {bad_step}", bad_step - 1)


def first_nonfinite(values: dict, module) -> str | None:
    for name, v in values.items():  # forward returns values in topological order
        if not np.all(np.isfinite(v)):
            return name
    return None


def _log(module, params, train, test, history, step, batches, spent) -> float:
    loss = float(module.loss(params, train))
    history.step.append(step)
    history.epoch.append(step / batches.steps_per_epoch)
    history.train_loss.append(loss)
    if test:
        history.test_loss.append(float(module.loss(params, test)))
    history.seconds.append(spent)
    history.spill()
    return loss


def _random_search(module, params, train, test, cfg, progress, start, history,
                   saver) -> FitResult:
    """The tutorial's random simulation: draw every param uniformly, keep the best.
    Ctrl-C keeps the best so far and goes back to the last log point's count and draws, so a
    resumed search draws the same candidates as one never stopped (and keeps the same best)."""
    opt = cfg.optimizer.args
    n = len(next(iter(train.values())))
    trials, low, high = total_steps(cfg, n), opt["low"], opt["high"]
    rng = np.random.default_rng(cfg.seed)
    result = FitResult(history or History(), 0, 0.0)
    done, spent = (start.step, start.seconds) if start else (0, 0.0)
    if start is not None and start.optimizer == "random_search" and start.order is not None:
        rng.bit_generator.state = start.order[0]
    elif start is not None:
        result.notes.append("the random draws start afresh (the checkpoint is not a random "
                            "search's)")
    history, result.first_step = result.history, done
    history.truncate(done - 1)
    log_every = cfg.log_every or max(1, trials // SNAPSHOTS_PER_RUN)
    snapshot, trial = (done, rng.bit_generator.state, spent), done
    best_params = _copy(params)
    try:
        best = float(module.loss(params, train))
        _row(module, history, done, best, best_params, test, spent)
        for trial in range(done + 1, trials + 1):
            t0 = time.perf_counter()
            candidate = {k: rng.uniform(low, high, np.shape(v)).astype(v.dtype)
                         for k, v in params.items()}
            loss = float(module.loss(candidate, train))
            if loss < best:
                best, best_params = loss, candidate
            spent += time.perf_counter() - t0
            if trial % log_every == 0 or trial == trials:
                _row(module, history, trial, best, best_params, test, spent)
                snapshot = (trial, rng.bit_generator.state, spent)
                if progress:
                    progress(trial, trials, best)
                saver(best_params, lambda: Checkpoint(trial, spent, "random_search", n, None,
                                                      (rng.bit_generator.state, None, 0)))
        done = max(done, trials)
    except KeyboardInterrupt:
        result.interrupted, result.stopped_at = True, trial
        done, state, spent = snapshot
        rng.bit_generator.state = state
        history.truncate(done)
    for k, v in best_params.items():
        params[k] = np.array(v)
    result.steps, result.seconds = done, spent - (start.seconds if start else 0.0)
    result.checkpoint = Checkpoint(done, spent, "random_search", n, None,
                                   (rng.bit_generator.state, None, 0))
    return result


def _row(module, history, trial, best, best_params, test, spent) -> None:
    """A random search's history row: the best loss so far (and its test loss)."""
    history.step.append(trial)
    history.epoch.append(float(trial))
    history.train_loss.append(best)
    if test:
        history.test_loss.append(float(module.loss(best_params, test)))
    history.seconds.append(spent)
    history.spill()


def _copy(params):
    return {k: np.array(v, copy=True) for k, v in params.items()}


def _finite(params) -> bool:
    return all(np.all(np.isfinite(v)) for v in params.values())
