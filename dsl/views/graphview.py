"""The computation graph drawn: Graphviz DOT, SVG through graphviz's `dot`, or an indented text
listing in topological order.

Every IR node is drawn (a statement's inner nodes too, such as `L1.1 = X @ W1`), by kind: inputs
blue ellipses, params orange boxes, constants grey, elementwise nodes white ellipses and
structural operations (`@`, reductions, softmax, transpose) grey boxes; the objective has a double
border. With `derivatives`, each edge carries its local derivative (`x`, `s·(1 - s)`, or a map
such as `G ↦ Xᵀ·G`).
"""
from __future__ import annotations

import os
import shutil
import subprocess

from compiler.chains import edge_factor, node_value
from compiler.errors import DslError, UsageError
from compiler.ir import Graph, Node
from compiler.ops import BY_IR
from compiler.shape import fmt_shape
from compiler.structural import rule
from dsl.views.explain import Explanation, TextPrinter, adjoint_letter, partial

FORMATS = ("dot", "svg", "text")
MAX_LABEL = 48  # characters of an expression shown in a node or on an edge
WIDE = 30  # more nodes than this are drawn top to bottom, not left to right

_STYLE = {
    "input": 'shape=ellipse, style=filled, fillcolor="#cfe2ff", color="#3d6fb6"',
    "param": 'shape=box, style="rounded,filled", fillcolor="#ffe2b3", color="#c07a10"',
    "const": 'shape=box, style=filled, fillcolor="#e9ecef", color="#8a8f94"',
    "elementwise": 'shape=ellipse, style=filled, fillcolor="#ffffff", color="#444444"',
    "structural": 'shape=box, style=filled, fillcolor="#f1f1f1", color="#444444"',
}


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 1] + "…"


def definition(g: Graph, node: Node, printer: TextPrinter) -> str:
    """The right-hand side of an op node as maths (`k1·x + b1`, `X @ W1`, `mean(loss.1)`)."""
    if node.op in BY_IR:
        return rule(node.op).written(node)
    return printer.doprint(node_value(g, node))


class _Edges:
    """Local derivatives of the IR's edges, printed once each."""

    def __init__(self, g: Graph):
        self.g = g
        self.explain = Explanation([], adjoint=adjoint_letter(g.nodes))

    def label(self, name: str, inp: str) -> tuple[str, str, str]:
        """(`∂L1/∂k1`, `=`, `x`) or (`∂L1.1/∂W1`, `:`, `G ↦ Xᵀ·G`)."""
        f = edge_factor(self.g, name, inp)
        sep, rhs = self.explain.rhs(f)
        return partial(f.node, f.input), sep, rhs


def _edges(node: Node):
    """Each distinct input: an input used twice is one edge."""
    return list(dict.fromkeys(node.inputs))


# ---- DOT -------------------------------------------------------------------------------------

def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(g: Graph, derivatives: bool = False) -> str:
    printer = TextPrinter(adjoint_letter(g.nodes))
    edges = _Edges(g) if derivatives else None
    title = os.path.splitext(os.path.basename(g.file))[0] or "model"
    lines = [f"digraph {_q(title)} {{",
             f'  graph [rankdir={"LR" if len(g.nodes) <= WIDE else "TB"}, fontname="Helvetica", '
             'fontsize=12, nodesep=0.3, ranksep=0.45,'
             f' label={_q(_caption(g))}, labelloc=t];',
             '  node [fontname="Helvetica", fontsize=11, margin="0.08,0.04"];',
             '  edge [fontname="Helvetica", fontsize=9, color="#555555", arrowsize=0.7];']
    for name, node in g.nodes.items():
        if node.is_leaf:
            kind = node.kind
            label = [name, kind if node.kind != "const" else f"= {node.value:g}"]
        else:
            kind = "elementwise" if node.op == "elementwise" else "structural"
            label = [name, _short(definition(g, node, printer))]
        if node.shape:
            label.append(fmt_shape(node.shape))
        extra = ""
        if name == g.objective:
            extra = ", peripheries=2, penwidth=1.4"
        elif name == g.predict:
            extra = ", penwidth=2"
        lines.append(f"  {_q(name)} [label={_q(chr(10).join(label))}, {_STYLE[kind]}{extra}];")
    for name, node in g.nodes.items():
        for i in _edges(node):
            attrs = ""
            if edges is not None:
                attrs = f" [label={_q(_short(edges.label(name, i)[2]))}]"
            lines.append(f"  {_q(i)} -> {_q(name)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _caption(g: Graph) -> str:
    parts = [os.path.basename(g.file)]
    if g.objective:
        parts.append(f"minimize {g.objective}")
    if g.predict:
        parts.append(f"predict {g.predict}")
    return " · ".join(parts)


def to_svg(g: Graph, derivatives: bool = False) -> str:
    """The DOT drawn by graphviz's `dot`; a clear error when graphviz is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        raise UsageError("`--format svg` needs graphviz's `dot` program, which is not on PATH",
                         hint="install graphviz (apt-get install graphviz, brew install graphviz, "
                              "conda install graphviz), or print DOT with `--format dot` and "
                              "draw it elsewhere")
    try:
        run = subprocess.run([dot, "-Tsvg"], input=to_dot(g, derivatives).encode("utf-8"),
                             capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DslError(f"graphviz's `dot` failed: {e}") from None
    if run.returncode != 0:
        raise DslError("graphviz's `dot` failed: "
                       + run.stderr.decode("utf-8", "replace").strip())
    return run.stdout.decode("utf-8")


# ---- text ------------------------------------------------------------------------------------

def to_text(g: Graph, derivatives: bool = False) -> str:
    """Every node in topological order, each op node followed by its inputs, indented."""
    printer = TextPrinter(adjoint_letter(g.nodes))
    edges = _Edges(g) if derivatives else None
    counts = {k: len(g.of_kind(k)) for k in ("input", "param", "const", "op")}
    summary = ", ".join(f"{v} {k}{'s' if v != 1 else ''}" for k, v in counts.items() if v)
    lines = [f"# {_caption(g)}: {len(g.nodes)} nodes ({summary})"]
    width = max((len(n) for n in g.nodes), default=0)
    swidth = max((len(fmt_shape(n.shape)) for n in g.nodes.values()), default=0)
    for name, node in g.nodes.items():
        note = ("   (minimize)" if name == g.objective else
                "   (predict)" if name == g.predict else "")
        shape = fmt_shape(node.shape)
        if node.is_leaf:
            value = f"  = {node.value:g}" if node.kind == "const" else ""
            lines.append(f"{node.kind:<6} {name:<{width}}  {shape:<{swidth}}{value}{note}".rstrip())
            continue
        lines.append(f"{'node':<6} {name:<{width}}  {shape:<{swidth}}  = "
                     f"{definition(g, node, printer)}{note}")
        for i in _edges(node):
            if edges is None:
                lines.append(f"{'':<6}   <- {i}")
            else:
                lhs, sep, rhs = edges.label(name, i)
                lines.append(f"{'':<6}   <- {i:<{width}}  {lhs} {sep} {rhs}")
    return "\n".join(lines) + "\n"


def render(g: Graph, fmt: str = "dot", derivatives: bool = False) -> str:
    if fmt not in FORMATS:
        raise UsageError(f"unknown graph format `{fmt}`", hint="use " + ", ".join(FORMATS))
    return {"dot": to_dot, "svg": to_svg, "text": to_text}[fmt](g, derivatives)
