"""Every name the generated code uses, decided in one place.

A user's name `x` (a node, param, input, constant or size) reaches the module only through one
mangling: `v_x` for its value, `g_x` for its adjoint, `n_x` for a size; a statement's inner node
`x.2` (a dot never appears in a user's name) becomes `t2_x` and `gt2_x`. Everything else the
module defines (the cse temporaries `_t0` and `_d0`, the locals `dt` and `lr`, the arguments
`params` and `inputs`, `np`, the helpers `_logsumexp`, `_softmax` and `_sigmoid`; for the
Jacobian and Hessian, the tangents `dv_x` and `dg_x` (`d` + a value's or an adjoint's name), `res`, `d_res`
and `N_PARAMS`) has none of these forms, so no model can produce or shadow it, whatever it
names its nodes.

In sympy the same separation holds by type: a temporary is a `Temp` and an adjoint is an
`Adjoint`, never equal to the plain symbol of a user's name, and the printer asks the type, not
the spelling, what a symbol is.
"""
from __future__ import annotations

from functools import lru_cache

import sympy as sp


class Temp(sp.Symbol):
    """A cse temporary (`_t0` in forward lines, `_d0` in backward ones); printed as itself."""


class Adjoint(sp.Symbol):
    """The adjoint of the node its name holds; printed `g_` + the node's name."""


FORWARD_TEMPS = "_t"
BACKWARD_TEMPS = "_d"


@lru_cache(maxsize=1 << 16)  # asked per node in every pass of every function
def value_name(node: str) -> str:
    """A node's variable: `v_` + its name; a statement's inner node `x.2` becomes `t2_x`."""
    base, _, k = node.partition(".")
    return f"t{k}_{base}" if k else f"v_{base}"


def is_user_node(node: str) -> bool:
    """A node the user named (a statement's inner nodes `x.2` are not)."""
    return "." not in node


@lru_cache(maxsize=1 << 16)
def grad_name(node: str) -> str:
    """A node's adjoint: `g_` + its name; an inner node `x.2` gets `gt2_x`."""
    base, _, k = node.partition(".")
    return f"gt{k}_{base}" if k else f"g_{base}"


def tangent_name(name: str) -> str:
    """The tangent of a generated variable (`v_x`, `g_x`): its derivative with respect to every
    param element, `dv_x`, `dg_x`."""
    return "d" + name


def size_name(dim: str) -> str:
    return f"n_{dim}"


@lru_cache(maxsize=1 << 16)
def adjoint_symbol(node: str) -> Adjoint:
    """A node's adjoint, made once (sympy's constructor is slow, and every pass asks), as
    `compiler.ir.symbol` makes a symbol: past sympy's cache."""
    return Adjoint.__xnew__(Adjoint, node, real=True)


def temp_symbols(prefix: str, start: int):
    """The temporaries `prefix0`, `prefix1`, ... from `start`, for sympy's cse."""
    k = start
    while True:
        yield temp_symbol(prefix, k)
        k += 1


@lru_cache(maxsize=None)
def temp_symbol(prefix: str, k: int) -> Temp:
    """The temporary `prefix` + k, made once: every function numbers its own from 0."""
    return Temp(f"{prefix}{k}", real=True)


def spelled_as_temp(s: sp.Symbol, prefix: str) -> bool:
    """Does a symbol's name begin like the temporaries `prefix0`, `prefix1`, ...? sympy's cse
    then skips the numbers such names could spell."""
    return s.name.startswith(prefix)


def temp_index(temp: Temp, prefix: str) -> int:
    return int(temp.name[len(prefix):])
