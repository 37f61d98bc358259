"""The one `ancestors` (compiler/deps.py), and the checked model and the IR asking it alike."""
from __future__ import annotations

from pathlib import Path

import pytest

from compiler.deps import ancestors
from compiler.lower import lower
from dsl.front.build import parse
from dsl.front.check import check

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.model"))


def test_roots_included_shared_inputs_once_and_no_recursion():
    reads = {"loss": ["yhat", "y"], "yhat": ["x", "w", "b"], "b": ["w"]}
    assert ancestors(["yhat"], lambda n: reads.get(n, ())) == {"yhat", "x", "w", "b"}
    assert ancestors([], lambda n: reads.get(n, ())) == set()
    chain = {f"z{i}": [f"z{i - 1}"] for i in range(1, 20_000)}  # deeper than Python recursion
    assert len(ancestors(["z19999"], lambda n: chain.get(n, ()))) == 20_000


def test_a_table_is_followed_as_its_lookup_is():
    """What a name reads may be given as a table (every name in it, leaves reading nothing)."""
    reads = {"loss": ("yhat", "y"), "yhat": ("x", "w", "b"), "b": ("w",), "x": (), "w": (),
             "y": ()}
    for root in reads:
        assert ancestors([root], reads) == ancestors([root], reads.__getitem__)
    assert ancestors(["yhat"], reads) == {"yhat", "x", "w", "b"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_checked_model_and_ir_agree_on_every_name(path):
    """Lowering adds inner nodes (`L1.1`) and rewrites nothing a user named: each name reads
    the same user-named values before and after."""
    text = path.read_text()
    checked = check(parse(text, str(path)))
    graph = lower(checked, text)
    for name in checked.nodes:
        in_ir = {n for n in ancestors([name], graph.reads) if "." not in n}
        assert ancestors([name], checked.reads) == in_ir, name
