"""The stable rewrites across statements, on the graph, before code generation.

Lowering rewrites `log(sigmoid(x))`, `log(1 - sigmoid(x))` and `log(softmax(x))` written in one
expression. Written the natural way, the probability is a statement of its own (`p =
sigmoid(z)`, the `predict` node) and the loss takes `log(p)` in another: then `p` rounds to 0 or
1 for a large `|z|` and `log(p)` is -inf. Here each `log` of a node that is a sigmoid or a
softmax is given the node's argument instead, so that the same stable forms apply: the loss
reads `z` (through `softplus`, or `z - logsumexp(z)`) and no longer `p`, which stays as it is for
whatever else reads it. Only code generation sees the rewritten graph; `derive` and `graph` show
the model as written.
"""
from __future__ import annotations

from dataclasses import replace

import sympy as sp
from sympy.core.traversal import iterargs

from compiler.functions import LOG_SOFTMAX, sigmoid, stabilize
from compiler.ir import Graph, Node, symbol


def stabilize_graph(g: Graph) -> Graph:
    """A copy of `g` with every `log` of a sigmoid or softmax node rewritten stably; the
    rewrites are added to its `rewrites`."""
    out = replace(g, nodes={}, rewrites=list(g.rewrites))
    for node in g.nodes.values():
        if node.op == "elementwise":
            node = _through_sigmoids(g, out, node)
            node = _through_softmaxes(g, out, node)
        out.add(node)
    return out


def _through_sigmoids(g: Graph, out: Graph, node: Node) -> Node:
    expr = node.expr
    # both forms take the log of the node's own expression: none here (`expr.has(sp.log)`,
    # without sympy's cache of every node's answer, which was most of this pass)
    if not any(isinstance(e, sp.log) for e in iterargs(expr)):
        return node
    for s in sorted(expr.free_symbols, key=lambda s: s.name):
        p = g.nodes.get(s.name)
        if p is None or p.op != "elementwise" or not isinstance(p.expr, sigmoid):
            continue
        applied: list[str] = []
        stable = stabilize(expr.xreplace({s: p.expr}), applied).xreplace({p.expr: s})
        if applied:
            expr = stable
            out.rewrites += [_note(node, p, rule) for rule in applied]
    return _with_expr(node, expr)


def _through_softmaxes(g: Graph, out: Graph, node: Node) -> Node:
    expr = node.expr
    for name in node.inputs:  # its expression's symbols, by name
        p, s = g.nodes.get(name), symbol(name)
        if p is None or p.op != "softmax" or not expr.has(sp.log(s)):
            continue
        x = p.inputs[0]
        axis = p.axis % len(p.shape) if p.shape else p.axis  # as lowering does it inline
        shape = tuple(1 if i == axis else d for i, d in enumerate(p.shape))
        lse = out.add(Node(_fresh(g, out, node.stmt), "op", shape, node.span, "logsumexp", (x,),
                           axis=axis, keepdims=True, stmt=node.stmt, source=node.source))
        expr = expr.xreplace({sp.log(s): symbol(x) - symbol(lse.name)})
        out.rewrites.append(_note(node, p, LOG_SOFTMAX))
    return _with_expr(node, expr)


def _with_expr(node: Node, expr: sp.Expr) -> Node:
    if expr == node.expr:
        return node
    return replace(node, expr=expr, inputs=tuple(sorted(s.name for s in expr.free_symbols)))


def _fresh(g: Graph, out: Graph, stmt: str) -> str:
    """A new inner node of the statement: `stmt.k`, past every k in use."""
    used = [int(n.rpartition(".")[2]) for n in (*g.nodes, *out.nodes) if n.startswith(stmt + ".")]
    return f"{stmt}.{max(used, default=0) + 1}"


def _note(node: Node, p: Node, rule: str) -> str:
    """`loss (line 9): log(p), p = sigmoid(...) on line 8: log(sigmoid(x)) as -softplus(-x)`."""
    what = "sigmoid" if p.op == "elementwise" else "softmax"
    return (f"{node.stmt} (line {node.span.line}): log({p.stmt}) with {p.stmt} = {what}(...) on "
            f"line {p.span.line}: {rule}")
