"""Expressions of the same shape, worked out once.

A chain's neurons (`sigmoid(w5 * z4)`, `sigmoid(w6 * z5)`) or an MLP's layers (`tanh(b3 + t1_h3)`)
are one expression under different names. sympy's answers (a derivative, a cse, printed code)
depend on the names only through their order: it sorts symbols by class, then by name, and
nothing else it does reads a name. So an answer found for one expression holds for every
expression of the same `shape`: the same tree, with its symbols in the same places, of the same
classes and assumptions, and in the same order when sorted. The shape (`shape_of`) is a plain tuple, built
without making any sympy object, so a hit costs a dict lookup (and a walk of the tree, the first
time an expression is asked about).
"""
from __future__ import annotations

import re

import sympy as sp
from sympy.core.basic import Basic
from sympy.core import function as sympy_function


def shape_of(exprs, extra: tuple[sp.Symbol, ...] = ()) -> tuple[tuple, list[sp.Symbol]]:
    """The shape of `exprs` (and of the `extra` symbols after them), and their symbols in the
    order the shape numbers them (first appearance). Each expression's tree numbers its own
    symbols, and is paired with where they come among all of them."""
    slots: dict[sp.Symbol, int] = {}

    def slot(s: sp.Symbol) -> int:
        i = slots.get(s)
        if i is None:
            i = slots[s] = len(slots)
        return i

    trees = []
    for e in exprs:
        tree, own = _tree(e)
        trees.append((tree, tuple(map(slot, own))))
    at = tuple(map(slot, extra))
    symbols = list(slots)
    known = list(map(_known, symbols))
    order = tuple(sorted(range(len(known)), key=lambda i: known[i][1]))
    return (tuple(trees), at, order, tuple(k[2] for k in known)), symbols


_TREES: dict[int, tuple] = {}  # id of an expression -> it, its tree and its symbols
_MAX_TREES = 1 << 16


def _tree(e: sp.Expr) -> tuple[object, tuple[sp.Symbol, ...]]:
    """An expression's tree, its symbols numbered by first appearance, and those symbols: worked
    out once per expression object (a node's is asked for by each function and pass)."""
    if e.is_Symbol:
        return 0, (e,)
    known = _TREES.get(id(e))
    if known is not None and known[0] is e:
        return known[1], known[2]
    own: dict[sp.Symbol, int] = {}

    def walk(x):
        if x.is_Symbol:
            i = own.get(x)
            if i is None:
                i = own[x] = len(own)
            return i
        args = x.args
        if not args:
            return (type(x), x)  # a number or a constant
        return (x.func, *map(walk, args))

    tree = walk(e)
    if len(_TREES) >= _MAX_TREES:  # it holds the expressions: bounded
        _TREES.clear()
    _TREES[id(e)] = e, tree, tuple(own)
    return tree, tuple(own)


_SYMBOLS: dict[int, tuple] = {}  # id of a symbol -> it, and what `_known` says of it
# a symbol's class and assumptions -> their number in shapes: a memo key holding the eight
# assumptions of each of its symbols took microseconds to hash and compare at every lookup
_KINDS: dict[tuple, int] = {}


def _known(s: sp.Symbol) -> tuple:
    """What a shape reads of a symbol, asked of sympy once per symbol: what orders it as
    sympy's `sort_key` does (class, then name; a Dummy, never ours but possible, by its own),
    and the number of its class and assumptions. Looked up by identity: sympy's hash is a
    Python call. The assumptions are read through `assumptions0`: what a symbol keeps of them
    (`_assumptions0`) is a sorted tuple from sympy 1.14, a dict before."""
    known = _SYMBOLS.get(id(s))
    if known is None or known[0] is not s:
        order = s.sort_key() if isinstance(s, sp.Dummy) else (s.class_key(), (1, (s.name,)))
        kind = _KINDS.setdefault((type(s), tuple(sorted(s.assumptions0.items()))), len(_KINDS))
        known = _SYMBOLS[id(s)] = s, order, kind
    return known


def rename(expr: sp.Expr, names: dict[sp.Symbol, sp.Symbol]) -> sp.Expr:
    """`expr` with its symbols renamed, as the same tree: unevaluated, since evaluating would
    undo forms sympy keeps unevaluated (factor_terms' `2*(a - b)` would become `2*a - 2*b`), and
    the arguments stay in their order, which is the sorted order under the new names too."""
    if expr.is_Symbol:
        return names.get(expr, expr)
    if not expr.args:
        return expr
    args = [rename(a, names) for a in expr.args]
    if isinstance(expr, (sp.Add, sp.Mul)):  # what `evaluate=False` builds from these args
        return expr.func._from_args(args)
    if isinstance(expr, sp.Function) and type(expr).__new__ in _PLAIN_NEW:
        return _applied(expr, args)
    if isinstance(expr, (sp.Pow, sp.Function)):
        return expr.func(*args, evaluate=False)
    return expr.func(*args)


# The constructors of a function application that, unevaluated, only store the args and the
# class's `nargs` (as a set), set per application: 20 us each, most of a layer's lowering.
# (sympy 1.14 gave the elementary functions a base of their own, `DefinedFunction`.)
_PLAIN_NEW = (sp.Function.__new__,
              getattr(sympy_function, "DefinedFunction", sp.Function).__new__)


def _applied(expr: sp.Function, args: list[sp.Expr]) -> sp.Function:
    """`expr.func(*args, evaluate=False)`, with the `nargs` of `expr`, of the same class."""
    out = Basic.__new__(type(expr), *args)
    out.nargs = expr.nargs
    return out


_TOKEN = re.compile(r"[A-Za-z_]\w*")


def template(code: str, tokens: dict[str, int]) -> str:
    """Printed `code` as a `str.format` template: each token that spells a symbol of the shape
    (`tokens`: spelling -> its slot) becomes `{slot}`, so that the code of another expression
    of the same shape is `template.format(*its symbols' spellings)`."""
    return _TOKEN.sub(lambda m: "{%d}" % tokens[m.group()] if m.group() in tokens else m.group(),
                      code.replace("{", "{{").replace("}", "}}"))
