"""The graph IR (compiler/ir.py): what a graph answers about its nodes as they are added."""
from __future__ import annotations

from dataclasses import replace

from compiler.errors import Span
from compiler.ir import Graph, Node

SPAN = Span("m.model", 1, 1, 1, 2)


def test_params_and_inputs_follow_the_nodes_added():
    """The graph remembers its lists of params and inputs: each node added is in them, in
    order, and a list handed out is the caller's own."""
    g = Graph("m.model")
    g.add(Node("x", "input", ("N",), SPAN))
    g.add(Node("w", "param", (), SPAN))
    assert (g.params, g.inputs) == (["w"], ["x"])
    g.params.append("not a node")
    assert g.params == ["w"]
    g.add(Node("h", "op", ("N",), SPAN, "elementwise", ("x", "w")))
    g.add(Node("b", "param", (), SPAN))
    g.add(Node("y", "input", ("N",), SPAN))
    assert (g.params, g.inputs) == (["w", "b"], ["x", "y"])
    assert g.of_kind("op") == ["h"]
    # a copy with other nodes answers for its own
    other = replace(g, nodes={})
    other.add(Node("c", "param", (), SPAN))
    assert (other.params, g.params) == (["c"], ["w", "b"])


def test_a_symbol_made_past_sympys_cache_is_sympys_symbol():
    """`symbol` and `adjoint_symbol` make their symbols without sympy's cache: each is one
    object per name, and equal, by hash too, to the one sympy's constructor makes (the
    derivatives and cse compare them), with the same assumptions."""
    import sympy as sp

    from compiler.ir import symbol
    from compiler.names import Adjoint, adjoint_symbol

    for ours, sympys in ((symbol("w1"), sp.Symbol("w1", real=True)),
                         (adjoint_symbol("h"), Adjoint("h", real=True))):
        assert ours == sympys and hash(ours) == hash(sympys) and type(ours) is type(sympys)
        assert ours.assumptions0 == sympys.assumptions0 and ours.is_real
        assert ours != sp.Symbol(ours.name) and sp.diff(sympys ** 2, ours) == 2 * ours
    assert symbol("w1") is symbol("w1") and adjoint_symbol("h") is adjoint_symbol("h")
