"""Training settings: the `train { }` block validated, and the command line's overrides.

Where the block is silent: float64, seed 0, 1000 epochs (or iterations), the whole training set
as one batch. Without an `optimizer`, the optimizer is left open (`None`) until the model is
compiled: `dsl.training.train.choose_optimizer` picks lm, lbfgs or gd from the objective and the
number of params (LANGUAGE.md section 2.8).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from compiler.errors import SemanticError, Span, UsageError, suggest
from dsl.front import ast
from dsl.front.check import Checked

# Each optimizer's arguments in positional order, with defaults (None: required).
OPTIMIZERS: dict[str, tuple[tuple[str, float | None], ...]] = {
    "gd": (("lr", 0.01),),
    "sgd": (("lr", 0.01), ("momentum", 0.0)),
    "adam": (("lr", 0.001), ("beta1", 0.9), ("beta2", 0.999), ("eps", 1e-8)),
    "random_search": (("trials", 1000.0), ("low", -1.0), ("high", 1.0)),
    # full-batch solvers of scipy.optimize (dsl/training/solvers.py): their tolerances
    "lm": (("ftol", 1e-15), ("xtol", 1e-15), ("gtol", 1e-15)),
    "newton": (("gtol", 1e-10),),
    "lbfgs": (("ftol", 1e-13), ("gtol", 1e-10)),
}
SOLVERS = ("lm", "newton", "lbfgs")  # full batch, `steps` caps their iterations
DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Optimizer:
    name: str
    args: dict[str, float] = field(hash=False)

    def __str__(self) -> str:
        inner = ", ".join(f"{k} = {v:g}" for k, v in self.args.items())
        return f"{self.name}({inner})"


@dataclass(frozen=True)
class TrainConfig:
    optimizer: Optimizer | None  # None: not given, chosen by `dsl.training.train.choose_optimizer`
    batch: int | None = None  # None: the whole training set
    epochs: int | None = None
    steps: int | None = None
    seed: int = 0
    dtype: str = "float64"
    log_every: int | None = None  # None: about a hundred lines over the run

    @property
    def full_batch(self) -> bool:
        return self.optimizer.name in ("gd", *SOLVERS) or self.batch is None


DEFAULT_EPOCHS = 1000


def make_optimizer(name: str, given: list[tuple[str | None, float, Span | None]],
                   span: Span | None, error=SemanticError) -> Optimizer:
    """Bind positional and keyword arguments to an optimizer's parameters, checking each."""
    if name not in OPTIMIZERS:
        close = suggest(name, OPTIMIZERS)
        raise error(f"unknown optimizer `{name}`", span,
                    f"did you mean `{close}`?" if close else "use " + ", ".join(OPTIMIZERS))
    spec = OPTIMIZERS[name]
    names = [k for k, _ in spec]
    args: dict[str, float] = {}
    for i, (key, value, arg_span) in enumerate(given):
        if key is None:
            if i >= len(spec):
                raise error(f"`{name}` takes at most {len(spec)} arguments", arg_span or span,
                            f"{name}({', '.join(names)})")
            key = names[i]
        if key not in names:
            close = suggest(key, names)
            raise error(f"`{name}` has no argument `{key}`", arg_span or span,
                        f"did you mean `{close}`?" if close else f"{name}({', '.join(names)})")
        if key in args:
            raise error(f"argument `{key}` given twice", arg_span or span)
        args[key] = value
    for key, default in spec:
        args.setdefault(key, default)
    _validate_args(name, args, span, error)
    return Optimizer(name, args)


def _validate_args(name, args, span, error) -> None:
    if "lr" in args and not 0 < args["lr"] < math.inf:
        raise error(f"the learning rate must be positive and finite, got {args['lr']:g}",
                    span, "e.g. 0.01")
    for key, value in args.items():  # `--lr inf` diverged at step 1; nan compares false
        if not math.isfinite(value):
            raise error(f"`{key}` must be a finite number, got {value:g}", span)
    if name == "sgd" and not 0 <= args["momentum"] < 1:
        raise error("momentum must be in [0, 1)", span)
    if name == "adam":
        for b in ("beta1", "beta2"):
            if not 0 <= args[b] < 1:
                raise error(f"{b} must be in [0, 1)", span)
        if not args["eps"] > 0:
            raise error("eps must be positive", span)
    for tol in ("ftol", "xtol", "gtol"):
        if tol in args and not 0 <= args[tol] < 1:
            raise error(f"{tol} must be in [0, 1), got {args[tol]:g}", span)
    if name == "random_search":
        trials = args["trials"]
        if not (trials >= 1 and float(trials).is_integer()):
            raise error("trials must be a whole number of at least 1", span)
        if not args["low"] < args["high"]:
            raise error("random_search needs low < high", span)
        if args["high"] - args["low"] == float("inf"):
            raise error("random_search needs high - low to be a float64 (at most about 1.8e308)",
                        span)


def train_config(block: ast.Train | None) -> TrainConfig:
    if block is None:
        return TrainConfig(None)
    seen: dict[str, ast.Setting] = {}
    values: dict[str, object] = {}
    for s in block.settings:
        if s.key in seen:
            raise SemanticError(f"`{s.key.replace('_', ' ')}` is set twice", s.span,
                                notes=(("first set here", seen[s.key].span),))
        seen[s.key] = s
        if s.key == "optimizer":
            name, given = s.value
            values["optimizer"] = make_optimizer(name, list(given), s.span)
        elif s.key == "dtype":
            if s.value not in DTYPES:
                raise SemanticError(f"unknown dtype `{s.value}`", s.span, "use float64 or float32")
            values["dtype"] = s.value
        else:
            if s.value < 1 and s.key != "seed":
                raise SemanticError(f"`{s.key.replace('_', ' ')}` must be at least 1", s.span)
            values[s.key] = s.value
    if "epochs" in values and "steps" in values:
        raise SemanticError("set `epochs` or `steps`, not both", seen["steps"].span)
    values.setdefault("optimizer", None)
    return TrainConfig(**values)


def configure(checked: Checked) -> Checked:
    """`checked` with its `train { }` block read into a TrainConfig (its errors raised here):
    the front end keeps the block as written, training gives it a meaning."""
    if checked.train is None:
        checked.train = train_config(checked.train_block)
    return checked


def with_overrides(cfg: TrainConfig, *, epochs=None, steps=None, batch=None, lr=None,
                   optimizer=None, seed=None, dtype=None) -> TrainConfig:
    """The command line's `--epochs --steps --batch --lr --optimizer --seed --dtype`, on a
    configuration whose optimizer is chosen (`dsl.training.train.choose_optimizer`)."""
    changes: dict[str, object] = {}
    for key, value in (("epochs", epochs), ("steps", steps), ("batch", batch)):
        if value is not None:
            if value < 1:
                raise UsageError(f"--{key} must be at least 1, got {value}")
            changes[key] = value
    if epochs is not None:
        changes["steps"] = None
    if steps is not None:
        changes["epochs"] = None
    if epochs is not None and steps is not None:
        raise UsageError("give --epochs or --steps, not both")
    if seed is not None:
        if seed < 0:
            raise UsageError(f"--seed must be a whole number of at least 0, got {seed}")
        changes["seed"] = seed
    if dtype is not None:
        if dtype not in DTYPES:
            raise UsageError(f"unknown dtype `{dtype}`", hint="use float64 or float32")
        changes["dtype"] = dtype
    opt = cfg.optimizer
    if optimizer is not None and optimizer != opt.name:
        opt = make_optimizer(optimizer, [], None, UsageError)
    if lr is not None:
        if "lr" not in opt.args:
            raise UsageError(f"`{opt.name}` has no learning rate")
        opt = make_optimizer(opt.name, [(k, v, None) for k, v in {**opt.args, "lr": lr}.items()],
                             None, UsageError)
    changes["optimizer"] = opt
    return replace(cfg, **changes)
