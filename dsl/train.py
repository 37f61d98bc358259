"""Training: the optimizers, the loop, the history, and divergence that loses nothing.

The loop adds nothing per step that hand-written numpy would not: one permutation per epoch,
slices, the generated step. The full training loss is computed only at log points; there the
params are also checked and a snapshot is kept. When a loss goes non-finite, training replays
from the last snapshot one step at a time to name the first step and node that went non-finite,
and keeps the last finite params.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from dsl.config import TrainConfig

SNAPSHOTS_PER_RUN = 100


@dataclass
class History:
    step: list[int] = field(default_factory=list)
    epoch: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

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


@dataclass
class FitResult:
    history: History
    steps: int
    seconds: float  # time spent in steps, without the loss evaluations at log points
    divergence: Divergence | None = None
    interrupted: bool = False

    @property
    def us_per_step(self) -> float:
        return self.seconds / self.steps * 1e6 if self.steps else float("nan")


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
    if cfg.optimizer.name == "random_search":
        return int(cfg.optimizer.args["trials"])
    if cfg.steps:
        return cfg.steps
    per_epoch = 1 if cfg.full_batch else math.ceil(n / min(cfg.batch, n))
    return (cfg.epochs or 1000) * per_epoch


def fit(module, params: dict[str, np.ndarray], train: dict[str, np.ndarray],
        test: dict[str, np.ndarray] | None, cfg: TrainConfig, progress=None) -> FitResult:
    """Train `params` in place on `train`; `progress(step, total, loss)` at each log point."""
    with np.errstate(all="ignore"):
        if cfg.optimizer.name == "random_search":
            return _random_search(module, params, train, test, cfg, progress)
        return _descend(module, params, train, test, cfg, progress)


def _update_rule(module, cfg: TrainConfig, params):
    """The per-step update for the configured optimizer, and its state (momentum buffers,
    Adam's moments and step count) as a dict of arrays that snapshots copy. sgd without
    momentum is the generated in-place step itself."""
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


def _descend(module, params, train, test, cfg, progress) -> FitResult:
    n = len(next(iter(train.values())))
    total = total_steps(cfg, n)
    batches = Batches(n, None if cfg.full_batch else cfg.batch, cfg.seed)
    log_every = cfg.log_every or max(1, total // SNAPSHOTS_PER_RUN)
    update, opt_state = _update_rule(module, cfg, params)
    history = History()
    snapshot = (0, _copy(params), batches.state(), _copy(opt_state))
    spent = 0.0
    step = 0
    result = FitResult(history, 0, 0.0)
    _log(module, params, train, test, history, 0, batches, 0.0)
    try:
        while step < total:
            stop = min(total, step + log_every - step % log_every)
            t0 = time.perf_counter()
            while step < stop:
                idx = batches.next()
                update(train if idx is None else {k: a[idx] for k, a in train.items()})
                step += 1
            spent += time.perf_counter() - t0
            loss = _log(module, params, train, test, history, step, batches, spent)
            if progress:
                progress(step, total, loss)
            if not (math.isfinite(loss) and _finite(params)):
                result.divergence = _replay(update, opt_state, module, params, train, snapshot,
                                            step, batches)
                step = result.divergence.step - 1
                break
            snapshot = (step, _copy(params), batches.state(), _copy(opt_state))
    except KeyboardInterrupt:
        result.interrupted = True
        if not _finite(params):
            params.update(snapshot[1])
    result.steps, result.seconds = step, spent
    return result


def _replay(update, opt_state, module, params, train, snapshot, bad_step, batches) -> Divergence:
    """From the last finite snapshot, step once at a time until something is non-finite;
    leave `params` at their last finite values and name the step and the node."""
    start, saved, state, saved_opt = snapshot
    params.update(_copy(saved))
    opt_state.update(_copy(saved_opt))
    batches.restore(state)
    for step in range(start + 1, bad_step + 1):
        idx = batches.next()
        batch = train if idx is None else {k: a[idx] for k, a in train.items()}
        values = module.forward(params, batch)
        node = _first_nonfinite(values, module)
        if node is not None:
            return Divergence(step, node, f"`{node}` became non-finite at step {step}")
        before = _copy(params)
        update(batch)
        if not _finite(params):
            bad = next(k for k, v in params.items() if not np.all(np.isfinite(v)))
            params.update(before)
            return Divergence(step, bad, f"the update of step {step} made `{bad}` non-finite")
    values = module.forward(params, train)
    node = _first_nonfinite(values, module)
    return Divergence(bad_step, node, "the loss over all training rows became non-finite")


def _first_nonfinite(values: dict, module) -> str | None:
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
    return loss


def _random_search(module, params, train, test, cfg, progress) -> FitResult:
    """The tutorial's random simulation: draw every param uniformly, keep the best."""
    opt = cfg.optimizer.args
    trials, low, high = int(opt["trials"]), opt["low"], opt["high"]
    rng = np.random.default_rng(cfg.seed)
    history = History()
    best = float(module.loss(params, train))
    best_params = _copy(params)
    log_every = cfg.log_every or max(1, trials // SNAPSHOTS_PER_RUN)
    spent, result = 0.0, FitResult(history, 0, 0.0)
    try:
        for trial in range(1, trials + 1):
            t0 = time.perf_counter()
            candidate = {k: rng.uniform(low, high, np.shape(v)).astype(v.dtype)
                         for k, v in params.items()}
            loss = float(module.loss(candidate, train))
            if loss < best:
                best, best_params = loss, candidate
            spent += time.perf_counter() - t0
            result.steps = trial
            if trial % log_every == 0 or trial == trials:
                history.step.append(trial)
                history.epoch.append(float(trial))
                history.train_loss.append(best)
                if test:
                    history.test_loss.append(float(module.loss(best_params, test)))
                history.seconds.append(spent)
                if progress:
                    progress(trial, trials, best)
    except KeyboardInterrupt:
        result.interrupted = True
    for k, v in best_params.items():
        params[k] = np.array(v)
    result.seconds = spent
    return result


def _copy(params):
    return {k: np.array(v, copy=True) for k, v in params.items()}


def _finite(params) -> bool:
    return all(np.all(np.isfinite(v)) for v in params.values())
