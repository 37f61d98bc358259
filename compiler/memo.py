"""Expressions of the same shape, worked out once.

A chain's neurons (`sigmoid(w5 * z4)`, `sigmoid(w6 * z5)`) or an MLP's layers (`tanh(b3 + t1_h3)`)
are one expression under different names. sympy's answers (a derivative, a cse, printed code)
depend on the names only through their order: it sorts symbols by class, then by name, and
nothing else it does reads a name. So an answer found for one expression holds for every
expression of the same `shape`: the same tree, with its symbols in the same places, of the same
classes and assumptions, and in the same order when sorted. The shape (`shape_of`) is a plain tuple, built
without making any sympy object, so a hit costs a walk of the tree and a dict lookup.
"""
from __future__ import annotations

import re

import sympy as sp


def shape_of(exprs, extra: tuple[sp.Symbol, ...] = ()) -> tuple[tuple, list[sp.Symbol]]:
    """The shape of `exprs` (and of the `extra` symbols after them), and their symbols in the
    order the shape numbers them (first appearance)."""
    slots: dict[sp.Symbol, int] = {}

    def walk(e):
        if e.is_Symbol:
            i = slots.get(e)
            if i is None:
                i = slots[e] = len(slots)
            return i
        args = e.args
        if not args:
            return (type(e), e)  # a number or a constant
        return (e.func, *map(walk, args))

    tree = tuple(map(walk, exprs))
    for s in extra:
        walk(s)
    symbols = list(slots)
    known = list(map(_known, symbols))
    order = tuple(sorted(range(len(known)), key=lambda i: known[i][0]))
    return (tree, tuple(slots[s] for s in extra), order, tuple(k[1] for k in known)), symbols


_SYMBOLS: dict[sp.Symbol, tuple] = {}


def _known(s: sp.Symbol) -> tuple:
    """What a shape reads of a symbol, asked of sympy once per symbol: what orders it as
    sympy's `sort_key` does (class, then name; a Dummy, never ours but possible, by its own),
    and its class and assumptions."""
    known = _SYMBOLS.get(s)
    if known is None:
        order = s.sort_key() if isinstance(s, sp.Dummy) else (s.class_key(), (1, (s.name,)))
        known = _SYMBOLS[s] = order, (type(s), tuple(sorted(s.assumptions0.items())))
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
    if isinstance(expr, (sp.Add, sp.Mul, sp.Pow, sp.Function)):
        return expr.func(*args, evaluate=False)
    return expr.func(*args)


_TOKEN = re.compile(r"[A-Za-z_]\w*")


def template(code: str, tokens: dict[str, int]) -> str:
    """Printed `code` as a `str.format` template: each token that spells a symbol of the shape
    (`tokens`: spelling -> its slot) becomes `{slot}`, so that the code of another expression
    of the same shape is `template.format(*its symbols' spellings)`."""
    return _TOKEN.sub(lambda m: "{%d}" % tokens[m.group()] if m.group() in tokens else m.group(),
                      code.replace("{", "{{").replace("}", "}}"))
