"""Derivations (and models) rendered for people: text, LaTeX, JSON and notebook maths.

`compiler.chains` produces the chain rule as data; this module only prints it. Text follows the
way one writes it on paper: `·` for products, names instead of expanded expressions
(`s·(1 - s)`, not an `exp`), `ᵀ` for transposes, `Σ` for gradients summed back over broadcast
axes, and `G ↦ ...` for a factor that is a map applied to the incoming gradient.
"""
from __future__ import annotations

import re
from dataclasses import replace

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.str import StrPrinter

from compiler import structural
from compiler.chains import ADJOINT, Chains, Derivation, Factor, total_diff
from compiler.codegen import PositiveTermsFirst
from compiler.errors import UsageError
from compiler.functions import ComparisonBase, OpPrinter, print_condition
from compiler.ir import Graph, symbol
from compiler.shape import fmt_shape

_MUL = PRECEDENCE["Mul"]
_POW = PRECEDENCE["Pow"]


def adjoint_letter(names) -> str:
    """`G` for the incoming gradient, unless the model has a name `G` of its own."""
    return "Ḡ" if "G" in names else "G"


# ---- text ------------------------------------------------------------------------------------

def _split_mul(expr: sp.Expr) -> tuple[list[sp.Expr], list[sp.Expr]]:
    """A product's numerator and denominator factors, the incoming gradient last."""
    num, den = [], []
    for f in expr.as_ordered_factors():
        if f.is_Rational and not f.is_Integer:
            if f.p != 1:
                num.append(sp.Integer(f.p))
            den.append(sp.Integer(f.q))
        elif f.is_Pow and f.exp.is_Rational and f.exp.is_negative:
            den.append(f.base ** -f.exp)
        else:
            num.append(f)
    num.sort(key=lambda f: (ADJOINT in f.free_symbols, isinstance(f, structural.MatProd)))
    return num, den


class _Shared(OpPrinter, PositiveTermsFirst):
    """What the text and LaTeX printers print alike: sums, floats, our functions (`OpPrinter`)
    and the structural ops a chain shows by name (each printer writes them with its own
    `_call(name, expr)`)."""

    def _print_Float(self, expr):
        return f"{float(expr):g}"

    def _print_OpCallBase(self, expr):
        return self._call(expr.name, expr)


class TextPrinter(_Shared, StrPrinter):
    """sympy's str printer, with `·`, `^`, positive terms first and our array operations."""

    style = "text"

    def __init__(self, adjoint: str = "G"):
        super().__init__()
        self.adjoint = adjoint

    def _print_Symbol(self, expr):
        return expr.name

    def _print_Dummy(self, expr):
        return self.adjoint if expr == ADJOINT else expr.name

    def _factor(self, f, alone: bool) -> str:
        if isinstance(f, structural.MatProd) and not alone:
            return "(" + self._print(f) + ")"
        if isinstance(f, (structural.Total, structural.RowSum, structural.SumAlong)) and not alone:
            return self._sum(f, parens=True)  # Σ_axis1(Y), not Σ_axis1 Y, inside a product
        return self.parenthesize(f, _MUL)

    def _print_Mul(self, expr):
        if expr.could_extract_minus_sign():
            return "-" + self._print(-expr)
        num, den = _split_mul(expr)
        text = "·".join(self._factor(f, len(num) == 1) for f in num) or "1"
        if not den:
            return text
        if len(den) == 1:
            inner = self._print(den[0])
            return f"{text} / {inner}" if not (den[0].is_Add or den[0].is_Mul) else \
                f"{text} / ({inner})"
        return f"{text} / ({'·'.join(self.parenthesize(f, _MUL) for f in den)})"

    def _print_Pow(self, expr, rational=False):
        base, e = expr.args
        if e == sp.S.Half:
            return f"sqrt({self._print(base)})"
        if e.is_Rational and e.is_negative:  # a sum or product below the bar in brackets, as
            den = base ** -e  # `_print_Mul` writes it: 1 / (a·x + 1), not 1 / a·x + 1
            inner = self._print(den)
            return f"1 / ({inner})" if den.is_Add or den.is_Mul else f"1 / {inner}"
        b = self.parenthesize(base, _POW + 1)
        x = self._print(e)
        x = x if e.is_Atom and not e.could_extract_minus_sign() else f"({x})"
        return f"{b}^{x}"

    def _print_Pi(self, expr):
        return "pi"

    def _print_Exp1(self, expr):
        return "e"

    def _print_Heaviside(self, expr):
        x = self._print(expr.args[0])
        h0 = expr.args[1] if len(expr.args) > 1 else sp.S.Half
        if h0 == 0:
            return f"[{x} > 0]"
        if h0 == 1:
            return f"[{x} ≥ 0]"
        return f"step({x})"

    def _print_ComparisonBase(self, expr):
        return f"[{print_condition(self, expr)}]"

    # array operations
    def _operand(self, e) -> str:
        return self.parenthesize(e, _MUL)

    def _print_MatProd(self, expr):
        return "·".join(self._operand(a) for a in expr.args)

    def _print_Ones(self, expr):
        return "𝟙"

    def _print_Tr(self, expr):
        a = expr.args[0]
        inner = self._print(a)
        return f"{inner}ᵀ" if a.is_Atom or isinstance(a, sp.Function) else f"({inner})ᵀ"

    def _sum(self, expr, parens: bool = False) -> str:
        sign = {structural.Total: "Σ", structural.RowSum: "Σ_rows"}.get(expr.func) or \
            f"Σ_axis{expr.args[1]}"
        e = expr.args[0]
        inner = self._print(e)
        return f"{sign} {inner}" if e.is_Atom and not parens else f"{sign}({inner})"

    def _print_Total(self, expr):
        return self._sum(expr)

    def _print_RowSum(self, expr):
        return self._sum(expr)

    def _print_SumAlong(self, expr):
        return self._sum(expr)

    def _print_Repeat(self, expr):
        return f"repeat({self._print(expr.args[0])}, axis={expr.args[1]})"

    def _print_Part(self, expr):
        return f"{self.parenthesize(expr.args[0], _POW + 1)}[{part_text(expr)}]"

    def _print_Scatter(self, expr):
        return f"scatter({self._print(expr.args[0])}, [{part_text(expr)}])"

    def _call(self, name, expr):
        axis = f", axis={expr.args[1]}" if len(expr.args) > 1 else ""
        return f"{name}({self._print(expr.args[0])}{axis})"



def part_text(expr) -> str:
    """The subscript of a `Part` or `Scatter` as the model writes it: `:, 0` or `:, 1:3`."""
    _, start, stop, ndim, keep = expr.args
    last = f"{start}:{stop}" if keep else f"{start}"
    return ", ".join([":"] * (int(ndim) - 1) + [last])


# ---- LaTeX -----------------------------------------------------------------------------------

_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
          "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi",
          "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Phi", "Psi", "Omega"}


def latex_name(name: str) -> str:
    """`k1` as k_{1}, `loss` upright, `sigma` as σ; anything else upright and escaped."""
    m = re.fullmatch(r"([A-Za-z]+)(\d*)", name)
    if m is None:
        return r"\mathrm{" + name.replace("_", r"\_").replace(".", r".") + "}"
    base, digits = m.groups()
    if base in _GREEK:
        base = "\\" + base
    elif len(base) > 1:
        base = r"\mathrm{" + base + "}"
    return base + (f"_{{{digits}}}" if digits else "")


class LatexMaths(_Shared, LatexPrinter):
    """sympy's LaTeX printer with our names, `\\cdot`, and our array operations."""

    style = "latex"

    def __init__(self, adjoint: str = "G"):
        super().__init__({"mul_symbol": "dot"})
        self.adjoint = adjoint

    def _print_Symbol(self, expr, style="plain"):
        return latex_name(expr.name)

    def _print_Dummy(self, expr):
        return (r"\bar{G}" if self.adjoint != "G" else "G") if expr == ADJOINT else expr.name

    def _print_Mul(self, expr):
        if expr.could_extract_minus_sign():
            return "- " + self.parenthesize(-expr, _MUL)
        num, den = _split_mul(expr)

        def one(f, alone):
            if isinstance(f, structural.MatProd) and not alone:
                return r"\left(" + self._print(f) + r"\right)"
            return self.parenthesize(f, _MUL)

        top = r" \cdot ".join(one(f, len(num) == 1) for f in num) or "1"
        if not den:
            return top
        bottom = r" \cdot ".join(self.parenthesize(f, _MUL) for f in den)
        return rf"\frac{{{top}}}{{{bottom}}}"

    def _print_Heaviside(self, expr, exp=None):
        x = self._print(expr.args[0])
        h0 = expr.args[1] if len(expr.args) > 1 else sp.S.Half
        if h0 == 0:
            return rf"\left[{x} > 0\right]"
        if h0 == 1:
            return rf"\left[{x} \geq 0\right]"
        return rf"\operatorname{{step}}\left({x}\right)"

    def _print_ComparisonBase(self, expr, exp=None):
        return rf"\left[{print_condition(self, expr)}\right]"

    def _print_MatProd(self, expr):
        return r" \cdot ".join(self.parenthesize(a, _MUL) for a in expr.args)

    def _print_Ones(self, expr):
        return r"\mathbf{1}"

    def _print_Tr(self, expr):
        a = expr.args[0]
        inner = self._print(a)
        if a.is_Atom or isinstance(a, sp.Function):
            return f"{{{inner}}}^{{\\top}}"
        return rf"\left({inner}\right)^{{\top}}"

    def _sum(self, sub, e):
        inner = self._print(e)
        body = inner if e.is_Atom else rf"\left({inner}\right)"
        return rf"\sum{sub} {body}"

    def _print_Total(self, expr):
        return self._sum("", expr.args[0])

    def _print_RowSum(self, expr):
        return self._sum(r"_{\text{rows}}", expr.args[0])

    def _print_SumAlong(self, expr):
        return self._sum(rf"_{{\text{{axis }}{expr.args[1]}}}", expr.args[0])

    def _print_Repeat(self, expr):
        inner = self._print(expr.args[0])
        return rf"\operatorname{{repeat}}_{{{expr.args[1]}}}\left({inner}\right)"

    def _print_Part(self, expr):
        return rf"{self.parenthesize(expr.args[0], _POW + 1)}_{{[{part_text(expr)}]}}"

    def _print_Scatter(self, expr):
        inner = self._print(expr.args[0])
        return rf"\operatorname{{scatter}}_{{[{part_text(expr)}]}}\left({inner}\right)"

    def _call(self, name, expr):
        sub = f"_{{{expr.args[1]}}}" if len(expr.args) > 1 else ""
        return rf"\operatorname{{{name}}}{sub}\left({self._print(expr.args[0])}\right)"



# ---- derivations -----------------------------------------------------------------------------

def partial(of: str, wrt: str) -> str:
    return f"∂{of}/∂{wrt}"


def total(of: str, wrt: str) -> str:
    return f"d{of}/d{wrt}"


def latex_partial(of: str, wrt: str) -> str:
    return rf"\frac{{\partial {latex_name(of)}}}{{\partial {latex_name(wrt)}}}"


def latex_total(of: str, wrt: str) -> str:
    return rf"\frac{{d {latex_name(of)}}}{{d {latex_name(wrt)}}}"


def _count(n: int) -> str:
    digits = str(n)
    return digits if len(digits) <= 9 else f"about 10^{len(digits) - 1}"


def _direct(d: Derivation) -> bool:
    """Is one of several paths the objective's own local derivative with respect to wrt?"""
    return len(d.paths) > 1 and any(len(p) == 1 for p in d.paths)


class Explanation:
    """One or more derivations of a model's objective, printable as text (`str`), LaTeX
    (`.latex`), JSON (`.to_json()`) and, in a notebook, as maths."""

    def __init__(self, derivations: list[Derivation], expand: bool = False, adjoint: str = "G",
                 steps: bool = False):
        self.derivations = derivations
        self.steps = steps  # a statement on the way compares: say that its derivative is 0
        self.expand = expand
        self.adjoint = adjoint
        self._text = TextPrinter(adjoint)
        self._latex = LatexMaths(adjoint)

    def __iter__(self):
        return iter(self.derivations)

    def __len__(self) -> int:
        return len(self.derivations)

    def __getitem__(self, k) -> Derivation:
        return self.derivations[k]

    # pieces

    def rhs(self, f: Factor) -> tuple[str, str]:
        """(`=` or `:`, the right-hand side) of a factor's line."""
        if f.expr is not None:
            return "=", self._text.doprint(f.expr)
        return ":", f"{self.adjoint} ↦ {self._text.doprint(f.map)}"

    def latex_rhs(self, f: Factor) -> tuple[str, str]:
        if f.expr is not None:
            return "=", self._latex.doprint(f.expr)
        return ":", rf"{self._latex.doprint(ADJOINT)} \mapsto {self._latex.doprint(f.map)}"

    # text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    @property
    def text(self) -> str:
        text = "\n\n".join(self._one_text(d) for d in self.derivations)
        if "𝟙" in text:
            text += "\n\n  (𝟙: an array of ones, a scalar gradient spread over a shape)"
        if self.steps:
            text += ("\n\n  ([a < b]: 1 where the comparison holds, else 0; a comparison is a step,"
                     " so its derivative is 0)")
        return text

    def _one_text(self, d: Derivation) -> str:
        head = partial(d.objective, d.wrt)
        if self.expand:
            return f"{head} = {self._text.doprint(d.expanded)}"
        if d.wrt == d.objective:
            return f"{head} = 1"
        if d.n_paths == 0:
            return f"{head} = 0    ({d.objective} does not depend on {d.wrt})"
        if len(d.paths) == 1 and len(d.paths[0]) == 1:
            sep, rhs = self.rhs(d.paths[0][0])
            return f"{head} {sep} {rhs}"
        lines = []
        if d.paths:
            if _direct(d):  # the local ∂loss/∂w is one term of the whole: write it dloss/dw
                head = total(d.objective, d.wrt)
            products = [" · ".join(partial(f.node, f.input) for f in p) for p in d.paths]
            lines.append(f"{head} = {products[0]}")
            lines += [" " * len(head) + " + " + p for p in products[1:]]
        else:
            lines.append(f"{head}: {_count(d.n_paths)} paths, summed node by node "
                         f"(d{d.objective}/dz: the whole derivative of {d.objective} through z)")
            lines.append("")
            rows = [(total(d.objective, a.node),
                     " + ".join(self._term(d, f) for f in a.terms)) for a in d.adjoints]
            width = max(len(r[0]) for r in rows)
            lines += [f"  {lhs:<{width}} = {rhs}" for lhs, rhs in rows]
        lines.append("")
        width = max(len(partial(f.node, f.input)) for f in d.factors)
        for f in d.factors:
            sep, rhs = self.rhs(f)
            lines.append(f"  {partial(f.node, f.input):<{width}} {sep} {rhs}")
        return "\n".join(lines)

    def _term(self, d: Derivation, f: Factor) -> str:
        local = partial(f.node, f.input)
        return local if f.node == d.objective else f"{total(d.objective, f.node)} · {local}"

    # LaTeX

    @property
    def latex(self) -> str:
        blocks = [" \\\\\n".join(self._one_latex(d)) for d in self.derivations]
        return "\\begin{aligned}\n" + " \\\\[1ex]\n".join(blocks) + "\n\\end{aligned}"

    def _one_latex(self, d: Derivation) -> list[str]:
        head = latex_partial(d.objective, d.wrt)
        if self.expand:
            return [f"{head} &= {self._latex.doprint(d.expanded)}"]
        if d.wrt == d.objective:
            return [f"{head} &= 1"]
        if d.n_paths == 0:
            return [rf"{head} &= 0 \quad \text{{({d.objective} does not depend on {d.wrt})}}"]
        if len(d.paths) == 1 and len(d.paths[0]) == 1:
            sep, rhs = self.latex_rhs(d.paths[0][0])
            return [f"{head} &{sep} {rhs}"]
        rows = []
        if d.paths:
            if _direct(d):
                head = latex_total(d.objective, d.wrt)
            products = [r" \cdot ".join(latex_partial(f.node, f.input) for f in p)
                        for p in d.paths]
            rows.append(f"{head} &= {products[0]}")
            rows += [rf"&\quad + {p}" for p in products[1:]]
        else:
            rows.append(rf"{head} &: \text{{{_count(d.n_paths)} paths, summed node by node}}")
            for a in d.adjoints:
                terms = " + ".join(
                    latex_partial(f.node, f.input) if f.node == d.objective else
                    latex_total(d.objective, f.node) + r" \cdot " + latex_partial(f.node, f.input)
                    for f in a.terms)
                rows.append(f"{latex_total(d.objective, a.node)} &= {terms}")
        for f in d.factors:
            sep, rhs = self.latex_rhs(f)
            rows.append(f"{latex_partial(f.node, f.input)} &{sep} {rhs}")
        return rows

    def _repr_latex_(self) -> str:
        return "$$" + self.latex + "$$"

    def _repr_markdown_(self) -> str:
        return "$$\n" + self.latex + "\n$$"

    # JSON

    def to_json(self) -> dict:
        return {"objective": self.derivations[0].objective if self.derivations else None,
                "derivations": [self._one_json(d) for d in self.derivations]}

    def _factor_json(self, f: Factor) -> dict:
        sep, rhs = self.rhs(f)
        lsep, lrhs = self.latex_rhs(f)
        return {"of": f.node, "wrt": f.input, "name": partial(f.node, f.input),
                "kind": "map" if f.is_map else "expression", "text": rhs, "latex": lrhs}

    def _one_json(self, d: Derivation) -> dict:
        out = {"wrt": d.wrt, "text": self._one_text(d), "latex": " \\\\\n".join(self._one_latex(d)),
               "n_paths": d.n_paths, "summarised": d.summarised,
               "paths": [[partial(f.node, f.input) for f in p] for p in d.paths],
               "factors": [self._factor_json(f) for f in d.factors],
               "adjoints": [{"node": a.node, "terms": [partial(f.node, f.input) for f in a.terms]}
                            for a in d.adjoints]}
        if self.expand:
            out["expanded"] = {"text": self._text.doprint(d.expanded),
                               "latex": self._latex.doprint(d.expanded)}
        return out


def derive(g: Graph, wrt: str | list[str] | None = None, expand: bool = False) -> Explanation:
    """Derivations of the objective for `wrt` (a name, a list of names, or every param)."""
    c = Chains(g)
    names = list(g.params) if wrt is None else [wrt] if isinstance(wrt, str) else list(wrt)
    derivations = [c.derive(n, expand) for n in names]
    for d in derivations:
        if expand and d.expand_error:
            raise UsageError(f"cannot write {partial(d.objective, d.wrt)} as one expression: "
                             f"{d.expand_error}",
                             hint="expansion is for models of scalars (a value per data row, [N], "
                                  "is fine); without it the chain shows matrix factors as maps")
    stmts = {f.node for d in derivations for f in d.factors}
    steps = any(node.expr is not None and node.expr.has(ComparisonBase)
                for node in g.nodes.values() if node.stmt in stmts)
    return Explanation(derivations, expand, adjoint_letter(g.nodes), steps)


def propagation(g: Graph, name: str) -> tuple[str, str]:
    """How `report NAME` propagates the params' covariance Σ to a derived scalar f (the delta
    method), as text and LaTeX: the formula, then f's gradient by the chain rule."""
    params = list(g.params)
    grads = derive(replace(g, objective=name), params)
    text = [f"report {name}: by the delta method, with Σ the params' covariance after the fit",
            "", f"  σ²({name}) = ∇{name}ᵀ · Σ · ∇{name},  ∇{name} = ("
            + ", ".join(partial(name, p) for p in params) + ")"]
    latex = (rf"\sigma^2_{{{latex_name(name)}}} &= \sum_{{i,j}} "
             rf"\frac{{\partial {latex_name(name)}}}{{\partial p_i}}\,\Sigma_{{ij}}\,"
             rf"\frac{{\partial {latex_name(name)}}}{{\partial p_j}}, \quad p = ("
             + ", ".join(latex_name(p) for p in params) + ")")
    if all(g.nodes[p].shape == () for p in params) and len(params) <= 6:
        terms = []
        for i, a in enumerate(params):
            terms.append(f"({partial(name, a)})²·Var({a})")
            terms += [f"2·{partial(name, a)}·{partial(name, b)}·Cov({a}, {b})"
                      for b in params[i + 1:]]
        text.append(f"  σ²({name}) = " + " + ".join(terms))
    return ("\n".join(text) + "\n\n" + grads.text,
            "\\begin{aligned}\n" + latex + "\n\\end{aligned}\n" + grads.latex)


# ---- models ----------------------------------------------------------------------------------

def model_latex(g: Graph) -> str:
    """The model's statements as one aligned block of equations."""
    c = Chains(g)
    p = LatexMaths(adjoint_letter(g.nodes))
    rows = [f"{latex_name(s)} &= {p.doprint(c.value(s))}" for s in c.statements]
    if g.objective:
        rows.append(rf"&\text{{minimize }} {latex_name(g.objective)}")
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


def model_markdown(g: Graph) -> str:
    """A title, the inputs, params and constants with their shapes, then the equations."""
    parts = [f"**{g.file}**"]
    if g.objective:
        parts[0] += f" · minimize `{g.objective}`"
    if g.predict:
        parts[0] += f" · predict `{g.predict}`"
    leaves = [(n, node) for n, node in g.nodes.items() if node.is_leaf]
    if leaves:
        parts.append("| name | kind | shape |\n| --- | --- | --- |\n" + "\n".join(
            f"| `{n}` | {node.kind} | {fmt_shape(node.shape)} |" for n, node in leaves))
    parts.append("$$\n" + model_latex(g) + "\n$$")
    return "\n\n".join(parts)


# ---- Jacobian and Hessian --------------------------------------------------------------------

def latex_second(of: str, a: str, b: str) -> str:
    below = (rf"\partial {latex_name(a)}^{{2}}" if a == b else
             rf"\partial {latex_name(a)} \, \partial {latex_name(b)}")
    return rf"\frac{{\partial^{{2}} {latex_name(of)}}}{{{below}}}"


def second(of: str, a: str, b: str) -> str:
    return f"∂²{of}/∂{a}²" if a == b else f"∂²{of}/∂{a}∂{b}"


class Entries:
    """`dsl derive --jacobian` / `--hessian`: a heading and one written-out derivative per
    line, printable as text, LaTeX and JSON like an Explanation."""

    def __init__(self, heading: list[tuple[str, str]], rows: list[tuple[str, str, sp.Expr]],
                 adjoint: str = "G"):
        self.heading = heading  # (text, latex) lines that say what is derived
        self.rows = rows  # (text label, latex label, expression)
        self._text = TextPrinter(adjoint)
        self._latex = LatexMaths(adjoint)

    @property
    def text(self) -> str:
        width = max(len(label) for label, _, _ in self.rows)
        lines = [t for t, _ in self.heading] + [""]
        lines += [f"{label:<{width}} = {self._text.doprint(e)}" for label, _, e in self.rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text

    @property
    def latex(self) -> str:
        rows = [t for _, t in self.heading]
        rows += [f"{label} &= {self._latex.doprint(e)}" for _, label, e in self.rows]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def to_json(self) -> dict:
        return {"heading": [t for t, _ in self.heading],
                "entries": [{"name": label, "text": self._text.doprint(e),
                             "latex": self._latex.doprint(e)} for label, _, e in self.rows]}


def _wanted(g: Graph, wrt) -> list[str]:
    names = list(g.params) if wrt is None else [wrt] if isinstance(wrt, str) else list(wrt)
    for n in names:
        if n not in g.params:
            raise UsageError(f"`{n}` is not a param of {g.file}",
                             hint="params: " + (", ".join(g.params) or "none"))
    return names


def _residual_name(g: Graph, ls) -> str:
    if ls.residual.is_Symbol:
        return ls.residual.name
    return next(n for n in ("r", "res", "residual", "r_") if n not in g.nodes)


def _reduction(ls, r: sp.Symbol) -> sp.Expr:
    """The objective as the reduction of r² it is: `mean(r^2)`, `0.5·sum(r^2)`."""
    agg = (structural.MeanOf if ls.kind == "mean" else structural.SumOf)(r**2)
    return agg if ls.factor == 1 else sp.Float(ls.factor) * agg


def _tidy(e: sp.Expr) -> sp.Expr:
    """Common factors out, and the mean of a number is that number."""
    e = e.replace(lambda x: isinstance(x, structural.MeanOf) and x.args[0].is_Number,
                  lambda x: x.args[0])
    return sp.factor_terms(e)


def jacobian(g: Graph, wrt=None) -> Entries:
    """∂r/∂p for the residual r of a least-squares objective, written out for each param."""
    from compiler.leastsq import least_squares
    if g.objective is None:
        raise UsageError("the model has no `minimize` statement, so there is nothing to derive",
                         hint="add `minimize NAME` naming a scalar node")
    ls = least_squares(g)
    if ls is None:
        raise UsageError(f"`{g.objective}` is not a sum or mean of squares, so it has no "
                         "residuals and no Jacobian",
                         hint="write it as `sum(r^2)` or `mean((f - y)^2)`; --hessian works for "
                              "any objective")
    c = Chains(g)
    r = _residual_name(g, ls)
    text, latex = TextPrinter(), LatexMaths()
    whole = _reduction(ls, sp.Symbol(r, real=True))
    head, head_latex = (f"{g.objective} = {text.doprint(whole)}",
                        f"{latex_name(g.objective)} &= {latex.doprint(whole)}")
    if not ls.residual.is_Symbol:
        head += f", {r} = {text.doprint(ls.residual)}"
        head_latex += rf", \quad {latex_name(r)} = {latex.doprint(ls.residual)}"
    heading = [(head, head_latex)]
    expr = c.expanded(ls.residual, f"the Jacobian of {r}")
    rows = [(partial(r, p), latex_partial(r, p), _tidy(total_diff(expr, symbol(p))))
            for p in _wanted(g, wrt)]
    return Entries(heading, rows, adjoint_letter(g.nodes))


def hessian(g: Graph, wrt=None) -> Entries:
    """∂²objective/∂a∂b for every pair of params (each pair once), written out."""
    if g.objective is None:
        raise UsageError("the model has no `minimize` statement, so there is nothing to derive",
                         hint="add `minimize NAME` naming a scalar node")
    c = Chains(g)
    obj = g.objective
    expr = c.expanded(symbol(obj), f"the Hessian of {obj}")
    names = _wanted(g, wrt)
    rows = []
    for i, a in enumerate(names):
        first = total_diff(expr, symbol(a))
        for b in names[i:]:
            rows.append((second(obj, a, b), latex_second(obj, a, b),
                         _tidy(total_diff(first, symbol(b)))))
    heading = [(f"{obj} = {TextPrinter().doprint(expr)}",
                f"{latex_name(obj)} &= {LatexMaths().doprint(expr)}")]
    return Entries(heading, rows, adjoint_letter(g.nodes))
