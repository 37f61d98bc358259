"""The checker: names, `def`s inlined, topological order, shapes; a model or a DslError.

Its output is a `Checked` model whose expressions are `Typed` trees: every operation with its
inferred static shape, `def` calls already expanded. Order of statements does not matter; the
graph is sorted deterministically (ties by source line) and iteratively, so 10,000 nodes are fine.
"""
from __future__ import annotations

import math
import heapq
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from compiler.deps import ancestors
from compiler.errors import ModelWarning, SemanticError, Span, suggest
from compiler.ops import BUILTINS, CONSTANT_NAMES
from compiler.shape import Shape, broadcast, elementwise_shape, fmt_shape
from dsl.front import ast

if TYPE_CHECKING:
    from dsl.training.config import TrainConfig

SOURCE = "source"  # a global fit's input of 0/1 source indicators, one column per `data`
KEYWORDS = {"input", "param", "const", "def", "minimize", "predict", "target", "report", "data",
            "train", "onehot", "standardize"}
DISTRIBUTIONS = {"normal": 2, "uniform": 2, "glorot": 0, "he": 0}
# The work of deriving a statement: its terms once its defs are inlined, times the names it
# reads (sympy takes one derivative per name, each as large as the statement). A def that uses
# its argument twice doubles the terms at each level, and a product of many names is derived once
# per name, so a short line can cost minutes; these limits keep compiling a model roughly linear
# in its size (LANGUAGE.md section 6). The model's total is twice the work of the largest
# synthetic models of `bench/run.py --only compile` (10,000 nodes, about 45,000).
MAX_STATEMENT_WORK = 10_000
MAX_MODEL_WORK = 100_000


@dataclass(frozen=True)
class Typed:
    """An expression with its shape: op is num, name, constant (`pi`, `e`), neg, + - * / ^ @,
    a comparison, index (`x[:, k]`: the last axis dropped), slice (`x[:, a:b]`), or a
    built-in's name."""

    op: str
    args: tuple[Typed, ...]
    shape: Shape
    span: Span = field(compare=False)
    value: float | None = None
    name: str | None = None
    axis: int | None = None
    part: tuple[int, int] | None = None  # index and slice: [start, stop) of the last axis


@dataclass
class Checked:
    file: str
    inputs: dict[str, ast.Input]
    params: dict[str, ast.Param]
    consts: dict[str, ast.Const]
    nodes: dict[str, Typed]
    statements: dict[str, ast.Input | ast.Param | ast.Const | ast.Assign]
    order: list[str]  # every input, param, const and node, dependencies first
    shapes: dict[str, Shape]
    objective: str | None
    predict: str | None
    reports: list[str]  # `report NAME`: scalars given ± σ after a fit
    data: ast.Data | None  # the first `data` statement
    train_block: ast.Train | None  # the `train { }` block as written
    warnings: list[ModelWarning]
    sources: list[ast.Data] = field(default_factory=list)  # every `data`, in order
    source_names: list[str] = field(default_factory=list)  # several: a global fit
    target: str | None = None  # `target NAME`: what the report scores the prediction against
    train: TrainConfig | None = None  # the block's meaning: `dsl.training.config.configure`
    # node -> the names its expression reads directly (`reads`), found once by the checker
    reads_of: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def per_source(self) -> list[str]:
        """The params declared `per source`: one value (or array) for each data source."""
        return [n for n, p in self.params.items() if p.per_source]

    def minimize_hint(self) -> str:
        """What to add to a model without `minimize`: the scalar nodes it could name."""
        scalars = [f"`{n}`" for n in self.nodes if self.shapes[n] == ()]
        if not scalars:
            return "add a scalar node, e.g. `loss = mean((yhat - y)^2)`, and `minimize loss`"
        more = f", ... ({len(scalars)} in all)" if len(scalars) > 8 else ""
        return ("add `minimize NAME` naming a scalar node: " + ", ".join(scalars[:8]) + more)

    def reads(self, name: str) -> frozenset[str]:
        """The names `name` reads directly (`compiler.deps.ancestors` follows them)."""
        return self.reads_of.get(name, frozenset())


def check(model: ast.Program) -> Checked:
    return _Checker(model).run()


class _Checker:
    def __init__(self, model: ast.Program):
        self.model = model
        self.decls: dict[str, ast.Statement] = {}
        self.defs: dict[str, ast.Def] = {}
        self.shapes: dict[str, Shape] = {}
        self.warnings: list[ModelWarning] = []

    # ---- the passes ----------------------------------------------------------------------

    def run(self) -> Checked:
        singles: dict[type, ast.Statement] = {}
        reports: list[ast.Report] = []
        sources = [st for st in self.model.statements if isinstance(st, ast.Data)]
        for st in self.model.statements:
            if isinstance(st, ast.Report):
                reports.append(st)
            elif isinstance(st, ast.Data):
                continue
            elif isinstance(st, (ast.Minimize, ast.Predict, ast.Target, ast.Train)):
                if type(st) in singles:
                    first = singles[type(st)]
                    raise SemanticError(f"a second `{_keyword(st)}` statement", st.span,
                                        "a model has at most one", notes=(("the first one", first.span),))
                singles[type(st)] = st
            else:
                self._declare(st)
        names = self._sources(sources)
        for st in self.model.statements:
            if isinstance(st, ast.Input):
                self._check_input(st)
            elif isinstance(st, ast.Param):
                self._check_param(st)
            elif isinstance(st, ast.Const):
                self.shapes[st.name] = ()
        if len(names) > 1:
            self._declare_source_input(names, sources)
        deps = {name: self._dependencies(st) for name, st in self.decls.items()
                if isinstance(st, ast.Assign)}
        order = self._toposort(deps)
        nodes: dict[str, Typed] = {}
        work: dict[str, int] = {}
        reads: dict[str, frozenset[str]] = {}
        for name in order:
            st = self.decls[name]
            if isinstance(st, ast.Assign):
                try:
                    nodes[name] = self._type(st.expr, {}, ())
                except RecursionError:  # each def is shallow, but inlined they nest deeper
                    raise SemanticError(f"`{name}` is nested too deeply once its defs are expanded",
                                        st.span, "split it into several statements, one node "
                                        "per line") from None
                work[name], reads[name] = self._work(st, nodes[name])
                self.shapes[name] = nodes[name].shape
        self._check_model_work(work)
        objective = self._target(singles.get(ast.Minimize))
        predict = self._target(singles.get(ast.Predict))
        if objective is not None and self.shapes[objective] != ():
            st = singles[ast.Minimize]
            raise SemanticError(f"the objective `{objective}` must be a scalar, but it is "
                                f"{fmt_shape(self.shapes[objective])}", st.name_span,
                                "take `mean(...)` or `sum(...)` over its rows")
        reported = self._reports(reports)
        checked = Checked(
            file=self.model.file,
            inputs={n: s for n, s in self.decls.items() if isinstance(s, ast.Input)},
            params={n: s for n, s in self.decls.items() if isinstance(s, ast.Param)},
            consts={n: s for n, s in self.decls.items() if isinstance(s, ast.Const)},
            nodes=nodes, statements=dict(self.decls), order=order, shapes=self.shapes,
            objective=objective, predict=predict, reports=reported,
            data=sources[0] if sources else None, train_block=singles.get(ast.Train), warnings=self.warnings,
            sources=sources, source_names=names,
            target=self._target(singles.get(ast.Target)), reads_of=reads)
        if checked.target:
            _check_target(checked, singles[ast.Target])
        self._warn_unused(checked)
        return checked

    def _work(self, st: ast.Assign, t: Typed) -> tuple[int, frozenset[str]]:
        """Terms times names read (LANGUAGE.md section 6), and those names; above the limit, a
        refusal."""
        terms = _tree_size(t)
        if terms > MAX_STATEMENT_WORK:  # no walk for names through a tree past the limit
            raise _too_large(st, terms, 1, self._calls_def(st.expr))
        names = frozenset(_names_in(t))
        work = terms * max(len(names), 1)
        if work > MAX_STATEMENT_WORK:
            raise _too_large(st, terms, len(names), self._calls_def(st.expr))
        return work, names

    def _calls_def(self, e: ast.Expr) -> bool:
        stack = [e]
        while stack:
            x = stack.pop()
            if isinstance(x, ast.Call):
                if x.func in self.defs:
                    return True
                stack.extend(x.args)
                stack.extend(v for _, v in x.kwargs)
            elif isinstance(x, ast.Binary):
                stack += [x.left, x.right]
            elif isinstance(x, ast.Unary):
                stack.append(x.operand)
        return False

    def _check_model_work(self, work: dict[str, int]) -> None:
        """The whole model's derivation work; the statement where it passes the limit is shown."""
        total = 0
        for name, w in work.items():
            total += w
            if total > MAX_MODEL_WORK:
                largest = max(work, key=work.__getitem__)
                raise SemanticError(
                    f"the model is too large to derive: its statements need more than "
                    f"{MAX_MODEL_WORK:,} units of derivation work (terms × names read), the "
                    f"limit, by the time `{name}` is reached", self.decls[name].span,
                    f"compiling takes time in proportion to this work; the largest statement is "
                    f"`{largest}` ({work[largest]:,}); split the model into smaller ones",
                    notes=((f"`{largest}` is defined here", self.decls[largest].span),))

    def _reports(self, reports: list[ast.Report]) -> list[str]:
        """The names of `report` statements: each a scalar node or param, reported once."""
        seen: dict[str, ast.Report] = {}
        for st in reports:
            target = self._target(st)
            if self.shapes[target] != ():
                raise SemanticError(f"`report` gives a scalar ± σ, but `{target}` is "
                                    f"{fmt_shape(self.shapes[target])}", st.name_span,
                                    f"report a scalar made from it, e.g. `m = mean({target})`")
            if target in seen:
                raise SemanticError(f"`{target}` is reported twice", st.name_span,
                                    notes=(("reported here first", seen[target].span),))
            seen[target] = st
        return list(seen)

    # ---- global fits: several data sources ------------------------------------------------

    def _sources(self, sources: list[ast.Data]) -> list[str]:
        """Each `data` statement's name (`as NAME`, else its file's stem), all different."""
        names: dict[str, ast.Data] = {}
        for st in sources:
            name = st.name or re.sub(r"\W", "_", os.path.basename(st.path).split(".")[0]) or "data"
            if name in names:
                raise SemanticError(f"two data sources are called `{name}`", st.span,
                                    "name each one: `data \"file.csv\" as NAME`",
                                    notes=(("the first one", names[name].span),))
            names[name] = st
        if len(sources) == 1 and sources[0].name is not None:
            raise SemanticError("`as NAME` names one of several data sources, but this is the "
                                "only one", sources[0].span, "a global fit has two `data` "
                                "statements or more; drop `as` for one file")
        for st in self.decls.values():
            if isinstance(st, ast.Param) and st.per_source and len(sources) < 2:
                raise SemanticError(f"param `{st.name}` is `per source`, but the model has "
                                    f"{len(sources) or 'no'} data source{'s' * (not sources)}",
                                    st.span, "a global fit has several `data` statements, one "
                                    "per experiment; otherwise drop `per source`")
        return list(names)

    def _declare_source_input(self, names: list[str], sources: list[ast.Data]) -> None:
        """A global fit's rows are the rows of every source, in order; `source` is their 0/1
        indicator [rows, sources], and a `per source` param `A` reads as `source @ A`: on each
        row, the value of that row's source."""
        if SOURCE in self.decls:
            st = self.decls[SOURCE]
            raise SemanticError(f"`{SOURCE}` is the name of the data sources in a global fit",
                                st.name_span, f"choose another name, e.g. `{SOURCE}_`")
        rows = {st.dims[0] for st in self.decls.values()
                if isinstance(st, ast.Input) and st.binding and st.dims}
        bound = [st for st in self.decls.values() if isinstance(st, ast.Input) and st.binding]
        if len(rows) != 1 or not isinstance(next(iter(rows)), str):
            used = ", ".join(sorted(str(d) for d in rows)) or "none"
            raise SemanticError("the inputs of a global fit are fed rows of data, with one size "
                                f"name for the rows, but they use {used}",
                                bound[0].span if bound else sources[1].span,
                                "declare each `<-` input with the same row dim: `[N]`, `[N, k]`")
        n = next(iter(rows))
        span = sources[1].span
        columns = ast.Columns("sources", tuple(names), span)
        self.decls[SOURCE] = ast.Input(SOURCE, (n, len(names)), ast.Binding(columns, False, span),
                                       span, span)
        self.shapes[SOURCE] = (n, len(names))
        for name, st in self.decls.items():
            if isinstance(st, ast.Param) and st.per_source:
                self.shapes[name] = (len(names),) + tuple(st.dims)

    def _declare(self, st) -> None:
        name = st.name
        if name in KEYWORDS or name in BUILTINS:
            what = "a keyword" if name in KEYWORDS else "a built-in function"
            raise SemanticError(f"`{name}` is {what} and cannot be a name", st.name_span,
                                f"choose another name, e.g. `{name}_`")
        first = self.decls.get(name) or self.defs.get(name)
        if first is not None:
            raise SemanticError(f"`{name}` is defined twice", st.name_span,
                                "every name is defined exactly once",
                                notes=((f"`{name}` is first defined here", first.name_span),))
        if isinstance(st, ast.Def):
            for i, p in enumerate(st.params):
                if p in st.params[:i]:
                    raise SemanticError(f"parameter `{p}` appears twice in `def {name}`",
                                        st.name_span)
            self.defs[name] = st
        else:
            self.decls[name] = st

    def _per_source(self, name: str) -> bool:
        st = self.decls.get(name)
        return isinstance(st, ast.Param) and st.per_source and SOURCE in self.decls

    def _check_input(self, st: ast.Input) -> None:
        if st.binding and len(st.dims) > 2:
            raise SemanticError(f"an input fed from data has at most 2 dims, `{st.name}` has "
                                f"{len(st.dims)}", st.span, "rows first: `[N, 13]` or `[N]`")
        self._positive_dims(st.dims, st.span)
        self.shapes[st.name] = st.dims

    def _size_name_hint(self, st: ast.Param, size: str) -> str:
        """A column count a binding fixes is the number to write: `<- a, b, c` makes `D` 3."""
        for inp in self.decls.values():
            if not (isinstance(inp, ast.Input) and inp.binding and len(inp.dims) == 2
                    and inp.dims[1] == size):
                continue
            cols = inp.binding.columns
            count = {"one": 1, "list": len(cols.names)}.get(cols.kind)
            if count is None:
                where = f"{cols.names[0]}..{cols.names[-1]}" if cols.kind == "range" \
                    else f"the classes of `{cols.names[0]}`"
                return (f"a param's dims are whole numbers, known before data: write the count "
                        f"of {where} (the columns of `{inp.name}`) in place of `{size}`")
            dims = ", ".join(str(count) if x == size else str(x) for x in st.dims)
            return (f"`{size}` is {count} here (the columns of `{inp.name}`): "
                    f"write `param {st.name}[{dims}]`")
        return "a param's dims are whole numbers, known before data"

    def _check_param(self, st: ast.Param) -> None:
        for d in st.dims:
            if isinstance(d, str):
                raise SemanticError(f"param `{st.name}` has size name `{d}` in its shape",
                                    st.span, self._size_name_hint(st, d))
        self._positive_dims(st.dims, st.span)
        init = st.init
        if init.dist != "const":
            if init.dist not in DISTRIBUTIONS:
                raise SemanticError(f"unknown initial distribution `{init.dist}`", init.span,
                                    f"did you mean `{close}`?"
                                    if (close := suggest(init.dist, DISTRIBUTIONS))
                                    else "use normal(mu, sigma), uniform(lo, hi), glorot or he")
            want = DISTRIBUTIONS[init.dist]
            if len(init.args) != want:
                raise SemanticError(f"`{init.dist}` takes {want} arguments, got {len(init.args)}",
                                    init.span, "normal(mu, sigma), uniform(lo, hi), glorot, he")
            if init.dist == "normal" and init.args[1] < 0:
                raise SemanticError("normal(mu, sigma) needs sigma >= 0", init.span)
            if init.dist == "uniform" and init.args[0] > init.args[1]:
                raise SemanticError("uniform(lo, hi) needs lo <= hi", init.span)
            if init.dist == "uniform" and init.args[1] - init.args[0] == float("inf"):
                raise SemanticError("uniform(lo, hi) needs hi - lo to be a float64 (at most "
                                    "about 1.8e308)", init.span)
        if st.bounds is not None:
            _check_bounds(st)
        self.shapes[st.name] = st.dims

    @staticmethod
    def _positive_dims(dims, span) -> None:
        for d in dims:
            if isinstance(d, int) and d < 1:
                raise SemanticError(f"a dimension must be at least 1, got {d}", span)

    def _target(self, st) -> str | None:
        if st is None:
            return None
        if st.name not in self.decls:
            close = suggest(st.name, self.decls)
            raise SemanticError(f"unknown name `{st.name}`", st.name_span,
                                f"did you mean `{close}`?" if close else None)
        return st.name

    # ---- names and order -----------------------------------------------------------------

    def _dependencies(self, st: ast.Assign) -> list[tuple[str, Span]]:
        """Global names an equation reads, through the defs it calls (iteratively)."""
        out: list[tuple[str, Span]] = []
        stack: list[tuple[ast.Expr, frozenset[str], tuple[str, ...]]] = [(st.expr, frozenset(), ())]
        visited = 0
        while stack:
            e, local, calling = stack.pop()
            visited += 1
            if visited > MAX_STATEMENT_WORK:
                raise _too_large(st, visited, 1, True)
            if isinstance(e, ast.Name):
                if e.id not in local and (e.id in self.decls or e.id not in CONSTANT_NAMES):
                    if e.id not in self.decls:
                        close = suggest(e.id, [*self.decls, *local])
                        raise SemanticError(f"unknown name `{e.id}`", e.span,
                                            f"did you mean `{close}`?" if close else None)
                    out.append((e.id, e.span))
                    if self._per_source(e.id):
                        out.append((SOURCE, e.span))
            elif isinstance(e, ast.Unary):
                stack.append((e.operand, local, calling))
            elif isinstance(e, ast.Binary):
                stack.append((e.left, local, calling))
                stack.append((e.right, local, calling))
            elif isinstance(e, ast.Index):
                stack.append((e.base, local, calling))
            elif isinstance(e, ast.Call):
                stack.extend((a, local, calling) for a in e.args)
                stack.extend((v, local, calling) for _, v in e.kwargs)
                d = self.defs.get(e.func)
                if d is not None:
                    if e.func in calling:
                        chain = " -> ".join((*calling, e.func))
                        raise SemanticError(f"`def {e.func}` calls itself ({chain})", e.span,
                                            "defs are expanded inline, so they cannot recurse")
                    stack.append((d.expr, frozenset(d.params), (*calling, e.func)))
        return out

    def _toposort(self, deps: dict[str, list[tuple[str, Span]]]) -> list[str]:
        """Kahn's algorithm, ties broken by source position; a cycle is spelled out."""
        line = {name: (st.span.line, st.span.col) for name, st in self.decls.items()}
        users: dict[str, list[str]] = {name: [] for name in self.decls}
        waiting = {name: 0 for name in self.decls}
        for name, ds in deps.items():
            for d in dict.fromkeys(n for n, _ in ds):
                users[d].append(name)
                waiting[name] += 1
        ready = [(line[n], n) for n, k in waiting.items() if k == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            _, n = heapq.heappop(ready)
            order.append(n)
            for u in users[n]:
                waiting[u] -= 1
                if waiting[u] == 0:
                    heapq.heappush(ready, (line[u], u))
        if len(order) < len(self.decls):
            self._raise_cycle({n for n, k in waiting.items() if k > 0}, deps, line)
        return order

    def _raise_cycle(self, stuck, deps, line) -> None:
        start = min(stuck, key=lambda n: line[n])
        path, seen = [start], {start: 0}
        while True:
            nxt = next(d for d, _ in sorted(deps[path[-1]], key=lambda t: line[t[0]]) if d in stuck)
            if nxt in seen:
                cycle = path[seen[nxt]:] + [nxt]
                break
            seen[nxt] = len(path)
            path.append(nxt)
        first = self.decls[cycle[0]]
        notes = tuple((f"`{n}` is defined here", self.decls[n].span) for n in cycle[1:-1])
        raise SemanticError("cycle in the graph: " + " -> ".join(cycle), first.span,
                            "a node cannot depend on itself; break the loop", notes=notes)

    def _warn_unused(self, checked: Checked) -> None:
        objective, predict = checked.objective, checked.predict
        used = {n for n in (objective, predict, checked.target) if n} | set(checked.reports)
        reaches = ancestors([objective], checked.reads) if objective else set()
        for names in checked.reads_of.values():
            used.update(names)
        for name, st in self.decls.items():
            if isinstance(st, ast.Param) and objective and name not in reaches:
                self.warnings.append(ModelWarning(
                    f"param `{name}` does not affect the objective `{objective}`", st.name_span,
                    "it will never change in training"))
            elif isinstance(st, ast.Assign) and name not in used:
                self.warnings.append(ModelWarning(
                    f"node `{name}` is not used", st.name_span,
                    "nothing reads it, and it is neither minimized nor predicted"))

    # ---- typing and shapes ---------------------------------------------------------------

    def _type(self, e: ast.Expr, env: dict[str, Typed], calling: tuple[str, ...]) -> Typed:
        if isinstance(e, ast.Num):
            return Typed("num", (), (), e.span, value=e.value)
        if isinstance(e, ast.Name):
            if e.id in env:
                return env[e.id]
            if self._per_source(e.id):  # on each row, the value of its source: `source @ A`
                rows = Typed("name", (), self.shapes[SOURCE], e.span, name=SOURCE)
                own = Typed("name", (), self.shapes[e.id], e.span, name=e.id)
                return Typed("@", (rows, own), _matmul_shape(rows, own, e.span), e.span)
            if e.id not in self.decls:  # `pi` or `e`, which the model does not define itself
                return Typed("constant", (), (), e.span, name=e.id)
            return Typed("name", (), self.shapes[e.id], e.span, name=e.id)
        if isinstance(e, ast.Unary):
            a = self._type(e.operand, env, calling)
            return Typed("neg", (a,), a.shape, e.span)
        if isinstance(e, ast.Binary):
            a = self._type(e.left, env, calling)
            b = self._type(e.right, env, calling)
            if e.op == "@":
                return Typed("@", (a, b), _matmul_shape(a, b, e.span), e.span)
            return Typed(e.op, (a, b), _broadcast(a, b, e.op, e.span), e.span)
        if isinstance(e, ast.Index):
            return _index(e, self._type(e.base, env, calling))
        return self._call(e, env, calling)

    def _call(self, e: ast.Call, env, calling) -> Typed:
        d = self.defs.get(e.func)
        if d is not None:
            if e.kwargs:
                raise SemanticError(f"`def {e.func}` takes no keyword arguments", e.span)
            if len(e.args) != len(d.params):
                raise SemanticError(f"`{e.func}` takes {len(d.params)} arguments, got {len(e.args)}",
                                    e.span, f"def {e.func}({', '.join(d.params)})")
            args = [self._type(a, env, calling) for a in e.args]
            return self._type(d.expr, dict(zip(d.params, args)), (*calling, e.func))
        b = BUILTINS.get(e.func)
        if b is None:
            close = suggest(e.func, [*BUILTINS, *self.defs])
            raise SemanticError(f"unknown function `{e.func}`", e.func_span,
                                f"did you mean `{close}`?" if close else None)
        if len(e.args) != b.arity:
            raise SemanticError(f"`{e.func}` takes {b.arity} argument{'s' * (b.arity > 1)}, "
                                f"got {len(e.args)}", e.span)
        args = tuple(self._type(a, env, calling) for a in e.args)
        axis = self._axis(e, b, args[0])
        if b.shape == "same":
            return Typed(e.func, args, args[0].shape, e.span)
        if b.shape == "broadcast":
            return Typed(e.func, args, _broadcast(args[0], args[1], e.func, e.span), e.span)
        if b.shape == "select":
            names = b.params
            shape = _broadcast(args[0], args[1], e.func, e.span, names[:2])
            wider = names[1] if shape == args[1].shape else names[0]
            shape = _broadcast(Typed("all", (), shape, e.span), args[2], e.func, e.span,
                               (wider, names[2]))
            return Typed(e.func, args, shape, e.span)
        if b.shape == "transpose":
            if len(args[0].shape) > 2:
                raise SemanticError("transpose takes a vector or a matrix", e.span)
            return Typed(e.func, args, args[0].shape[::-1], e.span)
        shape = args[0].shape
        if b.shape == "softmax":
            if axis is None and len(shape) > 1:
                raise SemanticError(f"softmax of a {fmt_shape(shape)} value needs an axis", e.span,
                                    "for rows of class scores: `softmax(z, axis = 1)`")
            return Typed(e.func, args, shape, e.span, axis=-1 if axis is None else axis)
        out = () if axis is None else shape[:axis] + shape[axis + 1:]
        return Typed(e.func, args, out, e.span, axis=axis)

    def _axis(self, e: ast.Call, b, arg: Typed) -> int | None:
        """The `axis = k` keyword, normalised to 0..ndim-1; None when absent."""
        axis = None
        for key, value in e.kwargs:
            if key != "axis" or not b.axis:
                hint = "its only keyword is `axis`" if b.axis else "it takes no keywords"
                raise SemanticError(f"`{e.func}` has no argument `{key}`", value.span, hint)
            k = _integer(value)
            nd = len(arg.shape)
            if k is None or not -nd <= k < nd:
                raise SemanticError(f"axis must be a whole number in [{-nd}, {nd - 1}] for a "
                                    f"{fmt_shape(arg.shape)} value", value.span,
                                    "axis 0 runs over rows, axis 1 over columns")
            axis = k % nd
        return axis


def _check_bounds(st: ast.Param) -> None:
    """The bounds are an interval with something in it, and the start lies inside them."""
    b = st.bounds
    if b.lo > b.hi or (b.lo == b.hi and (b.lo_open or b.hi_open)):
        raise SemanticError(f"the bounds {b} of `{st.name}` are empty: the lower bound must be "
                            "below the upper one", b.span,
                            "write the lower bound first, e.g. `in [0, 10]`")
    init = st.init
    if init.dist == "const":
        if not b.holds(init.args[0]):
            raise SemanticError(f"the start {init.args[0]:g} of `{st.name}` is outside its bounds "
                                f"{b}", b.span, "start inside the bounds, or widen them")
        return
    lo, hi = _support(st)
    if lo is None and b.lo == -math.inf and b.hi == math.inf:
        return
    if lo is None or not (b.holds(lo) and hi <= b.hi):  # draws stay below hi
        what = "can fall" if lo is None else f"fall in [{lo:g}, {hi:g}), which reaches"
        raise SemanticError(f"the start of `{st.name}` is drawn from {init.dist}, whose values "
                            f"{what} outside its bounds {b}", b.span,
                            "draw it from uniform(lo, hi) inside the bounds, or start at "
                            "`= NUMBER`")


def _support(st: ast.Param) -> tuple[float | None, float | None]:
    """The smallest and largest start a distribution can draw (None: unbounded)."""
    init = st.init
    if init.dist == "uniform":
        return init.args[0], init.args[1]
    if init.dist == "normal" and init.args[1] == 0:
        return init.args[0], init.args[0]
    if init.dist == "glorot":
        dims = [int(d) for d in st.dims]
        fan_in = dims[0] if dims else 1
        fan_out = dims[1] if len(dims) > 1 else fan_in
        a = (6 / (fan_in + fan_out)) ** 0.5
        return -a, a
    return None, None


def _index(e: ast.Index, base: Typed) -> Typed:
    """`x[:, k]` or `x[:, a:b]`: only the last axis, of a fixed size, with static bounds."""
    shape = base.shape
    what = f"`{base.name}`" if base.op == "name" else "this value"
    if not shape:
        raise SemanticError(f"{what} is a scalar and cannot be indexed", e.span,
                            "index a vector `v[k]` or the columns of a matrix `X[:, k]`")
    written = "[" + ", ".join(":" for _ in shape[:-1]) + (", " if len(shape) > 1 else "") + "k]"
    if len(e.subscripts) != len(shape):
        raise SemanticError(f"{what} is {fmt_shape(shape)}: it takes {len(shape)} subscript"
                            f"{'s' * (len(shape) > 1)}, got {len(e.subscripts)}", e.span,
                            f"only the last axis is indexed or sliced: `{written}`")
    for sub in e.subscripts[:-1]:
        if not sub.is_slice or sub.start is not None or sub.stop is not None:
            raise SemanticError("only the last axis can be indexed or sliced", sub.span,
                                f"keep every other axis whole with `:`: `{written}`")
    n, sub = shape[-1], e.subscripts[-1]
    if not isinstance(n, int):
        raise SemanticError(f"the last axis of {what} has size `{n}`, known only when data "
                            "arrives", sub.span, "index or slice an axis of fixed size, such as "
                            "the 13 columns of `X[N, 13]`")
    if not sub.is_slice:
        if not -n <= sub.start < n:
            raise SemanticError(f"index {sub.start} is out of range for an axis of size {n}",
                                sub.span, f"indices run from 0 to {n - 1}, or from {-n} to -1 "
                                "counting from the end")
        k = sub.start % n
        return Typed("index", (base,), shape[:-1], e.span, part=(k, k + 1))
    start = 0 if sub.start is None else sub.start
    stop = n if sub.stop is None else sub.stop
    for bound in (start, stop):
        if not -n <= bound <= n:
            raise SemanticError(f"slice bound {bound} is out of range for an axis of size {n}",
                                sub.span, f"bounds run from 0 to {n}, or from {-n} counting "
                                "from the end")
    start, stop = (b + n if b < 0 else b for b in (start, stop))
    if start >= stop:
        raise SemanticError(f"the slice {_slice_text(sub)} of an axis of size {n} is empty",
                            sub.span, "a slice `a:b` takes elements a to b - 1, so b must be "
                            "after a")
    return Typed("slice", (base,), shape[:-1] + (stop - start,), e.span, part=(start, stop))


def _slice_text(sub: ast.Subscript) -> str:
    return ("" if sub.start is None else str(sub.start)) + ":" + (
        "" if sub.stop is None else str(sub.stop))


def _too_large(st: ast.Assign, terms: int, reads: int, calls_def: bool) -> SemanticError:
    """A statement whose derivation would take too long: terms × names read past the limit."""
    if terms > MAX_STATEMENT_WORK:
        size = f"more than {MAX_STATEMENT_WORK:,} terms"
    else:
        size = f"its {terms:,} terms × {reads} names it reads = {terms * reads:,}"
    hint = ("defs are expanded inline: one that uses its argument (or calls a def) twice doubles "
            "the terms at each level; compute the shared part as a node of its own, e.g. "
            "`a1 = ...` then `g(a1)`" if calls_def else
            "split it into several statements: each node is derived on its own, so their work "
            "adds up instead of multiplying")
    return SemanticError(f"`{st.name}` is too large to derive: {size}"
                         + (" once its defs are expanded" if calls_def else "")
                         + f", above the limit of {MAX_STATEMENT_WORK:,} for one statement",
                         st.span, hint)


def _tree_size(t: Typed) -> int:
    """Terms of a typed expression written out as a tree: shared parts (a def's argument used
    twice) count each time they are used. Iterative; stops counting past the limit. A tree that
    shares no part (nearly all) is counted in one walk over its parts."""
    seen: set[int] = set()
    stack = [t]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            return _shared_tree_size(t)
        seen.add(id(x))
        if len(seen) > MAX_STATEMENT_WORK:
            return MAX_STATEMENT_WORK + 1
        stack.extend(x.args)
    return len(seen)


def _shared_tree_size(t: Typed) -> int:
    """`_tree_size` of a tree with shared parts: each part's size worked out once."""
    sizes: dict[int, int] = {}
    stack = [(t, False)]
    while stack:
        x, ready = stack.pop()
        if ready:
            sizes[id(x)] = min(MAX_STATEMENT_WORK + 1, 1 + sum(sizes[id(a)] for a in x.args))
        elif id(x) not in sizes:
            stack.append((x, True))
            stack.extend((a, False) for a in x.args if id(a) not in sizes)
    return sizes[id(t)]


def _check_target(m: Checked, st: ast.Target) -> None:
    """A target is data the prediction is scored against: computed from inputs and constants
    only, and of the prediction's shape (they are compared row by row)."""
    if m.predict is None:
        raise SemanticError("`target` needs a `predict` statement", st.span,
                            "the report scores the prediction against the target")
    params = [n for n in m.order if n in m.params and n in ancestors([m.target], m.reads)]
    if params:
        raise SemanticError(f"the target `{m.target}` depends on param `{params[0]}`", st.name_span,
                            "a target is computed from the data only: a column, or a node of "
                            "inputs and constants")
    if m.shapes[m.target] != m.shapes[m.predict]:
        raise SemanticError(f"the target `{m.target}` is {fmt_shape(m.shapes[m.target])} but the "
                            f"prediction `{m.predict}` is {fmt_shape(m.shapes[m.predict])}",
                            st.name_span, "they are compared row by row: give them the same shape")


def _keyword(st) -> str:
    return {ast.Minimize: "minimize", ast.Predict: "predict", ast.Target: "target",
            ast.Data: "data", ast.Train: "train"}[type(st)]


def _integer(e: ast.Expr) -> int | None:
    if isinstance(e, ast.Unary) and isinstance(e.operand, ast.Num):
        v = -e.operand.value
    elif isinstance(e, ast.Num):
        v = e.value
    else:
        return None
    return int(v) if float(v).is_integer() else None


def _names_in(t: Typed) -> set[str]:
    out, stack = set(), [t]
    while stack:
        x = stack.pop()
        if x.op == "name":
            out.add(x.name)
        stack.extend(x.args)
    return out


# How a mismatch names the arguments of where and clip.
def _broadcast(a: Typed, b: Typed, op: str, span: Span, labels=None) -> Shape:
    """The shape of an elementwise op by the language's rule, or a mismatch that says what
    numpy would have done. `labels` name the two sides in a mismatch (default: a name, or
    left and right side)."""
    sa, sb = a.shape, b.shape
    shape = elementwise_shape(sa, sb)
    if shape is not None:
        return shape
    left = f"{a.name} is" if a.op == "name" else "the left side is"  # LANGUAGE.md 3.4 wording
    right = f"{b.name} is" if b.op == "name" else "the right side is"
    if labels:
        left, right = f"{labels[0]} is", f"{labels[1]} is"
    message = f"shape mismatch in `{op}`: {left} {fmt_shape(sa)} but {right} {fmt_shape(sb)}"
    try:
        hint = f"numpy would broadcast these to {fmt_shape(broadcast(sa, sb))}"
    except ValueError:
        hint = ("elementwise operands need equal shapes, a scalar, or one shape the trailing "
                "part of the other (a bias [10] against [N, 10])")
    else:
        fix = _column_fix(a, b) or _column_fix(b, a)
        if fix:
            hint += "; " + fix
    raise SemanticError(message, span, hint)


def _column_fix(col: Typed, flat: Typed) -> str | None:
    """The usual cause: `[N, 1]` against an input declared `[N]`."""
    if len(col.shape) == 2 and col.shape[1] == 1 and flat.shape == col.shape[:1] and flat.op == "name":
        return f"declare {flat.name} as {fmt_shape(col.shape)}"
    if len(col.shape) == 2 and col.shape[1] == 1 and flat.shape == col.shape[:1]:
        return f"make both {fmt_shape(col.shape)} or both {fmt_shape(flat.shape)}"
    return None


def _matmul_shape(a: Typed, b: Typed, span: Span) -> Shape:
    sa, sb = a.shape, b.shape
    if not sa or not sb or len(sa) > 2 or len(sb) > 2:
        raise SemanticError(f"`@` needs vectors or matrices, got {fmt_shape(sa)} @ {fmt_shape(sb)}",
                            span, "use `*` to scale by a scalar")
    if sa[-1] != sb[0]:
        raise SemanticError(f"`@` inner dims differ: {fmt_shape(sa)} @ {fmt_shape(sb)}", span,
                            f"the left's last dim ({sa[-1]}) must equal the right's first ({sb[0]})")
    return sa[:-1] + sb[1:]
