"""The calculus of the structural ops: one rule object per op of `compiler.ops.STRUCTURAL` (whose
entry names the rest: arity, axis, shape rule, helper, whether numpy returns a view).

Each rule keeps an op's forward and backward together, as micrograd keeps them: its numpy forward
(code generation), its vector-Jacobian product G ↦ ... both as a numpy template (code generation)
and as maths (a sympy expression over the array operations below, which `compiler.chains`
composes and `dsl.explain` prints), and its forward-mode tangents for the Jacobian and Hessian
(`compiler.second_order`). Each numpy template is tested against sympy on explicit matrices of
symbols (tests/compiler/test_structural.py), and the maths against numpy (test_chains.py).

Template fields: `{G}` the adjoint, `{a}`, `{b}` the inputs, `{y}` the node's value, `{k}` the
axis, `{n}` the reduced count, `{pad}` np.pad's widths that put a part back in its place.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import sympy as sp

from compiler.errors import InternalError
from compiler.ops import BY_IR
from compiler.shape import Shape


def size_symbol(name: str) -> sp.Symbol:
    """A size name (`N`) as a count; its assumptions keep it apart from a node called `N`."""
    return sp.Symbol(name, positive=True, integer=True)


def count(shape: Shape) -> sp.Expr:
    """How many elements a shape holds, with size names as symbols."""
    out = sp.S.One
    for d in shape:
        out *= size_symbol(d) if isinstance(d, str) else sp.Integer(d)
    return out


# ---- array operations, kept unevaluated so that they print as written ------------------------

class _ArrayOp(sp.Function):
    """An operation on whole arrays: never computed, only composed, substituted and printed
    (with a few identities, such as (Aᵀ)ᵀ = A, that keep the maths short)."""


class MatProd(_ArrayOp):
    """The matrix product `a @ b` (printed `a·b`); numeric factors move out."""

    nargs = 2

    @classmethod
    def eval(cls, a, b):
        ca, ra = a.as_coeff_Mul()
        cb, rb = b.as_coeff_Mul()
        if ca != 1 or cb != 1:
            return ca * cb * cls(ra, rb)
        return None


class Ones(_ArrayOp):
    """`(dims...)`: the array of ones (printed 𝟙): a scalar gradient broadcast to a shape, where
    the shape matters (it enters `@`, a transpose or a sum)."""


class Tr(_ArrayOp):
    """The transpose: (Aᵀ)ᵀ = A, (A·B)ᵀ = Bᵀ·Aᵀ, (c·A)ᵀ = c·Aᵀ for a number c."""

    nargs = 1

    @classmethod
    def eval(cls, a):
        if isinstance(a, Tr):
            return a.args[0]
        if isinstance(a, Ones):
            return Ones(*reversed(a.args))
        if isinstance(a, MatProd):
            return MatProd(cls(a.args[1]), cls(a.args[0]))
        c, rest = a.as_coeff_Mul()
        if c != 1:
            return c * cls(rest)
        return None


class Total(_ArrayOp):
    """`(x, n)`: Σ over the n elements of x, a gradient summed back to a scalar."""

    nargs = 2


class RowSum(_ArrayOp):
    """`(x, rows)`: Σ over the rows (axis 0), a gradient summed back to a bias."""

    nargs = 2


class SumAlong(_ArrayOp):
    """Σ along one axis `(x, axis)`: a gradient summed back over a broadcast axis."""

    nargs = 2


class Repeat(_ArrayOp):
    """`(G, axis)`: a reduced gradient repeated along the axis the forward pass reduced."""

    nargs = 2


class OpCallBase(_ArrayOp):
    """`name(x)` or `name(x, axis)`: a structural op of the model, printed as it is written.
    (The name ends in `Base` so that sympy's printers find `_print_OpCallBase` for every
    subclass.)"""

    nargs = (1, 2)
    name = ""


class MeanOf(OpCallBase):
    name = "mean"


class SumOf(OpCallBase):
    name = "sum"


class LogSumExpOf(OpCallBase):
    name = "logsumexp"


class SoftmaxOf(OpCallBase):
    name = "softmax"


class Part(_ArrayOp):
    """`(x, start, stop, ndim, keep)`: `x[:, start]` (keep 0) or `x[:, start:stop]` (keep 1)."""

    nargs = 5


class Scatter(_ArrayOp):
    """`(G, start, stop, ndim, keep)`: G put back in the part of the last axis a `Part` took,
    zeros elsewhere."""

    nargs = 5


# ---- the rules -------------------------------------------------------------------------------

@dataclass(frozen=True)
class StructuralMap:
    """A map G ↦ ... as a numpy template (fields in the module's docstring)."""

    numpy: str
    needs_full_g: bool = True  # G must have the node's full shape (not a lazy broadcast)
    view: bool = False  # numpy's result is a view of G (shares its memory)
    # the static shape of the result: the input's, a scalar (a sum's G, broadcast lazily), or
    # the node's with the reduced axis put back as 1 (G repeated along it lazily)
    result: str = "input"  # input | scalar | expanded

    def shape(self, g, node, k: int) -> Shape:
        """The static shape of the result, before it is summed back to the input's."""
        if self.result == "scalar":
            return ()
        if self.result == "expanded":
            return tuple(node.shape[:node.axis]) + (1,) + tuple(node.shape[node.axis:])
        return tuple(g.nodes[node.inputs[k]].shape)


@dataclass
class Tangent:
    """What a rule needs to write a node's forward tangent `dv_h` (`compiler.second_order`):
    the values' and tangents' names (None: that input does not vary), and the count code."""

    g: object  # compiler.ir.Graph
    node: object  # compiler.ir.Node
    a: list[str]  # the inputs' values
    da: list[str | None]  # the inputs' tangents
    y: str  # the node's value
    count: Callable[[Shape], str]  # how many elements over some dims, as code (parenthesized)

    @property
    def nd(self) -> int:
        """ndim of the first input."""
        return len(self.g.nodes[self.node.inputs[0]].shape)

    @property
    def k(self) -> int | None:
        """The axis, normalised; None for all of them."""
        return None if self.node.axis is None else self.node.axis % max(self.nd, 1)

    def reduced(self) -> str:
        """The count a mean divides by."""
        src = self.g.nodes[self.node.inputs[0]].shape
        return self.count(src if self.k is None else (src[self.k],))


@dataclass
class AdjointTangent(Tangent):
    """What a rule needs to write the tangent of its contribution to input `index`'s adjoint
    (forward over reverse, for the Hessian): the adjoint G and its tangent dG."""

    index: int = 0
    dy: str | None = None  # the node's own tangent, when it varies
    G: str = ""  # the adjoint reaching the node, as code
    full_g: str = ""  # G broadcast to the node's shape
    dG: tuple[str, Shape] | None = None  # G's tangent and its static shape, if it has one
    full_dg: Callable[[], str] | None = None  # dG broadcast to the node's shape
    g_reads: set[str] = field(default_factory=set)  # the variables G's code reads

    @property
    def input_shape(self) -> Shape:
        return tuple(self.g.nodes[self.node.inputs[self.index]].shape)


class Rule:
    """One structural op's forward, its vector-Jacobian product (numpy and maths) and tangents."""

    maps: dict = {}  # numpy maps by whether the node has an axis
    tangent_reads_value = False  # its forward tangent reads the node's own value
    shaped_g = False  # the maths map needs G of the node's shape: a scalar G is written 𝟙·G

    def forward(self, g, node, a: list[str], count: Callable[[Shape], str]) -> str:
        """The node's value as numpy code over its inputs' values `a`."""
        raise NotImplementedError

    def scalar_map(self, node) -> StructuralMap | None:
        """A lazier map for a scalar G, if there is one."""
        return None

    def numpy_map(self, g, node, k: int) -> StructuralMap:
        key = node.axis is not None
        if key not in self.maps:
            raise InternalError(f"no derivative map for {node.op} (axis {node.axis})")
        return self.maps[key]

    def written(self, node) -> str:
        """The node as the model writes it, over its inputs' names: `mean(loss.1, axis=0)`."""
        axis = f", axis={node.axis}" if node.axis is not None else ""
        return f"{BY_IR[node.op].name}({node.inputs[0]}{axis})"

    def value(self, g, node, ins: list[sp.Expr]) -> sp.Expr:
        """The node's value as maths over its inputs' symbols `ins`."""
        raise NotImplementedError

    def maths_map(self, g, node, k: int, G: sp.Expr, operands: list[sp.Expr],
                  own: sp.Expr) -> sp.Expr:
        raise NotImplementedError

    def row_wise(self, node) -> bool:
        """Does it keep a model of scalars one (a value per data row, [N]), so that `derive
        --expand` can write the derivatives as one expression?"""
        return False

    def tangent(self, t: Tangent) -> str | None:
        """The forward tangent as code; None when it is zero."""
        raise NotImplementedError

    def adjoint_tangent(self, t: AdjointTangent) -> tuple[str, Shape] | None:
        """The tangent of the contribution to input t.index's adjoint, and its static shape;
        None when it is zero."""
        raise NotImplementedError

    def adjoint_tangent_reads(self, t: AdjointTangent) -> set[str]:
        """The values and tangents that tangent reads besides dG."""
        return set()


_LETTERS = {(0, 1): "k", (0, 2): "ik", (1, 1): "k", (1, 2): "kj"}


def _einsum(nd_a: int, nd_b: int, parts: tuple[str, str, str]) -> str:
    """An einsum spec of `@` for operands of these ndims: `parts` picks, per slot, `a`, `b` or
    `o` (the product), with `p` (the params' axis) appended where a slot is a tangent (`A`)."""
    a, b = _LETTERS[(0, nd_a)], _LETTERS[(1, nd_b)]
    o = a.replace("k", "") + b.replace("k", "")
    letters = {"a": a, "b": b, "o": o}
    spec = [letters[s.lower()] + ("p" if s.isupper() else "") for s in parts]
    return f"{spec[0]},{spec[1]}->{spec[2]}"


def _axes(axes) -> str:
    if isinstance(axes, int):
        return str(axes)
    return str(axes[0]) if len(axes) == 1 else str(tuple(axes))


def pad_widths(part: tuple[int, int], shape: Shape) -> str:
    """np.pad's widths that put a part [start, stop) of the last axis back in its place."""
    start, stop = part
    widths = ["(0, 0)"] * (len(shape) - 1) + [f"({start}, {shape[-1] - stop})"]
    return "(" + ", ".join(widths) + ("," if len(widths) == 1 else "") + ")"


class MatMul(Rule):
    shaped_g = True
    # (which input, ndim of the first input, ndim of the second) -> map. numpy's matmul rules.
    maps = {
        (0, 2, 2): StructuralMap("{G} @ {b}.T"),
        (1, 2, 2): StructuralMap("{a}.T @ {G}"),
        (0, 2, 1): StructuralMap("np.outer({G}, {b})"),
        (1, 2, 1): StructuralMap("{a}.T @ {G}"),
        (0, 1, 2): StructuralMap("{b} @ {G}"),
        (1, 1, 2): StructuralMap("np.outer({a}, {G})"),
        (0, 1, 1): StructuralMap("{G} * {b}"),
        (1, 1, 1): StructuralMap("{G} * {a}"),
    }

    def forward(self, g, node, a, count):
        return f"{a[0]} @ {a[1]}"

    def written(self, node):
        return " @ ".join(node.inputs)

    def numpy_map(self, g, node, k):
        na, nb = (len(g.nodes[i].shape) for i in node.inputs)
        return self.maps[(k, na, nb)]

    def value(self, g, node, ins):
        return MatProd(*ins)

    def maths_map(self, g, node, k, G, operands, own):
        a, b = operands
        na, nb = (len(g.nodes[i].shape) for i in node.inputs)
        if na == 1 and nb == 1:  # a dot product: G is a scalar
            return G * (b if k == 0 else a)
        if k == 0:
            return MatProd(b, G) if na == 1 else MatProd(G, Tr(b))
        return MatProd(Tr(a), G)

    def tangent(self, t):
        nd, nd_b = t.nd, len(t.g.nodes[t.node.inputs[1]].shape)
        a, da = t.a, t.da
        parts = []
        if da[0]:
            parts.append(f'np.einsum("{_einsum(nd, nd_b, ("A", "b", "O"))}", {da[0]}, {a[1]})')
        if da[1]:
            parts.append(f'np.einsum("{_einsum(nd, nd_b, ("a", "B", "O"))}", {a[0]}, {da[1]})')
        return " + ".join(parts)

    def adjoint_tangent(self, t):
        nd, nd_b = t.nd, len(t.g.nodes[t.node.inputs[1]].shape)
        a, other = t.a, t.da[1 - t.index]
        parts = []
        if t.index == 0:
            if t.dG is not None:
                parts.append(f'np.einsum("{_einsum(nd, nd_b, ("O", "b", "A"))}", '
                             f'{t.full_dg()}, {a[1]})')
            if other:
                parts.append(f'np.einsum("{_einsum(nd, nd_b, ("o", "B", "A"))}", '
                             f'{t.full_g}, {other})')
        else:
            if other:
                parts.append(f'np.einsum("{_einsum(nd, nd_b, ("A", "o", "B"))}", '
                             f'{other}, {t.full_g})')
            if t.dG is not None:
                parts.append(f'np.einsum("{_einsum(nd, nd_b, ("a", "O", "B"))}", '
                             f'{a[0]}, {t.full_dg()})')
        return (" + ".join(parts), t.input_shape) if parts else None

    def adjoint_tangent_reads(self, t):
        other = 1 - t.index
        reads = {t.a[other]} if t.dG is not None else set()
        return reads | (t.g_reads | {t.da[other]} if t.da[other] else set())


class SumOrMean(Rule):
    """sum and mean: linear, so the adjoint is G repeated (and divided by the count)."""

    def __init__(self, op: str):
        self.op = op
        mean = op == "mean"
        self.maps = {
            False: StructuralMap("{G} / {n}" if mean else "{G}", needs_full_g=False,
                                 view=not mean, result="scalar"),
            True: StructuralMap("np.expand_dims({G}, {k})" + (" / {n}" if mean else ""),
                                view=not mean, result="expanded"),
        }
        self.form = MeanOf if mean else SumOf

    def forward(self, g, node, a, count):
        code = f"np.sum({a[0]})" if node.axis is None else f"np.sum({a[0]}, axis={node.axis})"
        if self.op == "mean":
            src = g.nodes[node.inputs[0]].shape
            code = f"{code} / {count(src if node.axis is None else (src[node.axis],))}"
        return code

    def scalar_map(self, node):
        """A scalar G repeated along an axis is the same scalar: kept lazy."""
        return self.maps[False]

    def value(self, g, node, ins):
        return self.form(ins[0], *_axis(node))

    def row_wise(self, node):
        return node.axis in (None, 0)

    def maths_map(self, g, node, k, G, operands, own):
        out = G if node.axis is None else Repeat(G, sp.Integer(node.axis))
        if self.op == "mean":
            shape = g.nodes[node.inputs[0]].shape
            out = out / count(shape if node.axis is None else (shape[node.axis],))
        return out

    def tangent(self, t):
        axes = tuple(range(t.nd)) if t.k is None else t.k
        code = t.da[0] if axes == () else f"np.sum({t.da[0]}, axis={_axes(axes)})"
        return f"{code} / {t.reduced()}" if self.op == "mean" else code

    def adjoint_tangent(self, t):
        if t.dG is None:
            return None
        k, shape = t.k, tuple(t.node.shape)
        if k is None:
            code, out = t.dG
        else:
            code, out = f"np.expand_dims({t.full_dg()}, {k})", shape[:k] + (1,) + shape[k:]
        return (f"{code} / {t.reduced()}" if self.op == "mean" else code), out


class LogSumExp(Rule):
    tangent_reads_value = True
    maps = {
        False: StructuralMap("np.exp({a} - {y}) * {G}", needs_full_g=False),
        True: StructuralMap("np.exp({a} - np.expand_dims({y}, {k})) * np.expand_dims({G}, {k})"),
    }
    # log(softmax(x)) lowers to x - logsumexp(x, keepdims): G already has the kept shape
    keepdims = StructuralMap("np.exp({a} - {y}) * {G}", needs_full_g=False)

    def forward(self, g, node, a, count):
        return f"_logsumexp({a[0]}, axis={node.axis}, keepdims={node.keepdims})"

    def numpy_map(self, g, node, k):
        return self.keepdims if node.keepdims else super().numpy_map(g, node, k)

    def value(self, g, node, ins):
        return LogSumExpOf(ins[0], *_axis(node))

    def maths_map(self, g, node, k, G, operands, own):
        if node.axis is None:
            return SoftmaxOf(operands[0]) * G
        k_ = sp.Integer(node.axis)
        return SoftmaxOf(operands[0], k_) * (G if node.keepdims else Repeat(G, k_))

    def tangent(self, t):
        if t.nd == 0:
            return t.da[0]
        node, k, y = t.node, t.k, t.y
        ey = y if node.keepdims or k is None else f"np.expand_dims({y}, {k})"
        axes = tuple(range(t.nd)) if k is None else k
        keep = ", keepdims=True" if node.keepdims else ""
        return f"np.sum(np.exp({t.a[0]} - {ey})[..., None] * {t.da[0]}, axis={_axes(axes)}{keep})"

    def adjoint_tangent(self, t):
        """c = s·Gk, s = exp(a - y): dc = s·(dGk + Gk·(da - dy))."""
        if t.nd == 0:
            return t.dG
        k, y = t.k, t.y
        keep = t.node.keepdims or k is None
        s_ = f"np.exp({t.a[0]} - {y if keep else f'np.expand_dims({y}, {k})'})[..., None]"
        inner = []
        if t.dG is not None:
            inner.append(t.dG[0] if keep else f"np.expand_dims({t.full_dg()}, {k})")
        if t.da[0]:  # y varies exactly when a does
            gk = t.G if keep else f"np.expand_dims({t.full_g}, {k})"
            dyk = t.dy if keep else f"np.expand_dims({t.dy}, {k})"
            inner.append(f"np.expand_dims({gk}, -1)*({t.da[0]} - {dyk})")
        if not inner:
            return None
        return f"{s_}*({' + '.join(inner)})", t.input_shape

    def adjoint_tangent_reads(self, t):
        return {t.a[0], t.y} | (t.g_reads | {t.da[0], t.dy} if t.da[0] else set())


class Softmax(Rule):
    tangent_reads_value = True
    maps = {True: StructuralMap("{y} * ({G} - np.sum({G} * {y}, axis={k}, keepdims=True))",
                                needs_full_g=False)}

    def forward(self, g, node, a, count):
        return f"_softmax({a[0]}, axis={node.axis})"

    def value(self, g, node, ins):
        return SoftmaxOf(ins[0], *_axis(node))

    def maths_map(self, g, node, k, G, operands, own):
        k_ = sp.Integer(node.axis) if node.axis is not None else None
        shape = g.nodes[node.inputs[0]].shape
        along = SumAlong(G * own, k_) if k_ is not None else Total(G * own, count(shape))
        return own * (G - along)

    def tangent(self, t):
        if t.nd == 0:  # softmax of a scalar is 1
            return None
        y, da = t.y, t.da[0]
        return f"{y}[..., None] * ({da} - np.sum({y}[..., None] * {da}, axis={t.k}, keepdims=True))"

    def adjoint_tangent(self, t):
        """c = y·u, u = G - Σ_k G·y: dc = dy·u + y·(dG - Σ_k(dG·y + G·dy))."""
        if t.nd == 0:
            return None
        y, G, k = t.y, t.G, t.k
        parts, summed = [], []
        if t.dy:
            u = f"({G} - np.sum({G}*{y}, axis={k}, keepdims=True))"
            parts.append(f"{t.dy}*np.expand_dims({u}, -1)")
            summed.append(f"np.expand_dims({G}, -1)*{t.dy}")
        if t.dG is not None:
            summed.insert(0, f"{t.dG[0]}*{y}[..., None]")
        if not summed:
            return None
        du = f"np.sum({' + '.join(summed)}, axis={k}, keepdims=True)"
        du = f"{t.dG[0]} - {du}" if t.dG is not None else f"-{du}"
        parts.append(f"{y}[..., None]*({du})")
        return " + ".join(parts), tuple(t.node.shape)

    def adjoint_tangent_reads(self, t):
        return {t.y} | (t.g_reads | {t.dy} if t.dy else set())


class Transpose(Rule):
    shaped_g = True
    maps = {False: StructuralMap("{G}.T", view=True)}

    def forward(self, g, node, a, count):
        return f"np.transpose({a[0]})"

    def value(self, g, node, ins):
        return Tr(ins[0])

    def maths_map(self, g, node, k, G, operands, own):
        return Tr(G)

    def tangent(self, t):
        return f"np.transpose({t.da[0]}, (1, 0, 2))" if t.nd == 2 else t.da[0]

    def adjoint_tangent(self, t):
        if t.dG is None:
            return None
        return (f"np.transpose({t.full_dg()}, (1, 0, 2))" if t.nd == 2 else t.full_dg(),
                t.input_shape)


class PartOf(Rule):
    """`x[:, k]` and `x[:, a:b]`: a view; the adjoint is a scatter (G placed in the part of the
    last axis that was taken, zeros elsewhere)."""

    shaped_g = True

    def __init__(self, op: str):
        self.op = op
        self.maps = {False: StructuralMap("np.pad({G}, {pad})" if op == "slice" else
                                          "np.pad(np.expand_dims({G}, -1), {pad})")}

    def forward(self, g, node, a, count):
        return f"{a[0]}[{node.part_code()}]"

    def written(self, node):
        return f"{node.inputs[0]}[{node.part_code()}]"

    def value(self, g, node, ins):
        return Part(ins[0], *_part_args(g, node))

    def row_wise(self, node):
        return True

    def maths_map(self, g, node, k, G, operands, own):
        return Scatter(G, *_part_args(g, node))

    def tangent(self, t):  # the same part; the params' axis stays last
        return f"{t.da[0]}[{t.node.part_code()}]"

    def adjoint_tangent(self, t):  # the scatter of dG, with no padding on the params' axis
        if t.dG is None:
            return None
        src = t.input_shape
        pad = pad_widths(t.node.part, src)[:-1].rstrip(",") + ", (0, 0))"
        dg = t.full_dg() if self.op == "slice" else f"np.expand_dims({t.full_dg()}, -2)"
        return f"np.pad({dg}, {pad})", src


def _axis(node) -> tuple:
    return () if node.axis is None else (sp.Integer(node.axis),)


def _part_args(g, node) -> tuple[sp.Integer, ...]:
    start, stop = node.part
    ndim = len(g.nodes[node.inputs[0]].shape)
    return tuple(sp.Integer(v) for v in (start, stop, ndim, node.op == "slice"))


# Each IR op of compiler.ops.STRUCTURAL, to its rule.
RULES: dict[str, Rule] = {
    "matmul": MatMul(), "sum": SumOrMean("sum"), "mean": SumOrMean("mean"),
    "logsumexp": LogSumExp(), "softmax": Softmax(), "transpose": Transpose(),
    "index": PartOf("index"), "slice": PartOf("slice"),
}


def rule(op: str) -> Rule:
    if op not in RULES:
        raise InternalError(f"no rule for the structural op {op}")
    return RULES[op]
