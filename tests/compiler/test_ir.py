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
