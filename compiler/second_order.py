"""Exact Jacobians and Hessians in the generated module, by forward mode.

Every param element is one direction: a node's tangent `dv_h` is its value's derivative with
respect to every flattened param at once, an array of the node's shape with one more axis of
`N_PARAMS` at the end (the columns of the Jacobian, in the order of `PARAMS`, each param
flattened in C order). Trailing that axis keeps numpy's broadcasting of the model's own shapes
intact. Elementwise tangents are sympy's local derivatives (the same `elementwise_factor` as the
gradient) times the inputs' tangents; structural nodes have the stated maps of their rules
(`compiler.structural`: `einsum` for `@`).

- `jacobian`: the residual of a least-squares objective (`compiler.leastsq`) pushed forward.
- `hessian`: forward over reverse. The backward pass of the gradient is written as usual, and
  each adjoint `g_h` gets a tangent `dg_h` beside it: the derivative of every contribution
  `G·f(values)` is `dG·f + G·Σ ∂f/∂s·ds` (second derivatives from sympy; a step function's
  derivative, a Dirac delta, is 0 almost everywhere as in PyTorch), and of every structural map
  its stated product rule. The tangent of the gradient is the Hessian, one row per param element.

Memory is the model's values times N_PARAMS; the Jacobian is generated only up to
`JACOBIAN_MAX_PARAMS` flattened params, the Hessian up to `HESSIAN_MAX_PARAMS`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import sympy as sp

from compiler.codegen import (LR_SEED, SGD_STEP_DOC, ModuleWriter, Stmt, _Body, _loses_count,
                              _paren, _paren_expr, _reduce_to, _token, print_expr,
                              render)
from compiler.deps import ancestors
from compiler.derive import backward_plan, elementwise_factor
from compiler.ir import Graph, Node, symbol
from compiler.shape import Shape, broadcast
from compiler.leastsq import LeastSquares, least_squares
from compiler.memo import shape_of, template
from compiler.names import Adjoint, grad_name, size_name, value_name
from compiler.names import tangent_name as tangent
from compiler.structural import AdjointTangent, Tangent, rule

HESSIAN_MAX_PARAMS = 1000
# The Jacobian's tangents hold every value N_PARAMS times (a node of 100 rows x 10 columns is 80 MB
# per tangent at 10,000 param elements), and nothing in dsl fits or gives error bars past
# dsl.training.train.MAX_SOLVER_PARAMS (1000): past this a module has residuals but no jacobian.
JACOBIAN_MAX_PARAMS = 10_000
# Local derivatives are differentiated again only up to these sizes (sympy tree nodes), each and
# all together: a second derivative grows with the square of a deep nest (110 nested sigmoids
# took minutes), so a model past them has no `hessian` and says why in HESSIAN_SKIPPED. NIST's
# formulas have local derivatives of 30 to 100 nodes.
MAX_FACTOR_SIZE = 200
MAX_FACTORS_SIZE = 2000


class _TooLarge(Exception):
    """A local derivative past MAX_FACTOR_SIZE: the Hessian is left out."""


def _too_large(node: Node, size: int) -> str:
    """HESSIAN_SKIPPED when the local derivative of `node` being charged, of `size`, is the
    one past a limit."""
    if size > MAX_FACTOR_SIZE:
        return f"`{node.stmt or node.name}` has a local derivative too large to differentiate again"
    return ("its local derivatives are too large together to differentiate again (more than "
            f"{MAX_FACTORS_SIZE:,} terms)")


P = "N_PARAMS"  # the module constant: how many param elements, the tangents' last axis
SEEDS = "eye"  # the identity of N_PARAMS, whose rows are the params' tangents


def param_sizes(g: Graph) -> dict[str, int]:
    return {p: math.prod(int(d) for d in g.nodes[p].shape) for p in g.params}


def _col(code: str, shape: Shape) -> str:
    """A value against a tangent: an array gets the params' axis, a scalar broadcasts as it is."""
    return f"{_paren_expr(code)}[..., None]" if shape else code


def _no_delta(e: sp.Expr) -> sp.Expr:
    """The derivative of a step (relu', a tie of max/min, sign) is 0 almost everywhere."""
    return e.replace(sp.DiracDelta, lambda *a: sp.S.Zero) if e.has(sp.DiracDelta) else e


@dataclass(frozen=True)
class _Coef:
    """A tangent's coefficient as printed: `code` (of minus the coefficient when `minus`)
    reads `symbols`; `one`: the code is `1`; `add`: a sum, parenthesized where it stands alone."""

    code: str
    symbols: tuple[sp.Symbol, ...]
    minus: bool = False
    one: bool = False
    add: bool = False


def _coef(coef: sp.Expr) -> _Coef | None:
    """A coefficient printed, or None where it is 0."""
    coef = _no_delta(coef)
    if coef == 0:
        return None
    minus = coef.could_extract_minus_sign()
    c = -coef if minus else coef
    return _Coef(print_expr(c), tuple(c.free_symbols), minus, c == 1, c.is_Add)


# (what, shape) -> the _Coef with `{k}` for the k-th symbol of the shape, and those slots
_COEFS: dict[tuple, tuple[_Coef, tuple[int, ...]] | None] = {}


def _coef_once(what: str, shaped: tuple[tuple, list[sp.Symbol]], make) -> _Coef | None:
    """`_coef(make())`, worked out once per shape (`compiler.memo`) of whatever determines it
    (`what` names the question): a chain's neurons and an MLP's layers ask it again under
    other names."""
    key, symbols = shaped
    key = (what, key)
    if key not in _COEFS:
        c = _coef(make())
        slots = {x: k for k, x in enumerate(symbols)}
        _COEFS[key] = None if c is None else (
            _Coef(template(c.code, {_token(x): k for x, k in slots.items()}), (), c.minus, c.one,
                  c.add), tuple(slots[x] for x in c.symbols))
    known = _COEFS[key]
    if known is None:
        return None
    c, uses = known
    return _Coef(c.code.format(*map(_token, symbols)), tuple(symbols[k] for k in uses), c.minus,
                 c.one, c.add)


# ("tangent", shape of (expr, node, inputs)) -> whether each ∂node/∂input is negative, is 1,
# and is a sum (without its sign)
_SIGNS: dict[tuple, list[tuple[bool, bool, bool]]] = {}


# shape of (G, expr, node, input) -> the size of the local derivative, and the slots of the
# symbols it reads, in the order of their names
_SECOND: dict[tuple, tuple[int, tuple[int, ...]]] = {}


# shape of (expr, node, input) -> the size of the local derivative, and whether it is 1
_CHARGES: dict[tuple, tuple[int, bool]] = {}


class SecondOrderWriter(ModuleWriter):
    """ModuleWriter with forward tangents, and tangents of the backward pass for `hessian`."""

    def __init__(self, graph: Graph):
        super().__init__(graph)
        self.sizes = param_sizes(graph)
        self.n_params = sum(self.sizes.values())
        self.varies = self.needs_gradient_of(graph.params) | set(graph.params)  # have tangents
        self.tadj: dict[str, Shape] | None = None  # adjoint tangents' static shapes (hessian)

    # ---- forward tangents ------------------------------------------------------------------

    def seed_stmts(self) -> list[Stmt]:
        """Each param's tangent: its rows of the identity, built once."""
        lines, at = [Stmt(SEEDS, f"np.eye({P}, dtype=dt)", ("dt",))], 0
        for p in self.g.params:
            n, shape = self.sizes[p], tuple(self.g.nodes[p].shape)
            lines.append(Stmt(tangent(value_name(p)), (
                f"{SEEDS}[{at}]" if shape == () else
                f"{SEEDS}[{at}:{at + n}].reshape({', '.join(map(str, shape))}, {P})"), (SEEDS,),
                (SEEDS,)))
            at += n
        return lines

    def forward_tangent(self, body: _Body, node: Node) -> None:
        """dv_h from the tangents of h's inputs; always of h's full shape."""
        name = tangent(value_name(node.name))
        ins = [i for i in dict.fromkeys(node.inputs) if i in self.varies]
        if not ins:
            return
        if node.op == "elementwise":
            shapes = self._value_shapes(node)
            coefs = (self._shared_coefs(body, node, ins, shapes) if len(ins) > 1
                     else [self._factor_coef(node, ins[0])])
            terms = [(c, tangent(value_name(i)), self.g.nodes[i].shape) for c, i in zip(coefs, ins)]
            code, shape, reads = self._terms(body, terms, shapes)
            if shape != tuple(node.shape):
                code = self._full(body, code, node.shape)
            body.emit(name, code, node, reads=reads)
            return
        a = [value_name(i) for i in node.inputs]
        da = [tangent(x) if i in self.varies else None for x, i in zip(a, node.inputs)]
        code = rule(node.op).tangent(Tangent(self.g, node, a, da, value_name(node.name),
                                             self._count(body)))
        if code is None:  # a constant (the softmax of a scalar is 1)
            body.emit(name, f"np.zeros({P}, dtype=dt)", node)
            return
        reads = [*a, *filter(None, da)]
        body.emit(name, code, node, reads=[*reads, value_name(node.name)]
                  if rule(node.op).tangent_reads_value else reads)

    def _shared_coefs(self, body: _Body, node: Node, ins: list[str],
                      shapes: dict[sp.Symbol, Shape]) -> list[_Coef | None]:
        """∂node/∂input for each of several inputs, their common subexpressions computed once
        (`exp(-b2*x)` in both of `b1*(1 - exp(-b2*x))`'s): the temporaries are emitted here,
        and their static shapes added to `shapes`."""
        shaped = shape_of((node.expr,), (symbol(node.name), *map(symbol, ins)))
        key = ("tangent", shaped[0])
        if key not in _SIGNS:
            factors = [_no_delta(elementwise_factor(node, i)) for i in ins]
            minus = [f.could_extract_minus_sign() for f in factors]
            _SIGNS[key] = [(m, f == 1, (-f if m else f).is_Add) for f, m in zip(factors, minus)]
        signs = _SIGNS[key]

        def positive():  # cse and print each coefficient without its sign, as _coef does
            factors = [_no_delta(elementwise_factor(node, i)) for i in ins]
            return [-f if minus else f for f, (minus, _, _) in zip(factors, signs)]
        replacements, reduced = body.cse(positive, shaped)
        for t, e in replacements:
            body.emit(t.name, e.code, node, reads=e.reads)
            shapes[t] = broadcast(*(shapes[x] for x in e.symbols))
        # a sum stays a sum after cse unless cse made all of it one temporary
        return [None if p.code == "0" else _Coef(p.code, p.symbols, minus, one, add and not p.bare)
                for p, (minus, one, add) in zip(reduced, signs)]

    @staticmethod
    def _factor_coef(node: Node, wrt: str) -> _Coef | None:
        """∂node/∂wrt as a coefficient (the shape of (expr, node, wrt) determines it)."""
        return _coef_once("factor", shape_of((node.expr,), (symbol(node.name), symbol(wrt))),
                          lambda: elementwise_factor(node, wrt))

    @staticmethod
    def _count(body: _Body):
        """How many elements over some dims, as code a division can take."""
        return lambda dims: _paren(body.count_code(dims))

    def _value_shapes(self, node: Node) -> dict[sp.Symbol, Shape]:
        shapes = {symbol(i): self.g.nodes[i].shape for i in node.inputs}
        shapes[symbol(node.name)] = node.shape
        return shapes

    def _terms(self, body: _Body, terms, shapes: dict[sp.Symbol, Shape]
               ) -> tuple[str, Shape, set[str]]:
        """Σ coefficient·tangent as code, its static shape (without the params' axis) and the
        variables it reads. `terms`: (the coefficient over values, None for 0; the tangent's
        variable, the tangent's static shape)."""
        out, shape, reads = "", (), set()
        for c, code, tshape in terms:
            if c is None:
                continue
            cshape = broadcast(*(shapes[s] for s in c.symbols))
            pc = f"({c.code})" if c.add and not cshape else c.code
            term = code if c.one else f"{_col(pc, cshape)}*{code}"
            minus = c.minus
            out += (" - " if minus else " + ") + term if out else ("-" if minus else "") + term
            shape = broadcast(shape, cshape, tshape)
            reads |= {_token(s) for s in c.symbols} | {code}
        return out or "0.0", shape, reads

    def _full(self, body: _Body, code: str, shape: Shape) -> str:
        return f"np.broadcast_to({code}, {_tangent_shape(body, shape)})"

    # ---- tangents of the backward pass (hessian) -------------------------------------------

    def _accumulate(self, body, node, target, code, shape, adjoint, reads, views=(), same=None,
                    local=None, G=None, gshape=()) -> None:
        if self.tadj is None or local is None:  # no tangents wanted
            return super()._accumulate(body, node, target, code, shape, adjoint, reads, views, same)
        before = self._tangent_of(target) if target in adjoint else None
        super()._accumulate(body, node, target, code, shape, adjoint, reads, views, same)
        if self._tangent_of(target) != target:
            return  # the adjoint is another unchanged: so is its tangent
        got = (self._elementwise_tangent(body, node, local, G, gshape) if node.op == "elementwise"
               else self._structural_tangent(body, node, local, G, gshape))
        if got is None:
            return
        tcode, tshape, reads = got
        if node.op == "elementwise" and _loses_count(tshape, node.shape, self.g.nodes[target].shape):
            tcode, tshape = self._full(body, tcode, node.shape), tuple(node.shape)
        tcode, tshape = _reduce_to(tcode, tshape, self.g.nodes[target].shape)
        name = tangent(grad_name(target))
        if before in self.tadj:
            have = tangent(grad_name(before))
            body.emit(name, f"{have} + {tcode}", node, "∂ ", reads=(*reads, have))
            self.tadj[target] = broadcast(self.tadj[before], tshape)
        else:
            body.emit(name, tcode, node, "∂ ", reads=reads)
            self.tadj[target] = tshape

    def _tangent_of(self, node: str) -> str:
        """The node whose adjoint's tangent is `node`'s: the node itself, or the one whose
        adjoint `node`'s is unchanged (then they have one tangent)."""
        same = self.same.get(node)
        return same.name if isinstance(same, Adjoint) else node

    def _adjoint_tangent(self, node: Node, G) -> tuple[str, Shape] | None:
        """The tangent of the adjoint G reaching `node`, if it has one (the seed has none)."""
        key = self._tangent_of(node.name)
        if not G.is_Number and G != LR_SEED and key in self.tadj:
            return tangent(grad_name(key)), self.tadj[key]
        return None

    def _elementwise_tangent(self, body, node, local, G, gshape):
        """d(G·f) = dG·f + G·Σ ∂f/∂s·ds over the values s that f reads. sympy's part is worked
        out once per shape of (G, the node's expression, the node, the input)."""
        shaped = shape_of((G, node.expr), (symbol(node.name), symbol(local.input)))
        key, symbols = shaped
        known = _SECOND.get(key)
        if known is None:
            factor = local.factor
            known = _SECOND[key] = (_size(factor, MAX_FACTOR_SIZE), tuple(
                symbols.index(s) for s in sorted(factor.free_symbols, key=lambda s: s.name)))
        size, reads = known
        self.budget -= size
        if size > MAX_FACTOR_SIZE or self.budget < 0:
            raise _TooLarge(_too_large(node, size))
        shapes = self._value_shapes(node)
        if isinstance(G, Adjoint):
            shapes[G] = gshape
        terms = []
        dG = self._adjoint_tangent(node, G)
        if dG is not None:
            terms.append((self._factor_coef(node, local.input), dG[0], dG[1]))
        for k in reads:
            s = symbols[k]
            if s.name in self.varies:
                terms.append((_coef_once(f"G·∂factor/∂{k}", shaped,
                                         lambda: G * sp.diff(local.factor, s)),
                              tangent(value_name(s.name)), self.g.nodes[s.name].shape))
        code, shape, reads = self._terms(body, terms, shapes)
        return None if code == "0.0" else (code, shape, reads)

    def _structural_tangent(self, body, node, local, G, gshape):
        a = [value_name(i) for i in node.inputs]
        G_code = print_expr(G)
        dG = self._adjoint_tangent(node, G)

        def full_dg():
            code, shape = dG
            return code if shape == tuple(node.shape) else self._full(body, code, node.shape)

        t = AdjointTangent(
            self.g, node, a, [tangent(x) if i in self.varies else None
                              for x, i in zip(a, node.inputs)],
            value_name(node.name), self._count(body), index=local.index,
            dy=tangent(value_name(node.name)) if node.name in self.varies else None, G=G_code,
            full_g=G_code if gshape == tuple(node.shape) else body.broadcast(G_code, gshape,
                                                                              node.shape),
            dG=dG, full_dg=full_dg, g_reads={_token(s) for s in G.free_symbols})
        got = rule(node.op).adjoint_tangent(t)
        if got is None:
            return None
        # what the map's product rule reads: dG, and per op the values and tangents around
        reads = {dG[0]} if dG is not None else set()
        return (*got, reads | rule(node.op).adjoint_tangent_reads(t))

    # ---- the functions ---------------------------------------------------------------------

    def second_order(self) -> tuple[list[str], list[str]]:
        """The constants the solvers read, and residuals, jacobian and hessian."""
        g = self.g
        ls = least_squares(g)
        meta = [f"N_PARAMS = {self.n_params}",
                f"BOUNDS = {self.bounds_code()}",
                f"LEAST_SQUARES = {ls.kind if ls else None!r}",
                f"LEAST_SQUARES_FACTOR = {ls.factor if ls else 1.0!r}",
                f"SIGMA_WEIGHTED = {bool(ls and ls.weighted)!r}",
                f"JACOBIAN_MAX_PARAMS = {JACOBIAN_MAX_PARAMS}",
                f"HESSIAN_MAX_PARAMS = {HESSIAN_MAX_PARAMS}"]
        funcs = []
        if ls is not None and g.params:
            funcs += self.residual_functions(ls)
        skipped = None
        if g.objective and g.params and self.n_params <= HESSIAN_MAX_PARAMS:
            skipped = self.surely_too_large()  # most often decided here, before the work
            if skipped is None:
                try:
                    funcs.append(self.hessian_function())
                except _TooLarge as e:
                    skipped = str(e)
        elif g.objective and g.params:
            skipped = (f"{self.n_params:,} param elements: the Hessian is generated for at most "
                       f"{HESSIAN_MAX_PARAMS:,}")
        meta.append(f"HESSIAN_SKIPPED = {skipped!r}")
        return meta, funcs

    def docstring(self) -> str:
        return '''"""The compiled model: forward pass, objective, gradients, training step, and for
the solvers (dsl's docs/LANGUAGE.md, section 12):

N_PARAMS              how many param elements: each param flattened in C order, in the order of
                      PARAMS; the columns of `jacobian` and the rows and columns of `hessian`
BOUNDS                {param: (lo, hi)}, floats, -inf and inf where unbounded (every element)
LEAST_SQUARES         "sum" or "mean" when the objective is a sum or mean of squares, else None:
                      objective == LEAST_SQUARES_FACTOR * sum (or mean) of residuals(...)**2
LEAST_SQUARES_FACTOR  the positive number in front (1.0 unless the model writes one)
SIGMA_WEIGHTED        True when the residuals are divided by data-only values (given sigmas: a
                      chi-square, whose covariance is (JᵀJ)⁻¹, curve_fit's absolute_sigma=True)
JACOBIAN_MAX_PARAMS   the most param elements for which `jacobian` is generated
HESSIAN_MAX_PARAMS    the most param elements for which `hessian` is generated
HESSIAN_SKIPPED       None when the module has `hessian`, else why it has not
''' + (f"\n{SGD_STEP_DOC}\n" if self.g.objective else "") + '"""'

    def bounds(self) -> dict[str, tuple[float, float]]:
        return {p: self.g.bounds.get(p, (-math.inf, math.inf)) for p in self.g.params}

    def bounds_code(self) -> str:
        """BOUNDS as code: the unbounded params at once, `dict.fromkeys(PARAMS, (-np.inf,
        np.inf))`, and the bounded ones after it (a dict display of a pair per param cost
        3.5 ms of Python's compile at 500 params); every param in the order of PARAMS."""
        bounds = self.bounds()
        listed = {p: b for p, b in bounds.items() if b != (-math.inf, math.inf)}
        code = "{" + ", ".join(f'"{p}": ({_float(lo)}, {_float(hi)})'
                               for p, (lo, hi) in listed.items()) + "}"
        if len(listed) == len(bounds):
            return code
        unbounded = "dict.fromkeys(PARAMS, (-np.inf, np.inf))"
        return f"{unbounded} | {code}" if listed else unbounded

    def _head(self, body: _Body, with_seed: bool) -> tuple[dict[str, str], list[Stmt]]:
        """The params and inputs unpacked, by local (`render` leaves out those nothing reads),
        and the first statements: `dt`, the sizes and the seeds, each param's tangent."""
        g = self.g
        unpacked = {value_name(n): f'params["{n}"]' for n in g.params}
        unpacked.update((value_name(n), f'inputs["{n}"]') for n in g.inputs)
        head = []
        if with_seed or body.uses_dtype:
            source = value_name((g.params or g.inputs)[0])
            head.append(Stmt("dt", f"{source}.dtype", (source,)))
        for d, (owner, axis) in g.size_names().items():
            if d in body.sizes:
                owner = value_name(owner)
                head.append(Stmt(size_name(d), f"{owner}.shape[{axis}]", (owner,)))
        return unpacked, head + (self.seed_stmts() if with_seed else [])

    def _forward(self, body: _Body, roots, predicted: bool = False) -> None:
        """The forward lines `roots` need (and, with `self.varies`, their tangents);
        `predicted`: the prediction is `predict`'s, called, not computed again."""
        g = self.g
        live = ancestors(roots, self.reads_calling_predict(predicted))
        for n, node in g.nodes.items():
            if predicted and n == g.predict:
                body.emit(value_name(n), "predict(params, inputs)", node)
            elif n in live and not node.is_leaf:
                self.forward_code(body, node)
                if n in self.varies:
                    self.forward_tangent(body, node)

    def _function(self, name: str, head: tuple[dict[str, str], list[Stmt]], stmts: list[Stmt],
                  keep: set[str], returns: str, doc: str) -> str:
        """The function that returns `returns`, which reads the variables `keep`; `head` as
        `_head` gives it."""
        unpacked, first = head
        fixed = {"dt", *(size_name(d) for d in self.g.size_names())}  # read by shapes, dtypes
        lines = render(first + stmts, keep | fixed, unpacked.keys() | fixed, returns, unpacked)
        text = f"def {name}(params, inputs):\n    \"\"\"{doc}\"\"\"\n"
        return text + "".join(f"    {ln}\n" for ln in lines)

    def residual_functions(self, ls: LeastSquares) -> list[str]:
        g = self.g
        roots = [s.name for s in ls.residual.free_symbols]
        out = []
        for with_tangent in (False, True)[:1 + (self.n_params <= JACOBIAN_MAX_PARAMS)]:
            body = _Body(g, "_t")
            saved, self.varies = self.varies, (self.varies if with_tangent else set())
            self._forward(body, roots, not with_tangent and self.follows_prediction(roots))
            self.varies = saved
            shape = tuple(ls.shape)
            shapes = {s: g.nodes[s.name].shape for s in ls.residual.free_symbols}
            have = broadcast(*shapes.values())
            res = print_expr(ls.residual)
            if have != shape:
                res = body.broadcast(res, have, shape)
            stmts = list(body.stmts)
            if not (ls.residual.is_Symbol and have == shape):  # a node itself is returned as is
                stmts.append(Stmt("res", res, tuple(_token(s) for s in shapes)))
                res = "res"
            if not with_tangent:
                out.append(self._function(
                    "residuals", self._head(body, False), stmts, {res},
                    f"{res}.reshape(-1)" if shape else f"np.reshape({res}, -1)",  # an array
                    f"The residuals r, flattened: `{g.objective}` == LEAST_SQUARES_FACTOR · "
                    f"{ls.kind}(r²)."))
                continue
            terms = [(_coef(sp.diff(ls.residual, s)), tangent(value_name(s.name)), shapes[s])
                     for s in sorted(ls.residual.free_symbols, key=lambda s: s.name)
                     if s.name in self.varies]
            code, tshape, reads = self._terms(body, terms, shapes)
            if code == "0.0":
                code = f"np.zeros({_tangent_shape(body, shape)}, dtype=dt)"
            elif tshape != shape:
                code = self._full(body, code, shape)
            d_res = code if reads == {code} else "d_res"  # one tangent, as it is
            if d_res == "d_res":
                stmts.append(Stmt("d_res", code, tuple(reads)))
            out.append(self._function(
                "jacobian", self._head(body, True), stmts, {d_res},
                f"{d_res}.reshape(-1, {P})",  # a tangent is always an array
                "∂r/∂params: one row per residual, one column per param element (PARAMS "
                "order, each flattened in C order)."))
        return out

    def surely_too_large(self) -> str | None:
        """HESSIAN_SKIPPED where the local derivatives' sizes alone decide it, before any of the
        Hessian's backward pass is written (on a long chain that pass cost more than 10% of
        the compile only to be dropped); None where it may fit, and that pass decides. The
        sizes are charged as `_elementwise_tangent` charges them, in the same order, but a
        factor 1 that carries an adjoint unchanged to its input (`a + b`) charges nothing,
        which the shapes decide: such a factor is counted both ways, and only what both
        counts say is said."""
        g = self.g
        low = high = 0  # the budget spent, at least and at most
        reached = {g.objective}  # nodes with an adjoint: the seed, and every input pushed to
        for node, locals_ in backward_plan(g, g.params, self.needs_gradient_of(g.params)):
            if node.name not in reached:
                continue
            for local in locals_:
                first = local.input not in reached
                reached.add(local.input)
                if node.op != "elementwise":
                    continue
                size, one = self._charge(node, local.input)
                low += 0 if one and first and node.name != g.objective else size
                high += size
                if size > MAX_FACTOR_SIZE:  # the pass stops here, unless it may have before
                    return _too_large(node, size) if high - size <= MAX_FACTORS_SIZE else None
                if low > MAX_FACTORS_SIZE:  # here or before, at a size within MAX_FACTOR_SIZE
                    return _too_large(node, size)
        return None

    @staticmethod
    def _charge(node: Node, wrt: str) -> tuple[int, bool]:
        """The size of ∂node/∂wrt as `_elementwise_tangent` charges it, and whether it is 1."""
        key, _ = shape_of((node.expr,), (symbol(node.name), symbol(wrt)))
        known = _CHARGES.get(key)
        if known is None:
            factor = elementwise_factor(node, wrt)
            known = _CHARGES[key] = _size(factor, MAX_FACTOR_SIZE), factor == 1
        return known

    def hessian_function(self) -> str:
        g = self.g
        back = _Body(g, "_d")
        self.tadj = {}
        self.budget = MAX_FACTORS_SIZE
        try:
            self.backward(back, g.params, False)
            tadj = self.tadj
        finally:
            self.tadj = None
        fwd = _Body(g, "_t")
        self._forward(fwd, [g.objective])
        rows = []
        tail = []
        keep = set()
        for p in g.params:
            n, shape = self.sizes[p], tuple(g.nodes[p].shape)
            have = self._tangent_of(p)
            if have not in tadj:
                rows.append(f"np.zeros(({n}, {P}), dtype=dt)")
                continue
            code = tangent(grad_name(have))
            if tadj[have] != shape:
                full = tangent(grad_name(p))
                tail.append(Stmt(full, self._full(fwd, code, shape), (code,)))
                code = full
            rows.append(f"np.reshape({code}, ({n}, {P}))")
            keep.add(code)
        fwd.sizes |= back.sizes
        returns = f"np.concatenate([{', '.join(rows)}])" if len(rows) > 1 else rows[0]
        return self._function("hessian", self._head(fwd, True), fwd.stmts + back.stmts + tail,
                              keep, returns,
                              f"∂²{g.objective}/∂params²: N_PARAMS x N_PARAMS, rows and columns "
                              "in the order of the jacobian's columns.")


def _tangent_shape(body: _Body, shape: Shape) -> str:
    """A shape with the params' axis at the end, as code: `(n_N, 3, N_PARAMS)`."""
    return "(" + ", ".join([body.dim_code(d) for d in shape] + [P]) + ")"


def _float(x: float) -> str:
    return "np.inf" if x == math.inf else "-np.inf" if x == -math.inf else repr(float(x))


def _size(e: sp.Expr, limit: int) -> int:
    """The expression tree's node count, counted up to just past `limit`."""
    n = 0
    for n, _ in enumerate(sp.preorder_traversal(e), start=1):
        if n > limit:
            break
    return n
