"""Derivatives and printed code worked out once per shape of expression (compiler/memo.py):
the module generated with the memo is the module generated without it, byte for byte."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
import sympy as sp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import synthetic  # noqa: E402

from compiler import codegen, derive, lower, second_order  # noqa: E402
from compiler.functions import sigmoid  # noqa: E402
from compiler.ir import symbol  # noqa: E402
from compiler.memo import shape_of  # noqa: E402
from dsl.training.runtime import compile_file  # noqa: E402


def test_the_same_neuron_under_other_names_has_one_shape():
    w5, z4, z5, w6, w10, z9, z10 = (symbol(n) for n in ("w5", "z4", "z5", "w6", "w10", "z9", "z10"))
    one = shape_of((sigmoid(w5 * z4),), (z5,))[0]
    assert shape_of((sigmoid(w6 * z5),), (symbol("z6"),))[0] == one
    # `w10` < `z10` < `z9` as strings: sympy orders them otherwise, so another shape
    assert shape_of((sigmoid(w10 * z9),), (z10,))[0] != one
    assert shape_of((sp.tanh(w5 * z4),), (z5,))[0] != one
    assert shape_of((sigmoid(2 * w5 * z4),), (z5,))[0] != one
    assert shape_of((sigmoid(w5 * z4),), (sp.Symbol("z5"),))[0] != one  # other assumptions


def test_a_shape_is_the_same_walked_or_remembered(monkeypatch):
    """shape_of remembers each expression's tree (by identity, a bounded table): the shapes are
    those of a fresh walk, with the table empty or too small to keep anything."""
    from compiler import memo
    w, z, y, g = (symbol(n) for n in ("w5", "z4", "z5", "g"))
    e = sigmoid(w * z)
    calls = [((e,), (y,)), ((g, e), (y, w, z)), ((e, g * e), ()), ((g, 2 * g + y), (w,))]
    warm = [shape_of(*c) for c in calls] + [shape_of(*c) for c in calls]
    for size in (1 << 16, 1):
        monkeypatch.setattr(memo, "_TREES", {})
        monkeypatch.setattr(memo, "_MAX_TREES", size)
        assert [shape_of(*c) for c in calls] * 2 == warm
    assert warm[0][0] != warm[1][0] and warm[1][1] == [g, w, z, y]


MODELS = {"chain": synthetic.chain(14), "mlp": synthetic.mlp(12),
          # one form twice, its names sorted otherwise: sympy makes tanh(x - w) -tanh(w - x)
          "order": "input x\ninput y\nparam w = 0.5\np = tanh(x - w)\nq = tanh(p - y)\n"
                   "minimize q\n"}
MODELS.update({p.stem: p.read_text() for p in sorted((ROOT / "examples").glob("*.model"))})


def forget(monkeypatch) -> None:
    """Empty every memo table, for this test only."""
    for module, table in ((derive, "_FACTORS"), (codegen, "_PRINTED"), (codegen, "_COMPARES"),
                          (second_order, "_COEFS"), (second_order, "_SECOND"),
                          (second_order, "_CHARGES"), (lower, "_FORMS")):
        monkeypatch.setattr(module, table, {})


class NeverKept(dict):
    """A memo table that forgets what it is given. (Lowering still works out each tree's form:
    it also says the order in which the statement writes its names.)"""

    def __setitem__(self, key, value):
        pass


@pytest.mark.parametrize("name", sorted(MODELS))
def test_memo_changes_no_byte_of_the_module(tmp_path, monkeypatch, name):
    path = tmp_path / f"{name}.model"
    path.write_text(MODELS[name])
    if name not in ("chain", "mlp", "order"):  # the examples read their data beside them: same folder
        path = ROOT / "examples" / f"{name}.model"
    forget(monkeypatch)
    compiled = compile_file(str(path), use_cache=False)
    with_memo, graph = compiled.source, compiled.graph

    fresh = itertools.count()

    def never_equal(exprs, extra=()):  # every expression a shape of its own: no memo hits
        key, symbols = shape_of(exprs, extra)
        return (next(fresh), key), symbols

    for module in (derive, codegen, second_order):
        monkeypatch.setattr(module, "shape_of", never_equal)
    forget(monkeypatch)
    monkeypatch.setattr(lower, "_FORMS", NeverKept())  # lowering builds every tree
    compiled = compile_file(str(path), use_cache=False)
    assert compiled.source == with_memo
    # the graph that `derive` and `graph` print: the same nodes, expressions and rewrites
    assert [(n.name, n.inputs, sp.srepr(n.expr)) for n in compiled.graph.nodes.values()] == \
        [(n.name, n.inputs, sp.srepr(n.expr)) for n in graph.nodes.values()]
    assert compiled.graph.rewrites == graph.rewrites


@pytest.mark.parametrize("name", sorted(MODELS))
def test_an_elementwise_nodes_inputs_are_what_its_expression_reads(tmp_path, name):
    """Lowering takes a memoized form's inputs from the form, and code generation reads a
    node's `inputs` for the symbols of its expression: both rest on this, after the stable
    rewrites too."""
    from compiler.stable import stabilize_graph
    path = tmp_path / f"{name}.model"
    path.write_text(MODELS[name])
    graph = compile_file(str(path), use_cache=False).graph
    for g in (graph, stabilize_graph(graph)):
        nodes = [n for n in g.nodes.values() if n.op == "elementwise"]
        assert nodes
        for n in nodes:
            assert n.inputs == tuple(sorted(s.name for s in n.expr.free_symbols)), n.name
