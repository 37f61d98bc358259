"""The Python API: `dsl.load(path)` gives a Model to evaluate, train, predict with and explain."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from compiler.deps import ancestors
from compiler.errors import DataError, SemanticError, UsageError
from dsl.training.config import TrainConfig, with_overrides
from dsl.training.data import OneHot, Standardizer
from dsl.training.checkpoint import load_params
from dsl.training.runtime import (MAX_NODE_BYTES, Compiled, Dataset, check_memory, check_sizes,
                                  compile_file, init_params, load_dataset)
from dsl.training.train import (Checkpoint, FitResult, History, choose_optimizer, fit,
                                 unfit_solver)

if TYPE_CHECKING:
    from dsl.views.explain import Explanation


@dataclass
class EvalResult:
    objective: str | None
    values: dict[str, np.ndarray]
    gradients: dict[str, np.ndarray]

    def to_json(self, full: bool = False) -> dict:
        """Arrays as nested lists; one of more than JSON_FULL_MAX elements as a summary
        (`_summary`) unless `full`: its list would take gigabytes."""
        return {"objective": self.objective,
                "values": {k: _jsonable(v, full) for k, v in self.values.items()},
                "gradients": {k: _jsonable(v, full) for k, v in self.gradients.items()}}


JSON_FULL_MAX = 100_000
SUMMARY_ELEMENTS = 5


def _jsonable(v, full: bool = False):
    """Numbers and nested lists, or a summary (`_summary`) of an array of more than
    JSON_FULL_MAX elements unless `full`."""
    a = np.asarray(v, dtype=float)
    return _summary(a) if a.ndim and not full and a.size > JSON_FULL_MAX else _finite(a)


def _finite(a: np.ndarray):
    """NaN and inf are not JSON, so they become null (as in report.json)."""
    finite = np.isfinite(a)
    if a.ndim == 0:
        return float(a) if finite else None
    return a.tolist() if finite.all() else np.where(finite, a, None).tolist()


def _summary(a: np.ndarray) -> dict:
    """What a large array is in a few numbers: shape, min, max, mean, first and last elements."""
    flat = a.reshape(-1)
    with np.errstate(all="ignore"):
        return {"summary": True, "shape": list(a.shape), "size": int(a.size),
                "min": _finite(np.min(a)), "max": _finite(np.max(a)), "mean": _finite(np.mean(a)),
                "first": _finite(flat[:SUMMARY_ELEMENTS]), "last": _finite(flat[-SUMMARY_ELEMENTS:])}


class Model:
    """A compiled model, its params (seeded start until trained or loaded) and its data."""

    def __init__(self, compiled: Compiled, seed: int | None = None, dtype: str | None = None):
        """Params drawn with `seed` and `dtype` (default: the `train { }` block's)."""
        self.compiled = compiled
        self.checked = compiled.checked
        cfg = self.checked.train
        # (seed, dtype) of the draw the params still are; None once set, loaded or trained
        self._drawn: tuple[int, str] | None = (cfg.seed if seed is None else seed,
                                               dtype or cfg.dtype)
        self.params: dict[str, np.ndarray] = init_params(self.checked, *self._drawn)
        # How raw rows become the inputs' values, as in training: known once the data is loaded
        # (`dataset`, `fit`) or a params file is (`load_params`); `predict` needs them.
        self.transforms: dict[str, Standardizer] = {}
        self.classes: dict[str, OneHot] = {}
        self._params_file: str | None = None  # where `load_params` took them from
        self.max_node_bytes = MAX_NODE_BYTES  # the largest array a node may need (check_memory)
        self._dataset: Dataset | None = None
        self._dataset_dtype: str | None = None

    @property
    def source(self) -> str:
        """The generated numpy module."""
        return self.compiled.source

    @property
    def module(self):
        return self.compiled.module

    @property
    def graph(self):
        return self.compiled.graph

    def derive(self, name: str | list[str] | None = None,
               expand: bool = False) -> Explanation:
        """The chain rule for a param (or input or node; every param when None): `str()` is
        the text of `dsl derive`, `.latex` its LaTeX; a notebook shows it as maths."""
        from dsl.views import explain  # sympy, imported by the methods that print maths
        return explain.derive(self.graph, name, expand)

    def _repr_markdown_(self) -> str:
        from dsl.views import explain
        return explain.model_markdown(self.graph)

    def _repr_latex_(self) -> str:
        from dsl.views import explain
        return "$$" + explain.model_latex(self.graph) + "$$"

    def dataset(self, dtype: str | None = None) -> Dataset:
        dtype = dtype or self.checked.train.dtype
        if self._dataset is None or self._dataset_dtype != dtype:
            self._dataset, self._dataset_dtype = load_dataset(self.checked, dtype), dtype
            self.transforms = self._dataset.transforms
            self.classes = self._dataset.classes
        return self._dataset

    def training_data(self, dtype: str | None = None) -> Dataset:
        """`dataset`, checked to feed training: every input the objective or the prediction
        reads is bound to a column (an unbound one has no rows to train on), and one is."""
        ds = self.dataset(dtype)
        m = self.checked
        reads = ancestors([m.objective], m.reads) if m.objective else set()
        for name in (m.predict, m.target):
            if name:
                reads |= ancestors([name], m.reads)
        for name, inp in m.inputs.items():
            if name in reads and inp.binding is None:
                raise DataError(f"input `{name}` is not bound to a column of the data, so `run` "
                                "cannot feed it", inp.span,
                                f"bind it to a column, e.g. `input {name}[N] <- COLUMN`")
        if not ds.train:
            raise DataError("no input is bound to a column of the data: there is nothing to train "
                            "on", m.data.span if m.data else None,
                            "bind an input to a column, e.g. `input x[N] <- COLUMN`")
        return ds

    def load_params(self, path: str) -> None:
        """Params saved by `dsl run` (or `save_params`), with the `standardize` transforms and
        one-hot classes saved beside them, so that `predict` reads rows as training did."""
        saved = load_params(path, self.checked)
        missing = [p for p in self.checked.params if p not in saved.params]
        if missing:
            raise DataError(f"{path} has no value for param `{missing[0]}`",
                            self.checked.params[missing[0]].span, "was it saved from this model?")
        self.set_params({k: v for k, v in saved.params.items() if k in self.checked.params})
        self.transforms, self.classes = saved.transforms, saved.classes
        self._params_file = path

    def onehot(self, name: str) -> OneHot:
        """The classes of a one-hot input, as trained; an error when they are not known."""
        if name not in self.classes:
            raise self._not_known(name, "one-hot", "classes")
        return self.classes[name]

    def check_data_memory(self, ds: Dataset, dtype: str) -> None:
        """Before training: no node may need an array above `max_node_bytes`, on the training
        rows or on the test rows (the loss is computed on both at log points)."""
        for rows in (ds.train, ds.test):
            if rows:
                check_memory(self.checked, check_sizes(self.checked, rows, None), dtype,
                             self.max_node_bytes)

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        """Replace params by name, each checked against its declared shape."""
        for name, value in params.items():
            if name not in self.checked.params:
                raise DataError(f"`{name}` is not a param of this model")
            arr = np.array(value, dtype=self.checked.train.dtype)
            check_sizes(self.checked, {name: arr}, None)
            self.params[name] = arr
            self._drawn = None

    def inputs_for(self, values: dict[str, object]) -> dict[str, np.ndarray]:
        """Every input: given ones as arrays, the rest from the model's training rows."""
        m = self.checked
        dtype = m.train.dtype
        out = {}
        for name in m.inputs:
            if name in values:
                out[name] = np.asarray(values[name], dtype=dtype)
        missing = [n for n in m.inputs if n not in out]
        unbound = [n for n in missing if m.inputs[n].binding is None]
        if unbound:
            raise DataError(f"no value for input `{unbound[0]}`", m.inputs[unbound[0]].span,
                            f"give it with --set {unbound[0]}=VALUE")
        if missing:
            ds = self.dataset()
            for n in missing:
                out[n] = ds.train[n]
        check_memory(m, check_sizes(m, out, None), dtype, self.max_node_bytes)
        return out

    def fit_config(self, **overrides) -> TrainConfig:
        """The `train { }` settings with `overrides` applied as `dsl run` flags are, the
        optimizer chosen (`choose_optimizer`) when the block names none. A solver named that
        cannot fit this model (`unfit_solver`) is said here, where it was named."""
        rows = lambda: self.training_data().train  # noqa: E731 -- for lm only; any dtype counts the same
        cfg = with_overrides(choose_optimizer(self.checked.train, self.module, self.params, rows),
                             **overrides)
        named = overrides.get("optimizer") or self.checked.train.optimizer  # else chosen to fit
        why = named and unfit_solver(cfg.optimizer.name, self.module, self.params,
                                     rows() if cfg.optimizer.name == "lm" else {})
        if why and overrides.get("optimizer"):
            raise UsageError(f"--optimizer {cfg.optimizer.name}: {why[0]}", hint=why[1])
        if why:
            named = [s for s in self.checked.train_block.settings if s.key == "optimizer"]
            raise SemanticError(why[0], named[0].span, why[1])
        return cfg

    def fit(self, progress=None, start: Checkpoint | None = None, history: History | None = None,
            save=None, keep_params: bool = False, **overrides) -> History:
        """Train on the model's own data with its `train { }` settings; keyword arguments
        override them as `dsl run` flags do (epochs, steps, batch, lr, optimizer, seed, dtype).
        Params start from their seeded draw (drawn again only if not already that draw), or
        as they are with `keep_params`; the last result is kept as `self.last_fit` (its
        `.convergence` says whether and why it stopped). `dsl run` also passes `start` and
        `history` (to resume) and `save` (checkpoints as it goes): see `dsl.training.train.fit`."""
        cfg = self.fit_config(**overrides)
        if self.checked.objective is None:
            raise DataError("the model has no `minimize` statement: nothing to train",
                            hint=self.checked.minimize_hint())
        if not keep_params and self._drawn != (cfg.seed, cfg.dtype):
            self.params = init_params(self.checked, cfg.seed, cfg.dtype)
        self._drawn = None  # trained from here on: the next fit draws afresh
        ds = self.training_data(cfg.dtype)
        self.check_data_memory(ds, cfg.dtype)
        self.last_fit: FitResult = fit(self.module, self.params, ds.train, ds.test, cfg, progress,
                                       start, history, save)
        return self.last_fit.history

    def eval(self, values: dict[str, object] | None = None) -> EvalResult:
        """Values of every input, param and node, and the objective's gradient for every param
        and input; `values` may set inputs and params by name."""
        with self._at(values) as (params, inputs), np.errstate(all="ignore"):
            if self.checked.objective:
                vals, grads = self.module.gradients(params, inputs)
            else:
                vals, grads = self.module.forward(params, inputs), {}
            vals = {k: np.array(v) for k, v in vals.items()}
        return EvalResult(self.checked.objective, vals, {k: np.array(v) for k, v in grads.items()})

    @property
    def bounds(self) -> dict[str, tuple[float, float]]:
        """Each param's (lo, hi), floats (±inf where unbounded); every element of an array
        param has the same bounds."""
        return dict(self.module.BOUNDS)

    @property
    def least_squares(self) -> str | None:
        """"sum" or "mean" when the objective is a sum or mean of squares, else None."""
        return self.module.LEAST_SQUARES

    def residuals(self, values: dict[str, object] | None = None) -> np.ndarray:
        """The least-squares residuals, flattened, at the model's params with `values` set by
        name as in `eval`: objective == LEAST_SQUARES_FACTOR · sum (or mean) of their squares."""
        return self._call_second_order("residuals", values)

    def jacobian(self, values: dict[str, object] | None = None) -> np.ndarray:
        """∂residuals/∂params: M x N_PARAMS, columns in the order of PARAMS, each flattened."""
        return self._call_second_order("jacobian", values)

    def hessian(self, values: dict[str, object] | None = None) -> np.ndarray:
        """∂²objective/∂params²: N_PARAMS x N_PARAMS, in the jacobian's column order."""
        return self._call_second_order("hessian", values)

    def _call_second_order(self, name: str, values) -> np.ndarray:
        mod = self.module
        if self.checked.objective is None:
            raise UsageError(f"the model has no `minimize` statement, so there is no {name}")
        if name != "hessian" and mod.LEAST_SQUARES is None:
            raise UsageError(f"`{self.checked.objective}` is not a sum or mean of squares, so "
                             f"there are no residuals and no {name}",
                             hint="write the objective as `sum(r^2)` or `mean((f - y)^2)`")
        if name == "hessian" and not hasattr(mod, "hessian"):
            raise UsageError(f"this model has no exact Hessian: {mod.HESSIAN_SKIPPED}",
                             hint="use the gradient (or the jacobian, for least squares)")
        if name == "jacobian" and not hasattr(mod, "jacobian"):
            raise UsageError(f"this model has no Jacobian: {mod.N_PARAMS:,} param elements, more "
                             f"than the {mod.JACOBIAN_MAX_PARAMS:,} it is generated for",
                             hint="use the gradient")
        with self._at(values) as (params, inputs), np.errstate(all="ignore"):
            return np.array(getattr(mod, name)(params, inputs))

    @contextmanager
    def _at(self, values: dict[str, object] | None):
        """(params, inputs) with `values` set by name; the model's own params are left as
        they were."""
        values = dict(values or {})
        unknown = [k for k in values if k not in self.checked.inputs and k not in self.checked.params]
        if unknown:
            raise DataError(f"`{unknown[0]}` is not an input or param of this model",
                            hint="set inputs and params by name; nodes are computed")
        saved = dict(self.params)
        try:
            self.set_params({k: v for k, v in values.items() if k in self.checked.params})
            yield self.params, self.inputs_for({k: v for k, v in values.items()
                                                if k in self.checked.inputs})
        finally:
            self.params = saved

    def predict(self, X=None, **inputs) -> np.ndarray:
        """The `predict` node for new inputs: an array for a model with one data input (raw
        columns, transformed as in training), or inputs by name. A one-hot input may be given
        as its class labels (one per row). Refuses an input that training transformed when the
        transformation is not known (neither fitted nor loaded)."""
        m = self.checked
        if m.predict is None:
            raise DataError("the model has no `predict` statement")
        if X is not None:
            reads = ancestors([m.predict], m.reads)
            feeding = [n for n in m.inputs if n in reads]
            if len(feeding) != 1:
                raise DataError("this model's prediction reads several inputs: pass them by name")
            inputs = {feeding[0]: X}
        arrays = {}
        for name, value in inputs.items():
            arrays[name] = self._as_trained(name, value)
        check_memory(m, check_sizes(m, arrays, None), m.train.dtype, self.max_node_bytes)
        with np.errstate(all="ignore"):
            return np.asarray(self.module.predict(self.params, arrays))


    def _as_trained(self, name: str, value) -> np.ndarray:
        """An input's raw value as training saw it: classes to one-hot columns, standardized."""
        inp, dtype = self.checked.inputs.get(name), self.checked.train.dtype
        binding = inp.binding if inp else None
        arr = np.asarray(value)
        if binding and binding.columns.kind == "onehot" and arr.ndim == 1 and len(inp.dims) == 2:
            arr = self.onehot(name).encode_values(name, binding.columns.names[0], arr)
        arr = np.asarray(arr, dtype=dtype)
        if binding and binding.standardize:
            t = self.transforms.get(name)
            if t is None:
                raise self._not_known(name, "standardized", "transformation")
            if t.mean.shape != arr.shape[1:]:
                raise DataError(f"the saved transformation of `{name}` has {t.mean.size} "
                                f"column(s) but the value given has shape {list(arr.shape)}",
                                inp.span, "was the params file saved from this model?")
            arr = t.apply(arr).astype(dtype)
        return arr

    def _not_known(self, name: str, how: str, what: str) -> DataError:
        """Predicting without what training applied to an input would be silently wrong."""
        span = self.checked.inputs[name].span
        if self._params_file:
            return DataError(f"input `{name}` is {how} in training, but {self._params_file} has no "
                             f"saved {what} for it", span, "were the params saved by an older dsl "
                             "or for another model? Train again with `dsl run`")
        return DataError(f"input `{name}` is {how} in training, but the model does not know its "
                         f"{what} yet",
                         span, "call fit() or dataset() first, or load_params(path) with the "
                         "params.npz that `dsl run` saved")


def load(path: str, use_cache: bool = True) -> Model:
    """Parse, check and compile a `.model` file (or take its cached module)."""
    return Model(compile_file(path, use_cache=use_cache))
