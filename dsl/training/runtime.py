"""From a `.model` file to a loaded numpy module, with the compile cache, params and data.

The generated module is cached in the user's cache folder (`cache_dir()`), keyed by a hash of
the model text and the tool's version, so a second load skips sympy. Only our own generated source is ever
compiled; it is registered with `linecache` so a traceback inside it shows the generated line.

A cached module runs as Python, so it is trusted only when (1) the folder and the file belong to
this user and no one else can write them (otherwise the cache is bypassed, with a warning) and
(2) the module's text matches the SHA-256 digest stored beside it in `NAME.sha256` (otherwise,
a damaged or foreign entry, it is compiled again and written over).
"""
from __future__ import annotations

import gc
import hashlib
import linecache
import math
import os
import pickle
import signal
import sys
import time
import types
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from compiler import CODEGEN_VERSION
from compiler.errors import DataError, DslError, ModelWarning, Span
from compiler.shape import fmt_shape
from dsl import __version__
from dsl.front import ast
from dsl.front.check import Checked, check
from dsl.training.config import configure
from dsl.training.data import (OneHot, Standardizer, Table, column_index, fmt_bytes, read_csv, read_header,
                      select, split_rows)
from dsl.front.files import atomic_write, cache_dir, trusted
from dsl.front.build import parse, read_source

if TYPE_CHECKING:
    from compiler.ir import Graph


@dataclass
class Compiled:
    path: str
    text: str
    checked: Checked
    source: str
    module: types.ModuleType
    compile_seconds: float
    cached: bool
    _graph: Graph | None = None
    warnings: list[ModelWarning] = field(default_factory=list)  # about the cache

    @property
    def graph(self) -> Graph:
        if self._graph is None:
            from compiler.lower import lower  # sympy: only when the graph is asked for
            self._graph = lower(self.checked, self.text)
        return self._graph


def compile_file(path: str, text: str | None = None, use_cache: bool = True,
                 checked: Checked | None = None,
                 meanwhile: Callable[[], object] | None = None) -> Compiled:
    """Parse, check, lower, derive and generate (or take the cached module), then load it.
    `checked`: the model `text` already checked (the CLI checks it first, for its warnings).
    `meanwhile`: work for this process while a cache miss is compiled in a child
    (`_compiled_aside`)."""
    start = time.perf_counter()
    with _collector_paused():
        return _compile(path, text, use_cache, checked, meanwhile, start)


@contextmanager
def _collector_paused():
    """A compile makes hundreds of thousands of objects that live until it ends (parse trees,
    sympy expressions, statements, the module's code) and almost no garbage cycles; Python's
    cyclic collector, run again and again over all of them as they pile up, took 10-30% of a
    cold compile. It resumes afterwards (if it ran before) and frees any cycle then."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _compile(path: str, text: str | None, use_cache: bool, checked: Checked | None,
             meanwhile: Callable[[], object] | None, start: float) -> Compiled:
    text = read_source(path) if text is None else text
    checked = configure(check(parse(text, path)) if checked is None else checked)
    warnings: list[ModelWarning] = []
    cache = _cache_path(path, text) if use_cache else None
    if cache and not trusted(os.path.dirname(cache), warnings, folder=True):
        cache = None
    source = _read_cache(cache, warnings) if cache else None
    cached, graph = source is not None, None
    if source is None and meanwhile is not None:
        source = _compiled_aside(checked, text, meanwhile)
    if source is None:
        from compiler.codegen import generate  # sympy is imported on a cache miss only
        from compiler.lower import lower
        graph = lower(checked, text)
        source = generate(graph)
    if cache and not cached:
        _write_cache(cache, source)
    module = load_module(source, os.path.basename(path))
    return Compiled(path, text, checked, source, module, time.perf_counter() - start, cached,
                    graph, warnings)


def _compiled_aside(checked: Checked, text: str, meanwhile: Callable[[], object]) -> str | None:
    """The module's source, generated in a child process forked for it while this process runs
    `meanwhile`: a cold `dsl run` imports scipy.optimize there (0.3 s), beside the child's import
    of sympy and the derivation (0.4-0.6 s), on a second core. A model mistake the child finds
    (a DslError) is raised here, as compiling here would raise it; a child that fails otherwise
    hands back nothing (None), and the caller compiles here. Forked only on Linux, as the plot
    painter is (dsl.views.painter); elsewhere None, after `meanwhile`."""
    if sys.platform != "linux":
        meanwhile()
        return None
    read, write = os.pipe()
    parent, pid = os.getpid(), os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read)
            _dies_with(parent)
            from compiler.codegen import generate
            from compiler.lower import lower
            try:
                outcome = True, generate(lower(checked, text))
            except DslError as e:
                outcome = False, e
            with os.fdopen(write, "wb") as f:
                pickle.dump(outcome, f)
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    outcome = None
    try:
        with os.fdopen(read, "rb") as f:
            meanwhile()
            try:
                outcome = pickle.load(f)
            except Exception:  # the child died, or sent what cannot be read: compiled here
                pass
    finally:
        if outcome is None:  # also when `meanwhile` was interrupted: the child is not needed
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if outcome is None:
        return None
    ok, value = outcome
    if not ok:
        raise value
    return value


def _dies_with(parent: int) -> None:
    """Linux: this child is killed when its parent dies, even by SIGKILL, which leaves the
    parent no time to end it (a big model's compile would otherwise go on for nothing)."""
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before that
        os._exit(1)


def model_digest(text: str, tree: ast.Program) -> str:
    """What a training checkpoint records of its model: the SHA-256 of the model's text (parsed
    as `tree`) without its `train { }` block. Settings may change between a run and its resume
    (as the command line's may); any other change makes it another model."""
    lines = text.split("\n")
    for st in tree.statements:
        if isinstance(st, ast.Train):
            del lines[st.span.line - 1:st.span.end_line]
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def default_out(model: str) -> str:
    """`dsl run`'s folder: runs/<model name>-<8 hex digits of the model's path>, so that two
    models of the same name in different folders never share one. The path is taken relative
    to the working directory, as `runs/` is: the same model gives the same folder however it is
    spelt (`m.model`, `./m.model`, an absolute path)."""
    stem = os.path.splitext(os.path.basename(model))[0]
    tag = hashlib.sha256(os.path.relpath(os.path.abspath(model)).encode("utf-8")).hexdigest()[:8]
    return os.path.join("runs", f"{stem}-{tag}")


def load_module(source: str, name: str) -> types.ModuleType:
    filename = f"<dsl:{name}>"
    code = compile(source, filename, "exec")
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(f"dsl_generated_{name}")
    exec(code, module.__dict__)  # our own generated source, never user text
    return module


def _cache_path(path: str, text: str) -> str | None:
    key = hashlib.sha256(f"{__version__}\0{CODEGEN_VERSION}\0{text}".encode()).hexdigest()[:24]
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(cache_dir(), f"{stem}.{key}.py")


def _read_cache(cache: str, warnings: list[ModelWarning]) -> str | None:
    """The cached module's text if it is there, trusted and matches its stored digest; None
    otherwise (then it is compiled again and written over, so a damaged entry heals)."""
    try:
        with open(cache, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        data = None
    try:
        with open(cache + _DIGEST, encoding="ascii") as f:
            digest = f.read().strip()
    except FileNotFoundError:  # written by an older dsl, or cut short before its digest
        return None
    except (OSError, UnicodeDecodeError):
        digest = None
    if not (trusted(cache, warnings) and trusted(cache + _DIGEST, warnings)):
        return None
    if data is None or digest != hashlib.sha256(data).hexdigest():
        warnings.append(ModelWarning(f"the cached module {cache} is damaged (it does not match "
                                     "its digest): it is compiled again", None))
        return None
    return data.decode("utf-8")


def _write_cache(cache: str, source: str) -> None:
    """Best effort: a folder that cannot be written just means no cache. The module is written
    before its digest, so a reader never takes a half-made entry for a whole one."""
    data = source.encode("utf-8")
    try:
        os.makedirs(os.path.dirname(cache), mode=0o700, exist_ok=True)
        atomic_write(cache, data, private=True)
        atomic_write(cache + _DIGEST, hashlib.sha256(data).hexdigest().encode(), private=True)
    except OSError:
        pass


_DIGEST = ".sha256"  # beside each cached module: the SHA-256 of its bytes, in hex


# ---- params ----------------------------------------------------------------------------------

def init_params(m: Checked, seed: int, dtype: str = "float64") -> dict[str, np.ndarray]:
    """Draw every param's start in declaration order from one seeded generator."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, p in m.params.items():
        try:
            out[name] = _draw(p, tuple(m.shapes[name]), rng, dtype)
        except (MemoryError, ValueError) as e:  # a shape too large for memory, or for numpy
            raise DataError(f"cannot make param `{name}` {fmt_shape(m.shapes[name])}: {e}", p.span,
                            "is its shape what you meant?") from None
    return out


def _draw(p: ast.Param, shape: tuple[int, ...], rng: np.random.Generator, dtype: str
          ) -> np.ndarray:
    """One param's start: its constant, or a draw from its distribution (a `per source`
    param's shape has the sources first)."""
    args = p.init.args
    if p.init.dist == "const":
        v = np.full(shape, args[0])
    elif p.init.dist == "normal":
        v = args[0] + args[1] * rng.standard_normal(shape)
    elif p.init.dist == "uniform":
        v = rng.uniform(args[0], args[1], shape)
    else:
        fan_in = shape[0] if shape else 1
        fan_out = shape[1] if len(shape) > 1 else fan_in
        if p.init.dist == "glorot":
            a = math.sqrt(6.0 / (fan_in + fan_out))
            v = rng.uniform(-a, a, shape)
        else:  # he
            v = math.sqrt(2.0 / fan_in) * rng.standard_normal(shape)
    with np.errstate(over="ignore"):  # too large for float32 becomes inf, refused by the caller
        return np.array(v, dtype=dtype)


# ---- data ------------------------------------------------------------------------------------

@dataclass
class Dataset:
    """The model's data: train and test arrays per bound input, and what is saved with the
    params to read new rows the same way: the `standardize` transforms, the one-hot classes."""

    table: Table
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    transforms: dict[str, Standardizer] = field(default_factory=dict)
    classes: dict[str, OneHot] = field(default_factory=dict)
    # each data source with its train and test row counts, in the order its rows come
    sources: list[tuple[str, int, int]] = field(default_factory=list)


def data_path(m: Checked, d: ast.Data | None = None) -> str:
    """Data paths are relative to the model file; kept as relative as the model's own path, so
    messages name `examples/data/boston.csv`, not an absolute path. The first source's unless
    `d` says which."""
    return os.path.join(os.path.dirname(m.file), (d or m.data).path)


def load_dataset(m: Checked, dtype: str = "float64") -> Dataset:
    """Every bound input's train and test rows. A global fit's rows are those of each source in
    turn (each split by its own `split` and `seed`), with `source` their 0/1 indicators."""
    if m.data is None:
        bound = [n for n, i in m.inputs.items() if i.binding]
        if bound:
            raise DataError("the model has no `data` statement", m.inputs[bound[0]].span,
                            'add `data "file.csv"` to feed its `<-` inputs')
        first = next(iter(m.inputs.values()), None)
        example = f"input {first.name}[N] <- COLUMN" if first else "input x[N] <- COLUMN"
        raise DataError("the model has no `data` statement and no input bound to a column: "
                        "there is nothing to train on", first.span if first else None,
                        f'add `data "file.csv"` and bind the inputs to its columns, e.g. '
                        f"`{example}`")
    tables, splits = [], []
    for d in m.sources:
        table = read_csv(data_path(m, d), d.span)
        train_rows, test_rows = split_rows(len(table.values), d.split, d.seed)
        if len(train_rows) == 0:
            raise DataError(f"the split leaves no training rows out of {len(table.values)}",
                            d.span, "use a larger split")
        tables.append(table)
        splits.append((train_rows, test_rows))
    ds = Dataset(tables[0], {}, {})
    ds.sources = [(name, len(tr), len(te)) for name, (tr, te) in zip(m.source_names, splits)]
    for name, inp in m.inputs.items():
        if inp.binding is None:
            continue
        cols = inp.binding.columns
        if cols.kind == "onehot":  # the classes of every source
            fits = [OneHot.fit(t, cols) for t in tables]
            ds.classes[name] = OneHot(np.unique(np.concatenate([f.classes for f in fits])))
        parts = []
        for k, table in enumerate(tables):
            if cols.kind == "sources":
                values = np.zeros((len(table.values), len(tables)))
                values[:, k] = 1.0
            else:
                values = _fit_declared(select(table, cols, ds.classes.get(name))[0], inp)
            parts.append(values)
        train = np.concatenate([v[tr] for v, (tr, _) in zip(parts, splits)])
        test = np.concatenate([v[te] for v, (_, te) in zip(parts, splits)])
        if inp.binding.standardize:
            ds.transforms[name] = Standardizer().fit(train)
            train, test = ds.transforms[name].apply(train), ds.transforms[name].apply(test)
        with np.errstate(over="ignore"):
            cast = [np.asarray(v, dtype=dtype) for v in (train, test)]
        if not all(np.all(np.isfinite(c)) for c in cast):
            big = max(float(np.max(np.abs(v), initial=0)) for v in (train, test))
            raise DataError(f"input `{name}` has values too large for {dtype} (up to {big:.4g})",
                            inp.binding.span, "add `standardize` to the input, rescale the "
                            "column, or train in float64")
        ds.train[name] = np.ascontiguousarray(cast[0])
        ds.test[name] = np.ascontiguousarray(cast[1])
    check_sizes(m, ds.train, m.data.span)
    return ds


def check_header(m: Checked) -> tuple[int, dict[str, int]]:
    """`dsl check` on a model with `data`: the file's header (not its rows) against the `<-`
    inputs. Their columns must exist and fill the declared shapes; a size name given by a
    column count is bound (`input X[N, D] <- a..d` binds D = 4), the same for every input.
    Returns the number of columns (of the first source's file) and those sizes. A global
    fit's every source is checked the same way."""
    sizes: dict[str, tuple[int, str]] = {}
    counts = []
    for source in m.sources:
        columns = read_header(data_path(m, source), source.span)
        counts.append(len(columns))
        table = Table(data_path(m, source), columns, np.zeros((0, len(columns))))
        for name, inp in m.inputs.items():
            cols = inp.binding.columns if inp.binding else None
            if cols is None or cols.kind == "sources":  # the sources are the data statements
                continue
            if cols.kind == "onehot":  # its classes are in the rows
                column_index(table, cols.names[0], cols.span)
                continue
            values = _fit_declared(select(table, cols)[0], inp)
            if len(inp.dims) == 2 and isinstance(inp.dims[1], str):
                d, k = inp.dims[1], values.shape[1]
                if d in sizes and sizes[d][0] != k:
                    raise DataError(f"size `{d}` is {sizes[d][0]} for `{sizes[d][1]}` but {k} "
                                    f"for `{name}`", cols.span, "every use of a size name must agree")
                sizes.setdefault(d, (k, name))
    return counts[0], {d: k for d, (k, _) in sizes.items()}


def _fit_declared(values: np.ndarray, inp: ast.Input) -> np.ndarray:
    """Columns laid out as the input's declared shape: [N] or [N, k]."""
    dims, k = inp.dims, values.shape[1]
    span = inp.binding.columns.span
    if len(dims) == 0:
        raise DataError(f"input `{inp.name}` is a scalar but it is fed {k} column(s) of rows",
                        inp.span, f"declare it with rows first, e.g. `input {inp.name}[N, {k}]`")
    if len(dims) == 1:
        if k != 1:
            raise DataError(f"input `{inp.name}` is {fmt_shape(dims)} (one column) but it is fed "
                            f"{k} columns", span, f"declare it as [{dims[0]}, {k}]")
        return values[:, 0]
    if isinstance(dims[1], int) and dims[1] != k:
        raise DataError(f"input `{inp.name}` is declared {fmt_shape(dims)} but its columns give "
                        f"{k}", span, f"declare it as [{dims[0]}, {k}] or pick {dims[1]} columns")
    return values


def check_sizes(m: Checked, values: dict[str, np.ndarray], span: Span | None) -> dict[str, int]:
    """Bind size names (N) from the inputs' arrays; every use of a name must agree."""
    sizes: dict[str, tuple[int, str]] = {}
    for name, arr in values.items():
        if name not in m.inputs and name not in m.params:
            continue
        dims = m.shapes[name]
        where = m.statements[name].span
        if np.ndim(arr) != len(dims):
            raise DataError(f"`{name}` should be {fmt_shape(dims)} but the value given has shape "
                            f"{list(np.shape(arr))}", span or where)
        for d, n in zip(dims, np.shape(arr)):
            if isinstance(d, int) and d != n:
                raise DataError(f"`{name}` should be {fmt_shape(dims)} but the value given has "
                                f"shape {list(np.shape(arr))}", span or where)
            if isinstance(d, str):
                if d in sizes and sizes[d][0] != n:
                    raise DataError(f"size `{d}` is {sizes[d][0]} for `{sizes[d][1]}` but {n} for "
                                    f"`{name}`", span or where, "every use of a size name must agree")
                sizes.setdefault(d, (n, name))
    return {d: n for d, (n, _) in sizes.items()}


# ---- memory ----------------------------------------------------------------------------------

MAX_NODE_BYTES = 4 << 30  # one array of a node's value (or of a part of its expression)


def check_memory(m: Checked, sizes: dict[str, int], dtype: str,
                 limit: int = MAX_NODE_BYTES) -> None:
    """Refuse, before running, a node whose value or any part of its expression would be an
    array larger than `limit` bytes with the sizes the data binds (`X @ transpose(X)` with
    200,000 rows is 298 GiB): numpy would fail after minutes, or the machine would swap."""
    itemsize = np.dtype(dtype).itemsize
    for name, typed in m.nodes.items():
        seen: set[int] = set()
        stack = [typed]
        while stack:
            t = stack.pop()
            if id(t) in seen:
                continue
            seen.add(id(t))
            stack.extend(t.args)
            shape = [d if isinstance(d, int) else sizes.get(d, 1) for d in t.shape]
            need = math.prod(shape) * itemsize
            if need > limit:
                raise DataError(f"`{name}` needs an array of {shape} {dtype}, {fmt_bytes(need)}: "
                                f"more than the limit of {fmt_bytes(limit)} for one array", t.span,
                                "use fewer rows or a smaller shape, or raise the limit with "
                                "--max-node-memory (docs/LANGUAGE.md section 14)")

