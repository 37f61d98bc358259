"""The graph compiled to one standalone numpy module.

One assignment per node in topological order, named after the node through `compiler.names`
(`v_h`, and `g_h` for its adjoint; a statement's inner nodes `t1_loss`, `gt1_loss`). A function
is built as a list of statements (`Stmt`: target, code, the variables it reads, those it may
share memory with) and printed at the end (`render`): one `# line N: statement` comment above
the lines of each `.model` statement, each intermediate released (`del`) after its last use,
so that a function holds no more arrays at once than the hand-written numpy would, and a param
or input that one statement reads once read in place there (`params["b1"]`), not unpacked.
Elementwise maths is printed by `NumpyCode` (sympy's NumPyPrinter with the templates of
`compiler.ops` and the pinned subgradients) after `cse`; structural ops are printed by their rules
in `compiler.structural`. Adjoints are pushed from each node to its inputs in reverse topological
order, like micrograd's `+=`, and stay as cheap as the hand-written code: a mean's adjoint is a
scalar broadcast lazily (also through a sum along an axis), an adjoint equal to another one is
that one (no `gt1_h = g_h` line), and a node's forward value is reused by its derivative
(sigmoid' is `s*(1 - s)`, relu' is `h > 0`).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import islice
from string import Formatter
from typing import NamedTuple

import sympy as sp
from sympy.core.traversal import iterargs
from sympy.printing.numpy import NumPyPrinter

from compiler.derive import backward_plan, needs_gradient
from compiler.deps import ancestors
from compiler import ops, structural
from compiler.functions import ComparisonBase, OpPrinter, print_condition
from compiler.ir import Graph, Node, symbol
from compiler.stable import stabilize_graph
from compiler.names import (BACKWARD_TEMPS, FORWARD_TEMPS, Adjoint, Temp, adjoint_symbol,
                            grad_name, is_user_node, size_name, spelled_as_temp, temp_index,
                            temp_symbols, value_name)
from compiler.memo import shape_of, template as memo_template
from compiler.shape import Shape, broadcast, summed_axes


# In the docstring of every module that has sgd_step (issue 12: a float param stayed frozen).
SGD_STEP_DOC = """sgd_step updates each param array in place and writes each param back into `params`,
so a param given as a Python float is updated too."""

# One function is the backward pass of `loss_and_grad`, `grad` and `sgd_step`, seeded with `lr`
# instead of 1: every adjoint is linear in the seed, so the training step's gradients come out
# already scaled and each update is a single subtraction, one numpy call a param fewer than
# `W -= lr * g`; numbers and `lr` are multiplied first (`2*lr*(v_L2 - v_y)`), so the seed costs
# no array operation (`loss_and_grad` passes 1.0: on the examples its results are bit for bit
# those of a pass seeded with 1). Written once, the forward and backward lines are generated and
# compiled once: two copies of them were half of a module.
LR_SEED = sp.Symbol("lr", positive=True)

LOSS_AND_GRAD_DOC = ("The objective and its gradient for every param (and input if "
                     "`with_inputs`, which needs `with_loss`), times `lr`; the gradient alone "
                     "unless `with_loss`.")

# The public functions over it, one line each.
LOSS_AND_GRAD = '''def loss_and_grad(params, inputs):
    """The objective and its gradient for every param."""
    return _loss_and_grad(params, inputs, 1.0, True, False)
'''

GRAD = '''def grad(params, inputs, lr=1.0):
    """The objective's gradient for every param, times `lr` (sgd_step's learning rate)."""
    return _loss_and_grad(params, inputs, lr, False, False)
'''

# For `dsl eval`: every value from `forward` (the pass releases them as it goes), the gradients
# from the pass, with the inputs' too.
GRADIENTS = '''def gradients(params, inputs):
    """Every value, and the gradient for every param and input."""
    return forward(params, inputs), _loss_and_grad(params, inputs, 1.0, True, True)[1]
'''

# The training step calls the pass itself, one call fewer than through `grad`: `-=` updates an
# array param in place and rebinds a Python float, and either way the result is written back.
SGD_STEP = '''def sgd_step(params, inputs, lr):
    """One step of gradient descent, in place: each param less lr times its gradient."""
    for name, step in _loss_and_grad(params, inputs, lr, False, False).items():
        params[name] -= step
'''


class PositiveTermsFirst:
    """A printer mixin: sums with their positive terms first, `a - b` rather than `-b + a`
    (in generated code one subtraction, not a negation and a sum; in maths, as one writes it).
    With `written` set (a symbol's place in its statement), the terms come in the user's order:
    `h @ W2 + b2`, not `b2 + h @ W2`."""

    written: dict[sp.Symbol, int] | None = None

    def _print_Add(self, expr, order=None):
        terms = expr.as_ordered_terms()
        if self.written:
            last = len(self.written)
            terms.sort(key=lambda t: min((self.written.get(s, last) for s in t.free_symbols),
                                         default=last))
        terms.sort(key=lambda t: t.could_extract_minus_sign())
        prec = sp.printing.precedence.precedence(expr)
        out = self.parenthesize(terms[0], prec)
        for t in terms[1:]:
            if t.could_extract_minus_sign():
                out += " - " + self.parenthesize(-t, prec + 1 if (-t).is_Add else prec)
            else:
                out += " + " + self.parenthesize(t, prec)
        return out


class NumpyCode(OpPrinter, PositiveTermsFirst, NumPyPrinter):
    """NumPyPrinter with our names, `np.`, and our functions as `compiler.ops` writes them."""

    style = "numpy"

    def __init__(self):
        super().__init__({"fully_qualified_modules": False, "inline": True})
        # a step factor (relu') of a product with an array of the params' dtype may be printed
        # as a comparison, `g_h*(v_h > 0)`: numpy multiplies by a boolean array as by 0 and 1
        self.steps = False

    def _module_format(self, fqn, register=True):
        return "np." + fqn.split(".")[-1] if fqn.startswith("numpy.") else fqn

    def _print_Symbol(self, expr):
        return "lr" if expr == LR_SEED else value_name(expr.name)

    def _print_Adjoint(self, expr):
        return grad_name(expr.name)

    def _print_Temp(self, expr):
        return expr.name

    def _print_Mul(self, expr):
        """Compound factors before plain names: numpy computes a compound factor into a new
        array and multiplies the others into it in place (its temporary elision), where
        `g*h*(1 - h)` would hold `g*h` and `1 - h` at once, one array more. Numbers and the
        learning rate first, multiplied as scalars: `2*lr*(yhat - y)`. Steps (`steps`)
        last, as comparisons, where nothing can negate the boolean array."""
        args = expr.as_ordered_factors()
        if self.steps:
            steps = [a for a in args if isinstance(a, sp.Heaviside) and a.args[1:] == (0,)]
            rest = [a for a in args if a not in steps]
            if steps and any(not a.is_Number for a in rest):
                code = self.parenthesize(sp.Mul(*rest), sp.printing.precedence.PRECEDENCE["Mul"])
                return "*".join([code, *(f"({self._print(s.args[0])} > 0)" for s in steps)])
        ordered = sorted(args, key=lambda a: 0 if a.is_Number or a == LR_SEED else
                         2 if a.is_Symbol else 1)
        if ordered == args:
            return super()._print_Mul(expr)
        order, self._settings["order"] = self._settings["order"], "none"
        try:
            return super()._print_Mul(sp.Mul(*ordered, evaluate=False))
        finally:
            self._settings["order"] = order

    def _print_Heaviside(self, expr):
        """A float step, not a comparison: a boolean array cannot be negated or subtracted
        (`-(x > 0)` raises), and the derivative of `relu(a - b)` by `b` is exactly that."""
        x, h0 = self._print(expr.args[0]), expr.args[1] if len(expr.args) > 1 else sp.S.Half
        if h0 == 0:  # relu': two fast ufuncs, where np.heaviside is four times slower
            return f"np.maximum(np.sign({x}), 0.0)"
        if h0 == sp.S.Half:  # a tie of max or min: half to each side
            return f"(0.5 + 0.5*np.sign({x}))"
        return f"np.heaviside({x}, {float(h0)!r})"

    def _print_ComparisonBase(self, expr):
        """As the params' dtype: a boolean array cannot be negated or subtracted."""
        return f"({print_condition(self, expr)}).astype(dt)"

    def _print_sign(self, expr):
        return f"np.sign({self._print(expr.args[0])})"

    def _print_Pow(self, expr, rational=False):
        base, e = expr.args
        b = self.parenthesize(base, sp.printing.precedence.PRECEDENCE["Pow"])
        if e == -1:
            return f"1/{b}"
        if e == sp.S.Half:
            return f"np.sqrt({self._print(base)})"
        if e == -sp.S.Half:
            return f"1/np.sqrt({self._print(base)})"
        if e.is_Integer:
            return f"{b}**{int(e)}" if e > 0 else f"1/{b}**{-int(e)}"
        return f"{b}**{self.parenthesize(e, sp.printing.precedence.PRECEDENCE['Pow'])}"

    def _print_Rational(self, expr):
        return f"{expr.p}/{expr.q}"

    def _print_Float(self, expr):
        return repr(float(expr))


class Stmt(NamedTuple):
    """One assignment of a generated function, kept as data until the function is printed: what
    it reads decides where each value is released (`del` after its last use), what it may share
    memory with decides which gradients must be copied, and its origin gives the comment. Plain
    tuples of strings, which the garbage collector stops tracking: a module has thousands."""

    target: str
    code: str
    reads: tuple[str, ...] = ()  # the variables `code` reads
    views: tuple[str, ...] = ()  # those whose memory the target may share (numpy views)
    origin: tuple[int, str] | None = None  # the `.model` line and statement it comes from
    note: str = ""  # "∂ " on the backward pass
    op: str = "="  # `-=`: an in-place update of the target
    guard: str = ""  # an argument: the statement runs only when it is true (`if with_loss:`)


@dataclass
class _Body:
    """The statements of one generated function, and what they use."""

    graph: Graph
    prefix: str  # of cse temporaries: FORWARD_TEMPS or BACKWARD_TEMPS
    stmts: list[Stmt] = field(default_factory=list)
    sizes: set[str] = field(default_factory=set)
    temps: int = 0
    uses_dtype: bool = False  # reads `dt`, the dtype of the params

    def emit(self, target: str, code: str, node: Node | None = None, note: str = "",
             reads=(), views=()) -> None:
        origin = (node.span.line, node.source) if node is not None and node.source else None
        self.stmts.append(Stmt(target, code, tuple(reads), tuple(views), origin, note))

    def broadcast(self, code: str, have: Shape, shape: Shape) -> str:
        """`code`, of static shape `have`, as an array of `shape`. A scalar may be a Python
        number: it is made an array of the params' dtype, so float32 stays float32."""
        if have == ():
            self.uses_dtype = True
            return f"np.full({self.shape_code(shape)}, {code}, dtype=dt)"
        return f"np.broadcast_to({code}, {self.shape_code(shape)})"

    def shape_code(self, shape: Shape) -> str:
        parts = [self.dim_code(d) for d in shape]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"

    def dim_code(self, d) -> str:
        if isinstance(d, str):
            self.sizes.add(d)
            return size_name(d)
        return str(d)

    def count_code(self, dims) -> str:
        """The number of elements over `dims`, as code: `n_N*13`."""
        ints = 1
        names = []
        for d in dims:
            if isinstance(d, str):
                names.append(self.dim_code(d))
            else:
                ints *= d
        parts = names + ([str(ints)] if ints != 1 or not names else [])
        return "*".join(parts)

    def cse(self, exprs, shaped: tuple[tuple, list[sp.Symbol]], steps: bool = False,
            written: dict[sp.Symbol, int] | None = None
            ) -> tuple[list[tuple[Temp, Printed]], list[Printed]]:
        """cse of `exprs()` with this function's next temporaries, printed; `shaped` is the
        `compiler.memo.shape_of` of whatever determines the expressions; `steps`: a step
        factor may be printed as a comparison (`NumpyCode.steps`); `written`, sums printed in
        the user's order (`PositiveTermsFirst.written`)."""
        replacements, reduced = _cse(self.prefix, self.temps, exprs, shaped, steps, written)
        if replacements:  # cse skips a number that a symbol in the expressions spells
            self.temps = temp_index(replacements[-1][0], self.prefix) + 1
        return replacements, reduced


class Printed(NamedTuple):
    """An expression as code, and the symbols it reads."""

    code: str
    symbols: tuple[sp.Symbol, ...]
    reads: tuple[str, ...]  # the variables the code reads (`lr`, values, adjoints, temporaries)
    values: tuple[str, ...]  # the nodes whose forward values it reads
    bare: bool = False  # the expression is one of its symbols


# (prefix, shape of the expressions) -> the printed cse, with `{k}` for the k-th symbol of the
# shape (then the temporaries) and, per expression, the slots of the symbols it reads and of
# the values among them; and the order of the temporaries' names it was printed with.
_PRINTED: dict[tuple, tuple] = {}
_READS_DT = re.compile(r"\bdt\b")
_COMPARES: dict[tuple, bool] = {}  # shape of an expression -> does it hold a comparison


def _cse(prefix: str, start: int, exprs, shaped: tuple[tuple, list[sp.Symbol]], steps=False,
         written: dict[sp.Symbol, int] | None = None):
    """sympy's cse and the printer, run once per shape (`compiler.memo`): the same neuron or
    layer again, under other names, is the same code with those names. `written`: each
    symbol's place in its statement, to print sums in the user's order."""
    key, symbols = shaped
    key = (prefix, key, steps, tuple(map(written.get, symbols)) if written else None)
    known = _PRINTED.get(key)
    if known is not None:
        count, order, template = known
        temps = list(islice(temp_symbols(prefix, start), count)) if count else []
        if order == _name_order(temps):  # `_d9` sorts after `_d10`: printed in another order
            refs = (*symbols, *temps)
            tokens = [*map(_token, refs)]
            ref, token, name = refs.__getitem__, tokens.__getitem__, [x.name for x in refs].__getitem__
            printed = [Printed(code.format(*tokens), tuple(map(ref, uses)), tuple(map(token, uses)),
                               tuple(map(name, values)), bare)
                       for code, uses, values, bare in template]
            return list(zip(temps, printed)), printed[count:]
    replacements, reduced = sp.cse(exprs(), symbols=temp_symbols(prefix, start))
    _PRINTER.steps, _PRINTER.written = steps, written
    try:
        out = ([(t, _printed(e)) for t, e in replacements], [_printed(e) for e in reduced])
    finally:
        _PRINTER.steps, _PRINTER.written = False, None
    temps = [t for t, _ in replacements]
    if not any(spelled_as_temp(s, prefix) for s in symbols):  # else cse skipped a number
        slots = {x: k for k, x in enumerate((*symbols, *temps))}
        tokens = {_token(x): k for x, k in slots.items()}
        template = tuple(
            (memo_template(p.code, tokens), tuple(slots[x] for x in p.symbols),
             tuple(slots[x] for x in p.symbols if _is_value(x)), p.bare)
            for p in (*(p for _, p in out[0]), *out[1]))
        _PRINTED[key] = len(temps), _name_order(temps), template
    return out


def _printed(e: sp.Expr) -> Printed:
    symbols = tuple(e.free_symbols)
    return Printed(print_expr(e), symbols, tuple(map(_token, symbols)),
                   tuple(s.name for s in symbols if _is_value(s)), e.is_Symbol)


def _name_order(temps: list[Temp]) -> tuple[int, ...]:
    if len(temps) < 2:  # most pushes make one temporary, or none
        return tuple(range(len(temps)))
    return tuple(sorted(range(len(temps)), key=lambda k: temps[k].name))


def _token(x: sp.Symbol) -> str:
    """A symbol as the printer writes it."""
    token = _TOKENS.get(x)
    if token is None:  # one of ours straight to its method: no need of the printer's dispatch
        method = _SPELLINGS.get(type(x))
        token = _TOKENS[x] = method(_PRINTER, x) if method else _PRINTER._print(x)
    return token


_TOKENS: dict[sp.Symbol, str] = {}


_PRINTER = NumpyCode()
_SPELLINGS = {sp.Symbol: NumpyCode._print_Symbol, Adjoint: NumpyCode._print_Adjoint,
              Temp: NumpyCode._print_Temp}


def print_expr(expr: sp.Expr) -> str:
    """`expr` as numpy code: the printer's `_print`, all that its `doprint` comes to for one
    expression printed inline that numpy computes (anything else raises, as the printer is
    strict). `doprint` imported sympy.codegen on a compile's first print (8 ms) and walked the
    expression for an unevaluated `re`, which the IR never holds."""
    return _PRINTER._print(expr)


class ModuleWriter:
    """Writes the module: forward, predict, loss, and one forward and backward pass
    (`_loss_and_grad`) that loss_and_grad, grad, gradients and sgd_step call."""

    def __init__(self, graph: Graph):
        self.g = graph
        self.helpers: set[str] = set()
        self._backward: dict[tuple[str, ...], tuple[_Body, set[str], dict[str, Shape]]] = {}
        # node -> its forward statements, with the sizes they name and whether they read `dt`
        self._forward_stmts: dict[str, tuple[list[Stmt], set[str], bool]] = {}
        # (prefix, node, G, inputs, steps) -> its cse by the number of its first temporary, the
        # inputs' shapes, and its `compiler.memo.shape_of`
        self._pushed: dict[tuple, tuple] = {}
        # what each node reads, the table `ancestors` follows (a writer's graph does not change)
        self.reads = {n: node.inputs for n, node in graph.nodes.items()}
        self._before_prediction: set[str] | None = None  # what `predict` computes
        self._needs: dict[tuple[str, ...], set[str]] = {}  # leaves -> their needs_gradient

    def needs_gradient_of(self, wrt) -> set[str]:
        """`compiler.derive.needs_gradient` of the graph, once per list of leaves: the passes
        and the Hessian's budget ask it again, a walk over the whole graph each time."""
        key = tuple(wrt)
        needed = self._needs.get(key)
        if needed is None:
            needed = self._needs[key] = needs_gradient(self.g, key)
        return needed

    def reads_calling_predict(self, predicted: bool) -> dict[str, tuple[str, ...]]:
        """`reads`, where with `predicted` the prediction reads nothing: `predict` is called."""
        return {**self.reads, self.g.predict: ()} if predicted else self.reads

    # ---- forward ---------------------------------------------------------------------------

    def forward_code(self, body: _Body, node: Node) -> None:
        """A node's forward statements into `body`. Every function repeats them: they are
        worked out once per node (unless cse made temporaries, which are numbered per
        function)."""
        known = self._forward_stmts.get(node.name)
        if known is None:
            own = _Body(self.g, body.prefix, temps=body.temps)
            self._forward_statements(own, node)
            known = own.stmts, own.sizes, own.uses_dtype
            if own.temps == body.temps:
                self._forward_stmts[node.name] = known
            body.temps = own.temps
        stmts, sizes, dtype = known
        body.stmts += stmts
        body.sizes |= sizes
        body.uses_dtype |= dtype

    def _forward_statements(self, body: _Body, node: Node) -> None:
        name = value_name(node.name)
        if node.op == "elementwise":
            shaped = shape_of((node.expr,))
            compares = _COMPARES.get(shaped[0])  # sympy's `has` is slow: once per shape
            if compares is None:
                compares = _COMPARES[shaped[0]] = node.expr.has(ComparisonBase)
            body.uses_dtype |= compares  # a comparison is cast to `dt`
            written = {symbol(n): k for k, n in enumerate(node.written)}
            replacements, (printed,) = body.cse(lambda: [node.expr], shaped, written=written)
            for sym, e in replacements:
                body.emit(sym.name, e.code, node, reads=e.reads)
            code = printed.code
            views = printed.reads if printed.bare else ()
            have = broadcast(*(self.g.nodes[i].shape for i in node.inputs))
            if have != tuple(node.shape):  # sympy cancelled the operands of full shape (`V - V`
                # is 0): the value must still have its declared shape for `@`, axes, transpose
                code = body.broadcast(code, have, node.shape)
                views = printed.reads if have else ()
            body.emit(name, code, node, reads=printed.reads, views=views)
            return
        a = [value_name(i) for i in node.inputs]
        if ops.BY_IR[node.op].helper:  # a stable form that needs a statement
            self.helpers.add(ops.BY_IR[node.op].name)
        code = structural.rule(node.op).forward(self.g, node, a,
                                                lambda dims: _paren(body.count_code(dims)))
        body.emit(name, code, node, reads=a, views=a if ops.BY_IR[node.op].view else ())

    # ---- backward --------------------------------------------------------------------------

    def backward(self, body: _Body, wrt: list[str], scaled: bool, guarded=()
                 ) -> tuple[set[str], dict[str, Shape]]:
        """Push adjoints from the objective (seeded with 1, or with `lr` when `scaled`) back to
        `wrt`; returns the nodes whose forward values the backward lines read, and each
        adjoint's static shape (lazy broadcasts). An adjoint that is another one unchanged (the
        adjoint of `X @ W` in `X @ W + b`) gets no line of its own: `self.same` maps it to that
        adjoint's symbol. `guarded`: more leaves (the inputs); the pushes that only they need
        run under `if with_inputs:`, pushed apart from the others (which stay as they are) and
        before them, and the values they read (all on the way to the objective) are not
        returned."""
        g = self.g
        adjoint: dict[str, Shape] = {}  # node -> static shape of its adjoint so far
        self.same = {}
        reads: set[str] = set()
        main = self.needs_gradient_of(wrt) if guarded else None  # nodes on a path from `wrt`
        seed = g.objective
        seed_value = LR_SEED if scaled else sp.Integer(1)
        if g.nodes[seed].is_leaf and (seed in wrt or seed in guarded):  # `minimize p` on a leaf
            body.emit(grad_name(seed), f"np.full_like({value_name(seed)}, {print_expr(seed_value)})",
                      reads=[value_name(seed)])
            if seed in guarded:
                body.stmts[-1] = body.stmts[-1]._replace(guard="with_inputs")
            else:
                reads.add(seed)
            adjoint[seed] = ()
        leaves = [*wrt, *guarded]
        for node, locals_ in backward_plan(g, leaves, self.needs_gradient_of(leaves)):
            if node.name == seed:
                G, gshape = seed_value, ()
            elif node.name in adjoint:
                G, gshape = self.adjoint_of(node.name), adjoint[node.name]
            else:
                continue
            if main is None:
                self._push(body, node, locals_, G, gshape, adjoint, reads)
                continue
            ours = node.name in main  # the inputs' pushes first: what they read, the others
            start = len(body.stmts)  # mostly read after them, so that nothing lives longer
            self._push(body, node, [lc for lc in locals_ if not ours or lc.input not in main],
                       G, gshape, adjoint, set())
            body.stmts[start:] = [st._replace(guard="with_inputs") for st in body.stmts[start:]]
            self._push(body, node, [lc for lc in locals_ if ours and lc.input in main], G,
                       gshape, adjoint, reads)
        return reads, adjoint

    def _push(self, body, node, locals_, G, gshape, adjoint, reads) -> None:
        """The node's adjoint `G` pushed to the inputs of `locals_`."""
        if not locals_:
            return
        if node.op == "elementwise":
            self._push_elementwise(body, node, locals_, G, gshape, adjoint, reads)
        else:
            for local in locals_:
                self._push_structural(body, node, local, G, gshape, adjoint, reads)

    def adjoint_of(self, node: str) -> sp.Symbol:
        """The symbol that holds a node's adjoint: its own, or the one it is equal to."""
        return self.same.get(node) or adjoint_symbol(node)

    def _push_elementwise(self, body, node, locals_, G, gshape, adjoint, reads) -> None:
        # the backward passes (the gradients' and the Hessian's) push most nodes alike, their
        # temporaries numbered from wherever each function has got to
        key = (body.prefix, node.name, G, tuple(local.input for local in locals_), gshape != ())
        known = self._pushed.get(key)
        if known is None:
            shapes = {i: self.g.nodes[i].shape for i in node.inputs}
            shapes[node.name] = node.shape
            known = self._pushed[key] = {}, shapes, shape_of(  # shaped by G and the node
                (G, node.expr), (symbol(node.name), *(symbol(local.input) for local in locals_)))
        printed, shapes, shaped = known
        known = printed.get(None) or printed.get(body.temps)  # None: it made no temporaries
        if known is None:
            start = body.temps
            replacements, reduced = body.cse(lambda: [G * local.factor for local in locals_],
                                             shaped, steps=gshape != ())  # G is an array, so
            # `G*(x > 0)` keeps its dtype; a comparison in a factor is cast to `dt`
            dtype = any(_READS_DT.search(p.code) for p in (*(e for _, e in replacements), *reduced))
            known = printed[start if replacements else None] = replacements, reduced, dtype
        replacements, reduced, dtype = known
        if replacements:
            body.temps = temp_index(replacements[-1][0], body.prefix) + 1
        body.uses_dtype |= dtype
        for sym, e in replacements:
            reads.update(e.values)
            body.emit(sym.name, e.code, node, "∂ ", reads=e.reads)
        temp_shapes = {}
        for sym, e in replacements:
            temp_shapes[sym] = self._static_shape(e, shapes, temp_shapes, adjoint, gshape)
        for local, expr in zip(locals_, reduced):
            reads.update(expr.values)
            shape = self._static_shape(expr, shapes, temp_shapes, adjoint, gshape)
            code, views = expr.code, (expr.reads if expr.bare else ())
            if _loses_count(shape, node.shape, self.g.nodes[local.input].shape):
                # a lazy contribution (`sum(c - W)`: G is a scalar and so is ∂/∂c) stands for
                # its broadcast to the node's shape; summing it needs the real broadcast
                code, shape = body.broadcast(code, shape, node.shape), node.shape
            same = expr.symbols[0] if expr.bare and isinstance(expr.symbols[0], (Adjoint, Temp)) \
                else None
            self._accumulate(body, node, local.input, code, shape, adjoint, expr.reads, views,
                             same, local=local, G=G, gshape=gshape)

    def _static_shape(self, expr: Printed, shapes, temp_shapes, adjoint, gshape) -> Shape:
        parts = []
        for s in expr.symbols:
            if isinstance(s, Adjoint):
                parts.append(adjoint.get(s.name, gshape))
            elif isinstance(s, Temp):  # of this node's cse, or the one its adjoint G is
                parts.append(temp_shapes.get(s, gshape))
            elif _is_seed(s):
                parts.append(())
            else:
                parts.append(shapes[s.name])
        return broadcast(*parts)

    def _push_structural(self, body, node, local, G, gshape, adjoint, reads) -> None:
        rule = local.rule
        if gshape == ():  # a scalar adjoint may take a lazier map (a sum's G repeated is G)
            rule = structural.rule(node.op).scalar_map(node) or rule
        gcode = _token(G)
        fields = _fields(rule.numpy)
        # G is an adjoint's (or temporary's) symbol, or the seed: 1 or lr
        own = [gcode] if G.is_Symbol else []
        values = {n for f, n in (("y", node.name), *zip("ab", node.inputs)) if f in fields}
        reads.update(values)
        views = ()
        if rule.needs_full_g and gshape != node.shape:
            gcode = body.broadcast(gcode, gshape, node.shape)
        elif rule.view:
            views = own
        names = {"G": gcode, "y": value_name(node.name), "k": str(node.axis)}
        for key, inp in zip("ab", node.inputs):
            names[key] = value_name(inp)
        src = self.g.nodes[node.inputs[0]].shape
        if "pad" in fields:
            names["pad"] = structural.pad_widths(node.part, src)
        if "n" in fields:
            dims = src if node.axis is None else (src[node.axis],)
            names["n"] = _paren(body.count_code(dims))
        code = rule.numpy.format(**names)
        shape = rule.shape(self.g, node, local.index)
        same = G if rule.numpy == "{G}" and isinstance(G, Adjoint) else None
        self._accumulate(body, node, local.input, code, shape, adjoint,
                         (*(own if "G" in fields else ()), *map(value_name, values)), views, same,
                         local=local, G=G, gshape=gshape)

    def _accumulate(self, body, node, target, code, shape, adjoint, reads, views=(), same=None,
                    **contribution) -> None:
        """Fit a contribution to the target's shape (summing broadcast axes) and add it;
        `reads` and `views` are the variables the contribution reads and may share memory with;
        `same`, the adjoint symbol it is when it is one unchanged. `contribution` (the local
        map, the adjoint and its shape) is for subclasses that differentiate the backward pass."""
        code, reduced = _reduce_to(code, shape, self.g.nodes[target].shape)
        if reduced != tuple(shape):
            views, same = (), None
        name = grad_name(target)
        if target in adjoint:
            have = _token(self.adjoint_of(target))
            self.same.pop(target, None)
            body.emit(name, f"{have} + {code}", node, "∂ ", reads=(*reads, have))
            adjoint[target] = broadcast(adjoint[target], reduced)
        elif same is not None:
            self.same[target] = same
            adjoint[target] = reduced
        else:
            body.emit(name, code, node, "∂ ", reads=reads, views=views)
            adjoint[target] = reduced

    # ---- whole functions -------------------------------------------------------------------

    def function(self, name: str, args: str, wrt: list[str], returns: list, keep_values=(),
                 scaled: bool = False, doc: str = "", predicted: bool = False,
                 with_loss: bool = False, with_inputs: bool = False) -> str:
        """One function: the params and inputs it reads, the forward statements its results
        need, the backward pass to `wrt` (seeded with `lr` when `scaled`), each value released
        after its last use. `returns`: what it returns, in order: a node's name (its value),
        `("values", nodes)` or `("grads", leaves)` (a dict of values or gradients by name).
        `predicted`: the prediction is `predict`'s, called, and not computed again.
        `with_loss`: `returns` is the objective and the gradients, and the function returns
        both when its argument `with_loss` is true, else the gradients alone; the objective's
        lines that no gradient needs run under `if with_loss:`, after the other forward lines:
        one function serves `loss_and_grad`, `grad` and `sgd_step`, at no cost to the step.
        `with_inputs` (with `with_loss`): the gradients for the inputs too, when the argument
        `with_inputs` is true (it needs `with_loss`: they read the objective's values), from
        the pushes that only they need, under `if with_inputs:` (`gradients`)."""
        g = self.g
        guarded = list(g.inputs) if with_inputs else []
        key = (tuple(wrt), scaled, with_inputs)
        if key not in self._backward:
            back = _Body(g, BACKWARD_TEMPS)
            reads, adjoint = (self.backward(back, wrt, scaled, guarded) if wrt or guarded
                              else (set(), {}))
            self._backward[key] = back, reads, adjoint, dict(self.same) if wrt or guarded else {}
        back, reads, adjoint, same = self._backward[key]
        needed_values = set(reads) | set(keep_values)
        inputs_of = self.reads_calling_predict(predicted)
        live = ancestors(needed_values | ({g.objective} if with_loss else set()), inputs_of)
        always = ancestors(needed_values, inputs_of) if with_loss else live
        fwd = _Body(g, FORWARD_TEMPS)
        for n, node in g.nodes.items():
            if predicted and n == g.predict:
                fwd.emit(value_name(n), "predict(params, inputs)", node)
            elif n in always and not node.is_leaf:
                self.forward_code(fwd, node)
        if live is not always:
            start = len(fwd.stmts)
            for n, node in g.nodes.items():  # in topological order, after what they read
                if n in live and n not in always and not node.is_leaf:
                    self.forward_code(fwd, node)
            fwd.stmts[start:] = [st._replace(guard="with_loss") for st in fwd.stmts[start:]]
        tail = _Body(g, FORWARD_TEMPS)
        grads = {}  # leaf -> the variable of its gradient
        for w in [*wrt, *guarded]:
            start = len(tail.stmts)
            have = _token(same[w]) if w in same else grad_name(w)
            if w not in adjoint:
                tail.uses_dtype = True
                tail.emit(grad_name(w), f"np.zeros({tail.shape_code(g.nodes[w].shape)}, "
                          f"dtype=dt)  # {w} does not reach {g.objective}")
                have = grad_name(w)
            elif adjoint[w] != g.nodes[w].shape:
                tail.emit(grad_name(w), tail.broadcast(have, adjoint[w], g.nodes[w].shape),
                          reads=[have], views=[have] if adjoint[w] else ())
                have = grad_name(w)
            grads[w] = have
            if w in guarded:
                tail.stmts[start:] = [st._replace(guard="with_inputs") for st in tail.stmts[start:]]
        # a gradient that is (a view of) a param's array (`a * b` gives g_a = v_b) is copied:
        # an in-place update of one param must not change the gradient of another
        shares = _shares_memory(fwd.stmts + back.stmts + tail.stmts)
        param_values = {value_name(p) for p in g.params}  # once: per gradient it was quadratic
        for w in [*wrt, *guarded]:
            if not param_values.isdisjoint(shares.get(grads[w], {grads[w]})):
                tail.emit(grad_name(w), f"np.array({grads[w]})  # a copy, not a view of a param",
                          reads=[grads[w]])
                if w in guarded:
                    tail.stmts[-1] = tail.stmts[-1]._replace(guard="with_inputs")
                grads[w] = grad_name(w)
        parts = []
        for item in returns:
            if isinstance(item, str):
                parts.append(value_name(item))
            else:
                kind, names = item
                got = {n: value_name(n) for n in names} if kind == "values" else grads
                parts.append("{" + ", ".join(f'"{n}": {got[n]}' for n in names) + "}")
        returned = {v for item in returns for v in ([value_name(item)] if isinstance(item, str)
                    else (grads[n] if item[0] == "grads" else value_name(n) for n in item[1]))}
        returned.update(grads[n] for n in guarded)
        head = {}  # the params and inputs unpacked: variable -> its code
        for n in g.params:
            if n in live:
                head[value_name(n)] = f'params["{n}"]'
        for n in g.inputs:
            if n in live or n in wrt:
                head[value_name(n)] = f'inputs["{n}"]'
        stmts = fwd.stmts + back.stmts + tail.stmts
        if with_loss:  # the gradients by name, and the inputs' when asked for
            grads_of = lambda leaves: "{" + ", ".join(f'"{n}": {grads[n]}' for n in leaves) + "}"
            stmts, late = _moved_late(stmts, returned)
            stmts.append(Stmt("grads", grads_of(wrt), tuple(grads[n] for n in wrt)))
            stmts += late
            if guarded:
                stmts.append(Stmt("grads", grads_of(guarded), ("grads", *(grads[n] for n in guarded)),
                                  op="|=", guard="with_inputs"))
            returned.add("grads")
        fixed = []  # `dt` and the sizes, read from the params and inputs
        if fwd.uses_dtype or back.uses_dtype or tail.uses_dtype:
            source = (g.params or g.inputs)[0]
            kind = "params" if source in g.params else "inputs"
            head.setdefault(value_name(source), f'{kind}["{source}"]')
            fixed.append(Stmt("dt", f"{value_name(source)}.dtype", (value_name(source),)))
        for d in sorted(fwd.sizes | back.sizes | tail.sizes):
            owner, axis = g.size_names()[d]
            head.setdefault(value_name(owner), f'inputs["{owner}"]')
            fixed.append(Stmt(size_name(d), f"{value_name(owner)}.shape[{axis}]",
                              (value_name(owner),)))
        returns = (f"({parts[0]}, grads) if with_loss else grads" if with_loss
                   else ", ".join(parts) or "None")
        fixed_names = {st.target for st in fixed}
        lines = render(fixed + stmts, returned | fixed_names, head.keys() | fixed_names, returns,
                       head)
        text = f"def {name}({args}):\n"
        if doc:
            text += f'    """{doc}"""\n'
        return text + "".join(f"    {ln}\n" for ln in lines)

    def module(self) -> str:
        g = self.g
        nodes = [n for n in g.nodes if is_user_node(n)]
        consts = [n for n in nodes if g.nodes[n].kind == "const"]
        funcs = []
        values = ("values", nodes)
        funcs.append(self.function("forward", "params, inputs", [], [values],
                                   keep_values=[n for n in nodes if g.nodes[n].kind != "const"],
                                   doc="Every input, param and node, by name."))
        if g.predict:
            funcs.append(self.function("predict", "params, inputs", [], [g.predict],
                                       keep_values=[g.predict], doc=f"The prediction `{g.predict}`."))
        if g.target:
            funcs.append(self.function("target", "params, inputs", [], [g.target],
                                       keep_values=[g.target],
                                       doc=f"The target `{g.target}`, computed from the data."))
        if g.objective:
            obj = g.objective
            params = g.params
            pgrads = ("grads", params)
            funcs.append(self.function("loss", "params, inputs", [], [obj], keep_values=[obj],
                                       doc=f"The objective `{g.objective}`.",
                                       predicted=self.objective_follows_prediction()))
            funcs.append(self.function(
                "_loss_and_grad", "params, inputs, lr, with_loss, with_inputs", params,
                [obj, pgrads], scaled=True, with_loss=True, with_inputs=True,
                doc=LOSS_AND_GRAD_DOC))
            funcs += [LOSS_AND_GRAD, GRAD, GRADIENTS, SGD_STEP]
        extra_meta, extra_funcs = self.second_order()
        funcs += extra_funcs
        funcs += [self.report_function(r) for r in g.reports]
        header = [_one_line(f"# generated by dsl from {os.path.basename(g.file)}; do not edit"),
                  self.docstring(),
                  "import numpy as np", ""]
        meta = [f"OBJECTIVE = {g.objective!r}", f"PREDICT = {g.predict!r}",
                f"PARAMS = {g.params!r}", f"INPUTS = {g.inputs!r}",
                f"STABLE_REWRITES = {g.rewrites!r}  # what `run` reports", *extra_meta]
        meta += [f"{value_name(c)} = {float(g.nodes[c].value)!r}" + _one_line(f"  # {g.nodes[c].source}")
                 for c in consts]
        used = {type(e) for n in g.nodes.values() if n.expr is not None for e in iterargs(n.expr)}
        for name, f in ops.FUNCTIONS.items():  # a function numpy lacks: its helper, if used
            fns = tuple(ops.sympy_of(n) for n in ops.brought_by(name)) if f.helper else ()
            if fns and any(issubclass(t, fns) for t in used):
                self.helpers.add(name)
        helpers = [ops.HELPERS[h][1] for h in sorted(self.helpers)]
        parts = ["\n".join(header), "\n".join(meta) + "\n", *helpers, *funcs]
        return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"

    def objective_follows_prediction(self) -> bool:
        """Then `loss` calls `predict` rather than repeating its lines."""
        return self.g.predict != self.g.objective and self.follows_prediction([self.g.objective])

    def follows_prediction(self, roots) -> bool:
        """Do `roots` need the prediction and, of what is computed on the way to it, nothing
        else? Then a function of them can call `predict` for it."""
        g = self.g
        if not g.predict or g.nodes[g.predict].is_leaf:
            return False
        need = ancestors(roots, self.reads)
        if self._before_prediction is None:
            self._before_prediction = ancestors([g.predict], self.reads)
        before = self._before_prediction
        return g.predict in need and all(
            i == g.predict or i not in before or g.nodes[i].is_leaf
            for i in (*roots, *(i for n in need - before for i in self.reads[n])))

    def docstring(self) -> str:
        head = "The compiled model: forward pass, objective, gradients, training step."
        return f'"""{head}\n\n{SGD_STEP_DOC}\n"""' if self.g.objective else f'"""{head}"""'

    def report_function(self, name: str) -> str:
        """`report_NAME`: a reported scalar and its gradient for every param, by the same
        backward pass seeded at that scalar instead of the objective (for the delta method)."""
        writer = ModuleWriter(replace(self.g, objective=name))
        text = writer.function(f"report_{name}", "params, inputs", self.g.params,
                               [name, ("grads", self.g.params)], keep_values=[name],
                               doc=f"The reported `{name}` and its gradient for every param.")
        self.helpers |= writer.helpers
        return text

    def second_order(self) -> tuple[list[str], list[str]]:
        """Constants and functions beyond the gradient (compiler.second_order)."""
        return [], []


def _one_line(comment: str) -> str:
    """A comment that stays one comment: model text and file names may hold a carriage return
    (whitespace in a `.model` line, a line break to Python) or other control characters, which
    would end the comment and make the rest of the text code."""
    if comment.isprintable():  # nearly always: no walk over the characters
        return comment
    return "".join(ch if ch.isprintable() else "?" for ch in comment)


def _is_value(s: sp.Symbol) -> bool:
    """Does a symbol stand for a node's forward value (not an adjoint, a temporary or lr)?"""
    return not isinstance(s, (Adjoint, Temp)) and not _is_seed(s)


def _is_seed(s: sp.Symbol) -> bool:
    """Is a symbol the seed `lr`? (sympy's `==` is slow: asked only of a symbol named `lr`.)"""
    return s.name == "lr" and s == LR_SEED


@lru_cache(maxsize=None)
def _fields(template: str) -> frozenset[str]:
    """The names a rule's `str.format` template reads: a few templates, read per node."""
    return frozenset(f for _, f, _, _ in Formatter().parse(template) if f)


def _paren(code: str) -> str:
    return f"({code})" if "*" in code else code


def _paren_expr(code: str) -> str:
    return code if code.isidentifier() else f"({code})"


def _moved_late(stmts: list[Stmt], keep: set[str]) -> tuple[list[Stmt], list[Stmt]]:
    """The statements less those guarded by `with_inputs` (the inputs' gradients) that can run
    last, in one block, and those: back from the end, each after which nothing unguarded runs,
    or that reads only variables that live to the end anyway (`keep`, what the last unguarded
    statement reads, the params' and inputs' locals, and what guarded statements assign):
    moved, nothing lives longer for them."""
    moves = lambda st: st.guard == "with_inputs"
    final = next((st for st in reversed(stmts) if not moves(st)), None)
    assigned = ({st.target for st in stmts if not moves(st)} - set(keep)
                - set(final.reads if final else ()))
    end = len(stmts)  # the guarded statements from here on are moved
    last = True  # no unguarded statement after this point
    for k in range(len(stmts) - 1, -1, -1):
        st = stmts[k]
        if not moves(st):
            last = False
        elif last or assigned.isdisjoint(st.reads):
            end = k
        else:
            break
    return ([st for k, st in enumerate(stmts) if k < end or not moves(st)],
            [st for st in stmts[end:] if moves(st)])


def _shares_memory(stmts: list[Stmt]) -> dict[str, set[str]]:
    """Each variable, with the variables it may share memory with through numpy views (as its
    statement's op states), transitively. Conservative."""
    out: dict[str, set[str]] = {}
    for st in stmts:
        if st.op == "=" and st.views:
            out[st.target] = {st.target}.union(*(out.get(v, (v,)) for v in st.views))
        elif st.op == "=":
            out.pop(st.target, None)
    return out


def render(stmts: list[Stmt], keep: set[str], bound=(), returns: str = "",
           unpacked: dict[str, str] | None = None) -> list[str]:
    """The statements as lines, and `return returns`, read backwards for liveness: a statement
    whose target nothing reads is left out, and each variable is released (`del`) right after
    its last use unless `keep` (the returned variables) holds it or it is `bound` (a param's or
    input's local), so that no intermediate outlives its readers; one comment names the
    `.model` line above each run of statements that come from it. A run of guarded statements
    is one `if GUARD:` block; a variable from outside it that it reads last is released after
    the block. `unpacked`: the params and inputs by local (`{"v_b1": 'params["b1"]'}`), each
    unpacked on a line of its own at the top where the statements read it more than once, else
    read in place (`_read_in_place`)."""
    assigned = {st.target for st in stmts if st.op == "="} - set(bound)
    unpacked = unpacked or {}
    live = set(keep)
    kept: list[Stmt] = []
    dels: list[list[str] | None] = []  # beside kept: what dies after each (few do: no list)
    readers: dict[str, int] = {}  # an unpacked variable -> the place in `kept` of the one
    for st in reversed(stmts):     # statement that reads it, or -1: more than one
        if st.op == "=" and st.target not in live:
            continue
        dead = None
        for v in st.reads:
            if v not in live and v in assigned:
                dead = [v] if dead is None else dead + [v] if v not in dead else dead
            elif v in unpacked:  # (`reads` may name it twice: `v_x @ v_x`)
                here = len(kept)
                readers[v] = here if readers.get(v, here) == here else -1
        if not st.guard:  # a guarded assignment may not run: what it assigns is live before it
            live.discard(st.target)
        live.update(st.reads)
        kept.append(st)
        dels.append(sorted(dead) if dead else None)
    kept.reverse()
    dels.reverse()
    lines, codes = [], {}
    if unpacked:
        in_place, codes = _read_in_place(kept, readers, unpacked)
        lines += [f"{v} = {code}" for v, code in unpacked.items() if v not in in_place]
        if in_place and not in_place.isdisjoint(keep):
            returns = _NAME.sub(lambda m: unpacked[m[0]] if m[0] in in_place else m[0], returns)
    group, guard, later = None, "", []
    inner = {st.target for st in kept if st.guard}
    for k, (st, dead) in enumerate(zip(kept, dels)):
        if st.guard != guard:
            if later:
                lines.append(f"del {', '.join(sorted(later))}")
            if st.guard:
                lines.append(f"if {st.guard}:")
            guard, later = st.guard, []
        pad = "    " if guard else ""
        if st.origin is None:  # a line of the function's own (`grads = {...}`) ends a run
            group = None
        elif (st.origin[0], st.note) != group:
            group = (st.origin[0], st.note)
            lines.append(pad + _comment(*st.origin, st.note))
        lines.append(f"{pad}{st.target} {st.op} {codes.get(k, st.code)}")
        if dead and guard:
            later += [v for v in dead if v not in inner]
            dead = [v for v in dead if v in inner]
        if dead and k < len(kept) - 1:
            lines.append(f"{pad}del {', '.join(dead)}")
    if returns:
        lines.append(f"return {returns}")
    return lines


_NAME = re.compile(r"(?<![\w.'\"])[^\W\d]\w*")  # a name in code: no attribute, not in a string


def _read_in_place(kept: list[Stmt], readers: dict[str, int], unpacked: dict[str, str]
                   ) -> tuple[set[str], dict[int, str]]:
    """The unpacked variables that no statement of `kept` reads or one reads once, and by place
    in `kept`, the code of each statement that reads one of them, with that read made in place:
    `np.tanh(t1_h1 + params["b1"])`. `readers` gives the reading statement's place from the
    end of `kept`, or -1 where more than one reads the variable. One read more often keeps its
    local: the training step reads each weight forward and backward, and a local is what it
    reads fastest. Python's compile costs five microseconds a line: on a 1,000-node MLP a
    fifth of the lines were unpacking."""
    last = len(kept) - 1
    once = {v for v in unpacked if v not in readers}
    codes: dict[int, str] = {}  # the statements read in place: their code
    for v, r in readers.items():
        if r < 0:
            continue
        k = last - r
        code = codes.get(k) or kept[k].code
        at = code.find(v)
        name = _NAME.match(code, at) if at >= 0 and code.find(v, at + 1) < 0 else None
        if name is None or name.end() != at + len(v):
            # not once by itself: by names (`dv_x` is a tangent, `v_x2` another param, `"v_x"`
            # a string), where it may be read twice, or not at all (`reads` names more)
            at = [m.start() for m in _NAME.finditer(code) if m[0] == v]
            if len(at) > 1:
                continue
            at = at[0] if at else None
        if at is not None:
            codes[k] = code[:at] + unpacked[v] + code[at + len(v):]
        once.add(v)
    return once, codes


@lru_cache(maxsize=1 << 16)  # every function comments the same statements
def _comment(line: int, source: str, note: str) -> str:
    return _one_line(f"# line {line}: {note}{' '.join(source.split())}")


def _loses_count(have: Shape, full: Shape, want: Shape) -> bool:
    """Would summing a contribution of static shape `have`, standing for its broadcast to
    `full`, down to `want` skip an axis that `full` has and neither `have` nor `want` has?"""
    if tuple(have) == tuple(full):  # nearly always: nothing was broadcast
        return False
    n = len(full)
    have = (1,) * (n - len(have)) + tuple(have)
    want = (1,) * (n - len(want)) + tuple(want)
    return any(f != 1 and h == 1 and w == 1 for f, h, w in zip(full, have, want))


def _reduce_to(code: str, have: Shape, want: Shape) -> tuple[str, Shape]:
    """Sum a contribution of static shape `have` over the axes numpy broadcast it along, so
    that it broadcasts to `want` again (leading axes, and axes where `want` has 1)."""
    if tuple(have) == tuple(want):  # nearly always: nothing to sum
        return code, tuple(have)
    lead, ones = summed_axes(have, want)
    if lead:
        code = f"{_paren_expr(code)}.sum(axis={lead if len(lead) > 1 else lead[0]})"
    have = tuple(have)[len(lead):]
    if ones:
        code = f"{_paren_expr(code)}.sum(axis={ones if len(ones) > 1 else ones[0]}, keepdims=True)"
        have = tuple(1 if i in ones else d for i, d in enumerate(have))
    return code, have


def generate(graph: Graph) -> str:
    """The whole module as text, residuals, Jacobian and Hessian included, from the graph with
    the stable rewrites across statements."""
    from compiler.second_order import SecondOrderWriter  # it builds on this module's writer
    return SecondOrderWriter(stabilize_graph(graph)).module()
