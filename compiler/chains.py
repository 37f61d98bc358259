"""Derivation chains: the chain rule at the level of the user's statements, as data.

`derive` answers "what is ∂objective/∂wrt, and how is it put together?" the way one derives it
on paper: one product of local derivatives per path from the objective down to `wrt`, each factor the
derivative of one user statement with respect to one of the names it reads. The IR nodes inside a
statement (`L1.1 = X @ W1`, then `L1 = L1.1 + b1`) are composed into that statement's factor, so
`L1 = X @ W1 + b1` gives `∂L1/∂W1 : G ↦ Xᵀ·G` and `∂L1/∂b1 : G ↦ Σ_rows G`.

Every factor is a map `G ↦ ...` from the statement's adjoint `G` (the symbol `ADJOINT`) to the
contribution it sends to the input: a sympy expression over `G`, the statements' own symbols and a
few unevaluated array operations (`MatProd`, `Tr`, `Total`, `RowSum`, ...) that the renderers print
as maths. Where the map is plain multiplication (elementwise maths, or a scalar statement) the
factor also carries that multiplier as `expr`, which is how it is shown: `∂s/∂L1 = s·(1 - s)`.

Past `MAX_PATHS` paths the product list is left out and only the adjoint recurrence per node is
kept. For models of scalars (a row of data may be a vector `[N]`), `expanded` substitutes every
factor and every node into one simplified expression; `mean` stays an unevaluated function of the
per-row expression, so `loss = mean((k*x + b - y)^2)` gives `mean(2·x·(b + k·x - y))`.

Nothing here prints: `dsl.views.explain` renders the data as text, LaTeX, JSON or notebook maths.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from compiler.deps import ancestors
from compiler.derive import elementwise_factor, needs_gradient
from compiler.errors import QueryError, suggest
from compiler.ir import Graph, Node, symbol
from compiler.ops import BY_IR
from compiler.names import is_user_node
from compiler.shape import Shape, fmt_shape, summed_axes
from compiler.structural import (LogSumExpOf, MatProd, MeanOf, Ones, Repeat, RowSum, SumAlong,
                                 SumOf, Total, Tr, _ArrayOp, count, rule, size_symbol)

MAX_PATHS = 8  # more paths than this: the adjoint recurrence per node instead of a list
# `--expand` writes each node's value in full wherever it is used, so a chain of statements
# that each use the previous one twice doubles at every link (30 `sin·cos` links: a billion
# terms). Past these, it is refused before any substitution, and the chain form is suggested.
MAX_EXPANDED_TERMS = 5_000

# The adjoint a statement's factor is applied to. A Dummy, so no user name can collide with it.
ADJOINT = sp.Dummy("G", real=True)


_SCALAR_RESULT = (Total,)  # always a scalar; MeanOf/SumOf/LogSumExpOf are when they have no axis


# ---- the data --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Factor:
    """∂node/∂input for one user statement: `map` sends the statement's adjoint (`ADJOINT`) to
    the input's share; `expr` is the plain multiplier when the map is multiplication by it."""

    node: str
    input: str
    map: sp.Expr
    expr: sp.Expr | None = None

    @property
    def is_map(self) -> bool:
        return self.expr is None


@dataclass(frozen=True)
class Adjoint:
    """One line of the recurrence: d objective/d node = Σ over `terms` of
    (d objective/d consumer) · (the consumer's factor)."""

    node: str
    terms: tuple[Factor, ...]


@dataclass
class Derivation:
    objective: str
    wrt: str
    paths: list[tuple[Factor, ...]]  # objective first; empty when summarised or zero
    n_paths: int  # 0: the objective does not depend on wrt
    factors: list[Factor]  # every factor used, in the order they are first met
    adjoints: list[Adjoint]  # from the objective down to wrt
    expanded: sp.Expr | None = None
    expand_error: str | None = None
    shapes: dict[str, Shape] = field(default_factory=dict)

    @property
    def summarised(self) -> bool:
        return self.n_paths > MAX_PATHS


# ---- statements: the IR nodes of each, their values and their factors ------------------------

class Chains:
    """The statement-level view of a graph; factors are computed once and shared by every
    derivation asked of it."""

    def __init__(self, g: Graph):
        self.g = g
        self.index = {n: k for k, n in enumerate(g.nodes)}
        self.members: dict[str, list[str]] = {}  # statement -> its op nodes, topological
        for n, node in g.nodes.items():
            if not node.is_leaf:
                self.members.setdefault(node.stmt or n, []).append(n)
        # Statements in topological order of their output node.
        self.statements = sorted(self.members, key=lambda s: self.index[s])
        self.reads: dict[str, list[str]] = {}
        for s, nodes in self.members.items():
            inside = set(nodes)
            outer = {i for n in nodes for i in g.nodes[n].inputs if i not in inside}
            self.reads[s] = sorted(outer, key=self.index.__getitem__)
        self.sizes = {size_symbol(d) for d in g.size_names()}
        self.scalars = {symbol(n) for n, node in g.nodes.items() if node.shape == ()} | self.sizes
        self._maps: dict[str, dict[str, sp.Expr]] = {}
        self._values: dict[str, sp.Expr] = {}
        self._factors: dict[tuple[str, str], Factor] = {}

    # values

    def value(self, stmt: str) -> sp.Expr:
        """The statement's right-hand side over the names it reads (array ops unevaluated)."""
        if stmt not in self._values:
            self._statement(stmt)
        return self._values[stmt]

    def _inner_values(self, stmt: str) -> dict[sp.Symbol, sp.Expr]:
        vals: dict[sp.Symbol, sp.Expr] = {}
        for n in self.members[stmt]:
            v = node_value(self.g, self.g.nodes[n]).xreplace(vals)
            if n == stmt:
                self._values[stmt] = v
            else:
                vals[symbol(n)] = v
        return vals

    # factors

    def factor(self, stmt: str, inp: str) -> Factor:
        key = (stmt, inp)
        if key not in self._factors:
            m = self._statement(stmt)[inp]
            self._factors[key] = Factor(stmt, inp, m, _plain(m, self.g.nodes[stmt].shape,
                                                             self.g.nodes[inp].shape))
        return self._factors[key]

    def _statement(self, stmt: str) -> dict[str, sp.Expr]:
        """Reverse accumulation inside one statement: the map to each name it reads."""
        if stmt in self._maps:
            return self._maps[stmt]
        g = self.g
        vals = self._inner_values(stmt)
        inside = set(self.members[stmt])
        scalars = self.scalars | ({ADJOINT} if g.nodes[stmt].shape == () else set())
        adj: dict[str, sp.Expr] = {stmt: ADJOINT}
        out: dict[str, sp.Expr] = {}
        for n in reversed(self.members[stmt]):
            G = adj.pop(n, None)
            if G is None:
                continue
            node = g.nodes[n]
            if node.op != "elementwise" and rule(node.op).shaped_g and node.shape and \
                    _is_scalar(G, scalars):
                G = G * ones(node.shape)  # a scalar broadcast by a sum or mean, entering `@`
            for k, i in enumerate(node.inputs):
                if node.op == "elementwise":
                    if i in node.inputs[:k]:
                        continue
                    f = elementwise_factor(node, i).xreplace(vals)
                    c = reduce_to(f * G, node.shape, g.nodes[i].shape, scalars)
                else:
                    operands = [symbol(j).xreplace(vals) for j in node.inputs]
                    own = symbol(n).xreplace(vals)
                    c = rule(node.op).maths_map(g, node, k, G, operands, own)
                target = adj if i in inside else out
                target[i] = target.get(i, sp.S.Zero) + c
        maps = {i: sp.factor_terms(tidy(sp.factor_terms(m), scalars)) for i, m in out.items()}
        self._maps[stmt] = maps
        return maps

    # derivations

    def resolve(self, wrt: str) -> str:
        g = self.g
        if g.objective is None:
            scalars = [f"`{n}`" for n, node in g.nodes.items()
                       if node.kind == "op" and is_user_node(n) and node.shape == ()]
            raise QueryError("the model has no `minimize` statement, so there is nothing to derive",
                             hint="add `minimize NAME` naming a scalar node"
                             + (": " + ", ".join(scalars[:8]) if scalars else ", e.g. `loss = "
                                "mean((yhat - y)^2)` and `minimize loss`"))
        if wrt not in g.nodes or not is_user_node(wrt):
            names = [n for n in g.nodes if is_user_node(n)]
            close = suggest(wrt, g.params) or suggest(wrt, names)
            params = "params: " + (", ".join(g.params) or "none")
            raise QueryError(f"`{wrt}` is not a name in {g.file}",
                             hint=f"did you mean `{close}`? ({params})" if close else params)
        if g.nodes[wrt].kind == "const":
            raise QueryError(f"`{wrt}` is a constant: there is no derivative with respect to it",
                             hint="derive with respect to a param, an input or a node")
        return wrt

    def derive(self, wrt: str, expand: bool = False) -> Derivation:
        """∂objective/∂wrt as paths of factors (or adjoints past MAX_PATHS), and, when asked
        and the model is one of scalars, the whole derivative as one expression."""
        g = self.g
        wrt = self.resolve(wrt)
        obj = g.objective
        needed = needs_gradient(g, [wrt]) | ({wrt} if wrt == obj else set())
        on_path = [s for s in self.statements if s in needed]

        def reads(s: str) -> list[str]:
            return [i for i in self.reads[s] if i in needed]

        counts: dict[str, int] = {obj: 1} if obj in needed else {}
        for s in reversed(on_path):
            for i in reads(s):
                counts[i] = counts.get(i, 0) + counts.get(s, 0)
        n_paths = counts.get(wrt, 0)

        paths: list[tuple[Factor, ...]] = []
        if 0 < n_paths <= MAX_PATHS:
            stack: list[tuple[str, tuple[Factor, ...]]] = [(obj, ())]
            while stack:
                n, path = stack.pop()
                if n == wrt:
                    paths.append(path)
                    continue
                for i in reversed(reads(n)):
                    stack.append((i, path + (self.factor(n, i),)))

        users: dict[str, list[str]] = {}
        for s in on_path:
            for i in reads(s):
                users.setdefault(i, []).append(s)
        adjoints = [Adjoint(z, tuple(self.factor(s, z) for s in users[z]))
                    for z in sorted(users, key=self.index.__getitem__, reverse=True)]

        seen: dict[Factor, None] = {}
        sources = [f for p in paths for f in p] if paths else [f for a in adjoints for f in a.terms]
        for f in sources:
            seen.setdefault(f, None)
        d = Derivation(obj, wrt, paths, n_paths, list(seen), adjoints,
                       shapes={n: node.shape for n, node in g.nodes.items() if is_user_node(n)})
        if expand:
            d.expand_error = self.not_scalar()
            if d.expand_error is None:
                self._check_expanded_size(wrt, on_path, reads)
                d.expanded = self._expand(wrt, needed, on_path, reads)
        return d

    def expanded(self, expr: sp.Expr, what: str) -> sp.Expr:
        """`expr` with every statement's value substituted (over params, inputs, constants);
        past MAX_EXPANDED_TERMS written terms, a QueryError naming `what`."""
        self.require_scalars(what)
        full: dict[sp.Symbol, int] = {}
        for s in self.statements:
            full[symbol(s)] = _written_size(self.value(s), full)
        if _written_size(expr, full) > MAX_EXPANDED_TERMS:
            raise QueryError(f"{what} is too large to write out: more than "
                             f"{MAX_EXPANDED_TERMS:,} terms once every node's value is "
                             "substituted", hint="the generated module computes it all the same "
                             "(`dsl compile`)")
        for s in reversed(self.statements):
            expr = expr.xreplace({symbol(s): self.value(s)})
        return expr

    def require_scalars(self, what: str) -> None:
        why = self.not_scalar()
        if why is not None:
            raise QueryError(f"cannot write {what} as expressions: {why}",
                             hint="this is for models of scalars (a value per data row, [N], is "
                                  "fine); the generated module computes it for any model")

    def _check_expanded_size(self, wrt, on_path, reads) -> None:
        """Refuse an expansion past MAX_EXPANDED_TERMS, counted from the sizes of the pieces
        it would be made of (nothing large is built to find out)."""
        full: dict[sp.Symbol, int] = {}  # a statement's value, written out
        for s in self.statements:
            full[symbol(s)] = _written_size(self.value(s), full)
        adj: dict[str, int] = {self.g.objective: 1}
        for s in reversed(on_path):
            if s in adj:
                for i in reads(s):
                    part = _written_size(self.factor(s, i).map, {**full, ADJOINT: adj[s]})
                    adj[i] = min(adj.get(i, 0) + part + 1, MAX_EXPANDED_TERMS + 1)
        if adj.get(wrt, 1) > MAX_EXPANDED_TERMS:
            big = next((s for s in on_path if full[symbol(s)] > MAX_EXPANDED_TERMS),
                       self.g.objective)
            raise QueryError(
                f"the expanded form of ∂{self.g.objective}/∂{wrt} is too large to write: more "
                f"than {MAX_EXPANDED_TERMS:,} terms (each node's value is written out wherever "
                "it is used)",
                self.g.nodes[big].span,
                "drop --expand: the chain form shows the same derivative factor by factor, "
                "each statement once")

    def not_scalar(self) -> str | None:
        """Why `--expand` cannot write this model's derivatives as one expression, or None."""
        g = self.g
        rows: set[str] = set()
        for n in sorted(ancestors([g.objective], g.reads), key=self.index.__getitem__):
            node = g.nodes[n]
            shape = node.shape
            ok = shape == () or (isinstance(shape[0], str) and all(d == 1 for d in shape[1:]))
            if not ok:
                return f"`{node.stmt or n}` is {fmt_shape(shape)}"
            if shape:
                rows.add(shape[0])
            if node.op in BY_IR and not rule(node.op).row_wise(node):
                return f"`{node.stmt}` uses `{BY_IR[node.op].name}`"
        if len(rows) > 1:
            return f"the model mixes the sizes {', '.join(sorted(rows))}"
        return None

    def _expand(self, wrt, needed, on_path, reads) -> sp.Expr:
        adj: dict[str, sp.Expr] = {self.g.objective: sp.S.One}
        for s in reversed(on_path):
            a = adj.get(s)
            if a is None:
                continue
            for i in reads(s):
                part = tidy(self.factor(s, i).map.xreplace({ADJOINT: a}), self.scalars)
                adj[i] = adj.get(i, sp.S.Zero) + part
        result = adj.get(wrt, sp.S.Zero)
        for s in reversed(self.statements):
            result = result.xreplace({symbol(s): self.value(s)})
        return sp.factor_terms(tidy(result, self.scalars))


def _written_size(e: sp.Expr, weights: dict[sp.Basic, int]) -> int:
    """Terms of `e` written out as a tree, a symbol in `weights` standing for an expression of
    that many terms; capped past MAX_EXPANDED_TERMS, so the counts stay small."""
    done: dict[sp.Basic, int] = {}
    stack = [(e, False)]
    while stack:
        x, ready = stack.pop()
        if x in done:
            continue
        if x in weights:
            done[x] = weights[x]
        elif not x.args:
            done[x] = 1
        elif ready:
            done[x] = min(1 + sum(done[a] for a in x.args), MAX_EXPANDED_TERMS + 1)
        else:
            stack.append((x, True))
            stack.extend((a, False) for a in x.args)
    return done[e]


def total_diff(e: sp.Expr, wrt: sp.Symbol) -> sp.Expr:
    """d e/d wrt where `e` may hold reductions (`mean(f)`, `sum(f)`): they are linear, so the
    derivative goes inside them (sympy alone would leave an unevaluated Derivative)."""
    aggs = [a for a in e.atoms(MeanOf, SumOf) if wrt in a.free_symbols]
    if not aggs:
        return sp.diff(e, wrt)
    stand_ins = [sp.Dummy() for _ in aggs]
    flat = e.xreplace(dict(zip(aggs, stand_ins)))
    out = sp.diff(flat, wrt)
    for a, d in zip(aggs, stand_ins):
        inner = total_diff(a.args[0], wrt)
        if inner != 0:
            out += sp.diff(flat, d) * a.func(inner, *a.args[1:])
    return out.xreplace(dict(zip(stand_ins, aggs)))


def derive(g: Graph, wrt: str, expand: bool = False) -> Derivation:
    return Chains(g).derive(wrt, expand)


def edge_factor(g: Graph, name: str, inp: str) -> Factor:
    """∂node/∂input for one edge of the IR itself (inner nodes such as `L1.1` kept as names);
    an input used twice by `@` (`u @ u`) gets both shares."""
    node = g.nodes[name]
    scalars = {symbol(n) for n, nd in g.nodes.items() if nd.shape == ()}
    scalars |= {size_symbol(d) for d in g.size_names()}
    scalars |= {ADJOINT} if node.shape == () else set()
    if node.op == "elementwise":
        m = reduce_to(elementwise_factor(node, inp) * ADJOINT, node.shape, g.nodes[inp].shape,
                      scalars)
    else:
        m = sp.Add(*[rule(node.op).maths_map(g, node, k, ADJOINT,
                                             [symbol(j) for j in node.inputs], symbol(name))
                     for k, i in enumerate(node.inputs) if i == inp])
    m = sp.factor_terms(tidy(m, scalars))
    return Factor(name, inp, m, _plain(m, node.shape, g.nodes[inp].shape))


# ---- the pieces: values, structural adjoints, reductions -------------------------------------

def node_value(g: Graph, node: Node) -> sp.Expr:
    """One IR node's value over its inputs' symbols (a structural op's as its rule writes it)."""
    if node.op == "elementwise":
        return node.expr
    return rule(node.op).value(g, node, [symbol(i) for i in node.inputs])


def ones(shape: Shape) -> sp.Expr:
    return Ones(*(size_symbol(d) if isinstance(d, str) else sp.Integer(d) for d in shape))


def reduce_to(c: sp.Expr, have: Shape, want: Shape, scalars: set = frozenset()) -> sp.Expr:
    """Sum a contribution of shape `have` back over the axes broadcasting added to `want`."""
    have, want = tuple(have), tuple(want)
    if have == want or have == ():
        return c
    if _is_scalar(c, scalars):
        c = c * ones(have)
    if want == ():
        return Total(c, count(have))
    lead, kept = summed_axes(have, want)
    out = c
    for ax in reversed(kept):
        out = SumAlong(out, sp.Integer(len(lead) + ax))
    if len(lead) == 1 and isinstance(have[0], str):
        return RowSum(out, size_symbol(have[0]))
    for ax in reversed(lead):
        out = SumAlong(out, sp.Integer(ax))
    return out


def _plain(m: sp.Expr, out_shape: Shape, in_shape: Shape) -> sp.Expr | None:
    """The multiplier when the map is `G ↦ f·G` with f elementwise (or G a scalar), else None."""
    if tuple(out_shape) not in ((), tuple(in_shape)):
        return None
    if m == ADJOINT:
        return sp.S.One
    if m.is_Mul and ADJOINT in m.args:
        # The other factors, as they are (rebuilding the product would distribute 2·(a - b)).
        # A 𝟙 goes: the gradient of a scalar has the input's shape, so a constant broadcasts.
        others = [f for f in m.args if f != ADJOINT and not isinstance(f, Ones)]
        rest = sp.Mul._from_args(others) if len(others) > 1 else (others or [sp.S.One])[0]
        if ADJOINT not in rest.free_symbols:
            return rest
    return None


def _is_scalar(e: sp.Expr, scalars: set) -> bool:
    """Does `e` hold one value for the whole array (so it can leave a sum)?"""
    if e.is_Number:
        return True
    if isinstance(e, (sp.Symbol, sp.Dummy)):
        return e in scalars
    if isinstance(e, _SCALAR_RESULT) or (isinstance(e, (MeanOf, SumOf, LogSumExpOf))
                                         and len(e.args) == 1):
        return True
    if isinstance(e, _ArrayOp):
        return False
    return all(_is_scalar(a, scalars) for a in e.args)


def tidy(e: sp.Expr, scalars: set) -> sp.Expr:
    """Pull scalars out of sums of gradients, and write Σ(f·G/N) over N rows as mean(f)·G."""
    if e.is_Atom:
        return e
    args = tuple(tidy(a, scalars) for a in e.args)
    if args != e.args:
        e = e.func(*args)
    if isinstance(e, (Total, RowSum, SumAlong)):
        return _pull_out(e, scalars)
    if isinstance(e, Repeat) and _is_scalar(e.args[0], scalars):
        return e.args[0]  # a scalar needs no repeating: it broadcasts
    if isinstance(e, Tr):
        parts = sp.Mul.make_args(e.args[0])
        outside = sp.Mul(*[f for f in parts if _is_scalar(f, scalars)])
        if outside != 1:
            return outside * Tr(sp.Mul(*[f for f in parts if not _is_scalar(f, scalars)]))
    if isinstance(e, MatProd):
        outside, args = sp.S.One, []
        for a in e.args:
            parts = sp.Mul.make_args(a)
            outside *= sp.Mul(*[f for f in parts if _is_scalar(f, scalars)])
            args.append(sp.Mul(*[f for f in parts if not _is_scalar(f, scalars)]))
        if outside != 1:
            return outside * MatProd(*args)
    return e


def _pull_out(e: sp.Expr, scalars: set) -> sp.Expr:
    inner = sp.factor_terms(e.args[0]) if e.args[0].is_Add else e.args[0]
    if inner.is_Add:
        return e
    coef, inside, spread = sp.S.One, sp.S.One, sp.S.One
    for f in sp.Mul.make_args(inner):
        if _is_scalar(f, scalars):
            coef *= f
        elif isinstance(f, Ones):  # a sum of c·𝟙·f is a sum of c·f
            spread = f
        else:
            inside *= f
    n = e.args[1]  # the count summed over (an axis, for SumAlong)
    if inside == 1:
        if not isinstance(e, SumAlong):
            return coef * n
        inside = spread
    if isinstance(e, Total):
        sizes = {s for s in scalars if s in n.free_symbols}
        # Σ over n elements of f·c/n is c·mean(f): the form of the tutorial's hand derivation.
        if sizes and (coef.free_symbols & sizes) and not ((coef * n).free_symbols & sizes):
            number, rest = (coef * n).as_coeff_Mul()
            sign = -1 if number < 0 else 1  # a minus sign reads better outside
            return sign * rest * MeanOf(sp.factor_terms(sign * number * inside))
    number, rest = coef.as_coeff_Mul()
    sign = -1 if number < 0 else 1
    if rest == 1 and sign == 1:
        return e
    return sign * rest * e.func(sp.factor_terms(sign * number * inside), *e.args[1:])
