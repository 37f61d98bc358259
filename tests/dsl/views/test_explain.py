"""dsl.views.explain and dsl.views.graphview: derivations and graphs as text, LaTeX, JSON, DOT and notebook
maths; golden files for the examples (DSL_UPDATE_GOLDEN=1 rewrites them)."""
import json
import pathlib
import shutil
import subprocess

import pytest
import sympy as sp

import dsl
from compiler.errors import UsageError
from compiler.functions import sigmoid
from compiler.ir import symbol
from dsl.views import explain, graphview
from dsl.training.runtime import compile_file
from tests.golden_util import compare
from tests.gradcheck import load_model

ROOT = pathlib.Path(__file__).resolve().parents[3]
EXAMPLES = ["seed_graph", "boston_mlp", "boston_rm"]

SEED_K1 = """\
∂loss/∂k1 = ∂loss/∂L2 · ∂L2/∂s · ∂s/∂L1 · ∂L1/∂k1

  ∂loss/∂L2 = 2·(L2 - y)
  ∂L2/∂s    = k2
  ∂s/∂L1    = s·(1 - s)
  ∂L1/∂k1   = x"""


@pytest.fixture
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def graph(name):
    return compile_file(f"examples/{name}.model", use_cache=False).graph


def test_seed_k1_is_the_contract(at_root):
    assert str(explain.derive(graph("seed_graph"), "k1")) == SEED_K1


@pytest.mark.parametrize("example", EXAMPLES)
def test_derivations_are_golden(example, at_root):
    g = graph(example)
    compare(f"good/{example}.derive.txt", explain.derive(g).text + "\n")
    compare(f"good/{example}.derive.tex", explain.derive(g).latex + "\n")


@pytest.mark.parametrize("example", ["seed_graph", "boston_rm"])
def test_expanded_derivations_are_golden(example, at_root):
    compare(f"good/{example}.expand.txt", explain.derive(graph(example), expand=True).text + "\n")


def test_expand_prints_the_tutorials_gradient(at_root):
    text = explain.derive(graph("boston_rm"), expand=True).text
    assert text.splitlines() == ["∂loss/∂k = mean(2·x·(b + k·x - y))", "",
                                 "∂loss/∂b = mean(2·(b + k·x - y))"]


def test_expand_refuses_matrices_clearly(at_root):
    with pytest.raises(UsageError) as e:
        explain.derive(graph("boston_mlp"), "W1", expand=True)
    assert "one expression" in e.value.message and "[N, 13]" in e.value.message


@pytest.mark.parametrize("example", ["seed_graph", "boston_mlp"])
def test_graphs_are_golden(example, at_root):
    g = graph(example)
    compare(f"good/{example}.dot", graphview.to_dot(g))
    compare(f"good/{example}.derivatives.dot", graphview.to_dot(g, derivatives=True))
    compare(f"good/{example}.graph.txt", graphview.to_text(g))
    compare(f"good/{example}.derivatives.txt", graphview.to_text(g, derivatives=True))


def test_a_node_feeding_two_others_sums_both_paths(tmp_path):
    m = load_model(tmp_path, "input x\nparam w = 0.5\na = w * x\nb = sigmoid(a)\nc = a^2\n"
                             "loss = b + c\nminimize loss\n")
    assert str(m.derive("w")) == """\
∂loss/∂w = ∂loss/∂b · ∂b/∂a · ∂a/∂w
         + ∂loss/∂c · ∂c/∂a · ∂a/∂w

  ∂loss/∂b = 1
  ∂b/∂a    = b·(1 - b)
  ∂a/∂w    = x
  ∂loss/∂c = 1
  ∂c/∂a    = 2·a"""
    x, w = symbol("x"), symbol("w")
    hand = sp.diff(1 / (1 + sp.exp(-w * x)) + (w * x) ** 2, w)
    got = m.derive("w", expand=True)[0].expanded
    point = {x: 0.7, w: -0.4}
    logistic = lambda a: 1 / (1 + sp.exp(-a))  # noqa: E731
    assert float(got.replace(sigmoid, logistic).subs(point)) == pytest.approx(
        float(hand.subs(point)))


def test_direct_and_indirect_paths_write_the_whole_as_d(tmp_path):
    m = load_model(tmp_path, "input x\nparam w = 0.5\na = w * x\nloss = a^2 + w^2\n"
                             "minimize loss\n")
    text = str(m.derive("w"))
    assert text.splitlines()[:2] == ["dloss/dw = ∂loss/∂w",
                                     "         + ∂loss/∂a · ∂a/∂w"]


def test_many_paths_show_the_adjoint_recurrence(tmp_path):
    lines = ["input x", "param w = 0.5", "h0 = w * x"]
    for i in range(1, 5):
        lines += [f"a{i} = sin(h{i - 1})", f"b{i} = cos(h{i - 1})", f"h{i} = a{i} * b{i}"]
    m = load_model(tmp_path, "\n".join(lines + ["loss = h4^2", "minimize loss", ""]))
    text = str(m.derive("w"))
    assert text.startswith("∂loss/∂w: 16 paths, summed node by node")
    assert "  dloss/dh2 = dloss/da3 · ∂a3/∂h2 + dloss/db3 · ∂b3/∂h2" in text
    assert "  dloss/dw  = dloss/dh0 · ∂h0/∂w" in text
    assert "  ∂b3/∂h2   = -sin(h2)" in text
    assert "· ∂" not in text.splitlines()[0]  # no endless list of products
    assert r"\text{16 paths, summed node by node}" in m.derive("w").latex


def test_zero_and_self(tmp_path):
    m = load_model(tmp_path, "input x\nparam w = 1\nparam u = 2\nv = u * 3\nloss = w * x\n"
                             "minimize loss\npredict v\n")
    assert str(m.derive("u")) == "∂loss/∂u = 0    (loss does not depend on u)"
    assert str(m.derive("loss")) == "∂loss/∂loss = 1"
    assert str(m.derive("x")) == "∂loss/∂x = w"


def test_json_holds_paths_factors_and_adjoints(at_root):
    out = explain.derive(graph("boston_mlp"), "W1").to_json()
    json.dumps(out, ensure_ascii=False)
    d = out["derivations"][0]
    assert out["objective"] == "loss" and d["wrt"] == "W1" and d["n_paths"] == 1
    assert d["paths"] == [["∂loss/∂yhat", "∂yhat/∂h", "∂h/∂L1", "∂L1/∂W1"]]
    kinds = {f["name"]: (f["kind"], f["text"]) for f in d["factors"]}
    assert kinds["∂L1/∂W1"] == ("map", "G ↦ Xᵀ·G")
    assert kinds["∂yhat/∂h"] == ("map", "G ↦ G·W2ᵀ")
    assert kinds["∂h/∂L1"] == ("expression", "h·(1 - h)")
    assert [a["node"] for a in d["adjoints"]] == ["yhat", "h", "L1", "W1"]


def test_model_and_derivation_display_as_maths_in_a_notebook(at_root):
    m = dsl.load("examples/seed_graph.model")
    d = m.derive("k1")
    assert str(d) == SEED_K1
    assert d.latex.startswith("\\begin{aligned}") and d.latex.endswith("\\end{aligned}")
    assert r"\frac{\partial s}{\partial L_{1}} &= s \cdot \left(1 - s\right)" in d.latex
    assert d._repr_latex_().startswith("$$") and d._repr_latex_().endswith("$$")
    assert "$$" in d._repr_markdown_()
    md = m._repr_markdown_()
    assert "| `k1` | param | scalar |" in md and r"s &= \sigma\left(L_{1}\right)" in md
    assert m._repr_latex_().startswith("$$\\begin{aligned}")
    every = m.derive()
    assert [x.wrt for x in every] == ["k1", "b1", "k2", "b2"]


def test_latex_names():
    assert explain.latex_name("k1") == "k_{1}"
    assert explain.latex_name("loss") == r"\mathrm{loss}"
    assert explain.latex_name("sigma2") == r"\sigma_{2}"
    assert explain.latex_name("y_hat") == r"\mathrm{y\_hat}"


def test_a_model_name_G_does_not_collide_with_the_gradient(tmp_path):
    m = load_model(tmp_path, "input X[N, 3]\nparam G[3, 2] ~ normal(0, 1)\nz = X @ G\n"
                             "loss = mean(z^2)\nminimize loss\n")
    assert "∂z/∂G    : Ḡ ↦ Xᵀ·Ḡ" in str(m.derive("G"))


def test_svg_without_graphviz_is_a_clear_error(at_root, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UsageError) as e:
        graphview.render(graph("seed_graph"), "svg")
    assert "graphviz" in e.value.message and "--format dot" in e.value.hint


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")
def test_dot_draws_the_graphs(at_root):
    for name in ("seed_graph", "boston_mlp"):
        for derivatives in (False, True):
            g = graph(name)
            run = subprocess.run(["dot", "-Tsvg"], input=graphview.to_dot(g, derivatives).encode(),
                                 capture_output=True, check=False)
            assert run.returncode == 0, run.stderr
    assert graphview.render(graph("seed_graph"), "svg").lstrip().startswith("<?xml")


def test_a_hundred_node_graph_is_drawn_top_to_bottom(tmp_path):
    lines = ["input x[N, 4]"]
    prev, d = "x", 4
    for i in range(1, 21):
        lines += [f"param W{i}[{d}, 6] ~ normal(0, 1)", f"param c{i}[6] = 0",
                  f"z{i} = {prev} @ W{i} + c{i}", f"h{i} = tanh(z{i})"]
        prev, d = f"h{i}", 6
    m = load_model(tmp_path, "\n".join(lines + [f"loss = mean({prev}^2)", "minimize loss", ""]))
    assert len(m.graph.nodes) >= 100
    dot = graphview.to_dot(m.graph, derivatives=True)
    assert "rankdir=TB" in dot and dot.count(" -> ") == sum(
        len(set(n.inputs)) for n in m.graph.nodes.values())
    text = graphview.to_text(m.graph)
    assert len(text.splitlines()) == 1 + len(m.graph.nodes) + sum(
        len(set(n.inputs)) for n in m.graph.nodes.values())


def test_graph_edges_of_an_input_used_twice_carry_both_shares(tmp_path):
    m = load_model(tmp_path, "input u[3]\nparam w = 1\nq = u @ u\nloss = w * q\nminimize loss\n")
    assert "<- u     ∂q/∂u = 2·u" in graphview.to_text(m.graph, derivatives=True)
    assert str(m.derive("u")).splitlines() == [
        "∂loss/∂u = ∂loss/∂q · ∂q/∂u", "", "  ∂loss/∂q = w", "  ∂q/∂u    = 2·u"]


# ---- comparisons, where, clip, index and slice -------------------------------------------------

def test_derive_states_that_a_comparison_has_zero_derivative(tmp_path):
    m = load_model(tmp_path, "input x[N]\ninput y[N]\nparam a = 0.5\nb = x > a\n"
                             "loss = mean((b - y)^2) + a^2\nminimize loss\n")
    text = explain.derive(m.graph, "a").text
    assert "∂b/∂a    : G ↦ 0" in text
    assert "a comparison is a step, so its derivative is 0" in text
    where = load_model(tmp_path, "input x[N]\nparam a = 1\nloss = mean(where(x > a, a * x, clip(x, 0, a)))\n"
                                 "minimize loss\n", name="where")
    e = explain.derive(where.graph, "a")
    # clip's hi gets the gradient where x > hi (if lo <= hi), and where lo > hi
    assert "∂loss/∂a = mean(where(x > a, x, [a < 0] + [a < x]·[0 ≤ a]))" in e.text
    assert r"\begin{cases} x & \text{if } x > a \\ " in e.latex


def test_derive_and_graph_show_a_slice_and_its_scatter(tmp_path):
    m = load_model(tmp_path, "param W[3, 4] ~ normal(0, 1)\ninput X[N, 3]\nH = X @ W\n"
                             "loss = mean(H[:, 0] * H[:, -1]) + sum(H[:, 1:3])\nminimize loss\n")
    text = explain.derive(m.graph, "H").text
    assert "scatter(" in text and "[:, 0]" in text and "[:, 1:3]" in text
    assert "H[:, 3]" in text  # a negative index shown from the start
    assert r"\operatorname{scatter}_{[:, 1:3]}" in explain.derive(m.graph, "H").latex
    assert "H[:, 1:3]" in graphview.to_dot(m.graph)


def test_a_function_from_the_registry_keeps_its_power_in_latex():
    """A function printed by its `compiler.ops` template, raised to a power, keeps the power
    (the old `_print_sigmoid` dropped it: σ(x)² printed as σ(x))."""
    from compiler.functions import maximum
    x, y = symbol("x"), symbol("y")
    latex = explain.LatexMaths()
    assert latex.doprint(sigmoid(x) ** 2) == r"\sigma\left(x\right)^{2}"
    assert latex.doprint(maximum(x, y) ** 3) == r"\max\left(x, y\right)^{3}"
    assert explain.TextPrinter().doprint(maximum(x, y) ** 2) == "max(x, y)^2"


@pytest.mark.parametrize("den, shown", [(symbol("a") * symbol("x") + 1, "1 / (a·x + 1)"),
                                        (symbol("a") + 1, "1 / (a + 1)"),
                                        (symbol("a"), "1 / a"),
                                        ((symbol("a") + 1) ** 2, "1 / (a + 1)^2"),
                                        (sp.sqrt(symbol("a") + 1), "1 / sqrt(a + 1)")])
def test_a_sum_below_the_bar_is_in_brackets(den, shown):
    """`log1p(a*x)`'s derivative beside other terms printed `... + 1 / a·x + 1`: one over a sum
    (a term of a sum, where `_print_Mul` is not asked) lost its brackets."""
    printer = explain.TextPrinter()
    assert printer.doprint(sp.Pow(den, -1, evaluate=False) if den.is_Pow else 1 / den) == shown
    assert printer.doprint(symbol("b") + 1 / den) == f"b + {shown}"


def test_log1p_beside_other_terms_derives_with_its_brackets(tmp_path):
    m = load_model(tmp_path, "input x\nparam a = 1\nparam b = 1\n"
                             "h = log1p(a*x) + expm1(b*x) + log10(1 + a^2*x^2)\nminimize h\n")
    assert "1 / (a·x + 1)" in str(m.derive("a"))
