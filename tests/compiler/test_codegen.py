"""Generated modules: golden source for the examples, layering, names, the cache."""
import ast
import os
import pathlib
import re

import numpy as np
import pytest

from compiler.codegen import generate
from dsl.front.check import check
from compiler.lower import lower
from dsl.training.runtime import compile_file, init_params, load_module
from dsl.front.build import parse
from tests.golden_util import compare

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _source(text: str, name: str = "m.model") -> str:
    return generate(lower(check(parse(text, name)), text))


@pytest.mark.parametrize("example", ["seed_graph", "boston_mlp", "mnist_mlp", "iris_softmax"])
def test_generated_source_is_golden(example, monkeypatch):
    monkeypatch.chdir(ROOT)
    path = f"examples/{example}.model"
    compare(f"good/{example}.compiled.py", _source(open(path).read(), path))


def test_generated_module_imports_numpy_only():
    src = _source((ROOT / "examples/boston_mlp.model").read_text(), "examples/boston_mlp.model")
    imports = [n for n in ast.walk(ast.parse(src)) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [a.name for n in imports for a in n.names] == ["numpy"]


def test_generation_is_deterministic():
    text = (ROOT / "examples/boston_mlp.model").read_text()
    assert _source(text) == _source(text)


def test_names_that_shadow_python_and_numpy_work():
    text = """
input np
input print
param lambda_ = 2
param self = 1
const return_ = 3
sum_ = lambda_ * np + self * print + return_
loss = sum_^2
minimize loss
"""
    mod = load_module(_source(text), "names.model")
    params = {"lambda_": np.array(2.0), "self": np.array(1.0)}
    value, grads = mod.loss_and_grad(params, {"np": np.array(1.5), "print": np.array(-1.0)})
    s = 2 * 1.5 + 1 * -1.0 + 3
    assert value == pytest.approx(s**2)
    assert grads["lambda_"] == pytest.approx(2 * s * 1.5)
    assert grads["self"] == pytest.approx(2 * s * -1.0)


def test_sigmoid_derivative_reuses_the_forward_value():
    src = _source((ROOT / "examples/boston_mlp.model").read_text())
    backward = [ln for ln in src.splitlines() if ln.strip().startswith("g_L1 =")]
    assert backward and "v_h" in backward[0] and "tanh" not in backward[0] and "exp" not in backward[0]
    assert "v_L1" not in backward[0]


def test_each_statement_is_named_once_above_its_lines():
    """issue 14: one `# line N: statement` comment above the lines of a statement, not the
    statement repeated beside each of its lines."""
    src = _source((ROOT / "examples/boston_mlp.model").read_text(), "boston_mlp.model")
    predict = src[src.index("def predict("):src.index("def loss(")]
    assert ('    # line 12: L1 = X @ W1 + b1\n    t1_L1 = inputs["X"] @ params["W1"]\n'
            '    v_L1 = t1_L1 + params["b1"]\n' in predict)
    assert predict.count("# line 12:") == 1
    loss = _function(src, "loss")
    assert loss.count("# line 14:") == 1 and loss.count("# line 15:") == 1
    grad = _function(src, "_loss_and_grad")
    assert "    # line 13: ∂ h = sigmoid(L1)\n    g_L1 = " in grad
    assert all("#" not in ln for ln in grad.splitlines() if not ln.lstrip().startswith("#"))


def test_compiler_never_imports_dsl():
    """The compiler runs without the front end's code: lower.py names the checked model's types
    (dsl.front.check) in annotations only, imported under TYPE_CHECKING."""
    for path in (ROOT / "compiler").glob("*.py"):
        tree = ast.parse(path.read_text())
        skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "dsl" or n.startswith("dsl.") for n in names), path


def test_second_load_uses_the_cache_and_skips_sympy(tmp_path, monkeypatch):
    model = tmp_path / "m.model"
    model.write_text("input x\nparam k = 1\nloss = (k * x)^2\nminimize loss\n")
    monkeypatch.setenv("DSL_CACHE_DIR", str(tmp_path / "cache"))
    first = compile_file(str(model))
    assert not first.cached and os.listdir(tmp_path / "cache")

    def no_sympy(*args, **kwargs):
        raise AssertionError("generate() called although the module was cached")

    monkeypatch.setattr("compiler.codegen.generate", no_sympy)
    second = compile_file(str(model))
    assert second.cached and second.source == first.source
    model.write_text("input x\nparam k = 2\nloss = (k * x)^2\nminimize loss\n")
    monkeypatch.setattr("compiler.codegen.generate", generate)
    assert not compile_file(str(model)).cached


def test_float32_stays_float32_through_every_gradient():
    """A scalar adjoint broadcast for `sum(..., axis)` used to become a float64 array, turning
    the whole backward pass of a float32 model into float64 (twice the time)."""
    text = """
input X[N, 3]
input Y[N, 2]
param W[3, 2] = 0.5
param c = 1
param unused[2] = 0
z = X @ W
loss = mean(-sum(Y * log(softmax(z, axis = 1)), axis = 1)) + sum(W) * c
minimize loss
"""
    mod = load_module(_source(text), "f32.model")
    rng = np.random.default_rng(0)
    params = {"W": np.full((3, 2), 0.5, np.float32), "c": np.array(1, np.float32),
              "unused": np.zeros(2, np.float32)}
    inputs = {"X": rng.random((4, 3)).astype(np.float32),
              "Y": np.eye(2, dtype=np.float32)[[0, 1, 1, 0]]}
    loss, grads = mod.loss_and_grad(params, inputs)
    assert np.asarray(loss).dtype == np.float32
    assert {k: np.asarray(g).dtype for k, g in grads.items()} == dict.fromkeys(params, np.float32)


# Names a user may choose that look like the generated code's own: cse temporaries (`_t0`,
# `_d0`), locals (`dt`, `lr`, `params`), helpers, and other nodes' generated names.
GENERATED_LOOKING = ["_t0", "_t1", "_d0", "_d", "_t", "dt", "lr", "params", "inputs",
                     "_logsumexp", "_sigmoid", "v_a", "g_a", "t1_a", "gt1_a", "n_N"]


@pytest.mark.parametrize("name", GENERATED_LOOKING)
def test_user_names_never_meet_generated_names(name):
    """issue 12 item 2: `param _t0` read the cse temporary `_t0` (z = 5.749, right 4.508)."""
    text = f"""
input x[N]
param k = 0.3
param {name} = 2
a = exp(k*x) + sin(exp(k*x))
z = a + {name} * x
loss = mean(z^2)
minimize loss
"""
    mod = load_module(_source(text), "names.model")
    x = np.array([0.5, 1.0])
    params = {"k": np.array(0.3), name: np.array(2.0)}
    e = np.exp(0.3 * x)
    z = e + np.sin(e) + 2.0 * x
    assert mod.forward(params, {"x": x})["z"] == pytest.approx(z)
    value, grads = mod.loss_and_grad(params, {"x": x})
    assert value == pytest.approx(np.mean(z**2))
    assert grads[name] == pytest.approx(np.mean(2 * z * x))
    assert grads["k"] == pytest.approx(np.mean(2 * z * (x * e + np.cos(e) * x * e)))
    step = {k: v.copy() for k, v in params.items()}
    mod.sgd_step(step, {"x": x}, 0.1)
    assert step[name] == pytest.approx(2.0 - 0.1 * grads[name])


def test_a_simple_body_with_a_temporary_looking_name_compiles():
    """issue 12 item 2: `z = _t0 * x` alone gave `internal error: NameError`."""
    mod = load_module(_source("input x[N]\nparam _t0 = 2\nz = _t0 * x\nloss = mean(z^2)\n"
                              "minimize loss\n"), "simple.model")
    params, inputs = {"_t0": np.array(2.0)}, {"x": np.array([1.0, 3.0])}
    assert mod.loss(params, inputs) == pytest.approx(np.mean((2.0 * inputs["x"]) ** 2))
    assert mod.grad(params, inputs)["_t0"] == pytest.approx(np.mean(2 * 2.0 * inputs["x"] ** 2))


def test_every_generated_name_belongs_to_one_space():
    """A user's name reaches the module only as `v_`/`g_`/`tK_`/`gtK_`/`n_` + the name; every
    other local is outside that space, so no model text can produce it."""
    src = _source((ROOT / "examples/boston_mlp.model").read_text())
    tree = ast.parse(src)
    user = re.compile(r"^(v|g|n|t\d+|gt\d+)_")
    own = {"np", "dt", "lr", "params", "inputs", "a", "axis", "keepdims", "m", "out", "e", "res",
           "eye",
           "_sigmoid", "name", "step",  # sgd_step's loop over the gradients
           "_loss_and_grad", "with_loss", "with_inputs", "grads",  # the one backward pass
           "predict", "forward",  # called by loss, residuals, gradients
           "d_res", "N_PARAMS"}
    tangents = re.compile(r"^d(v|g|t\d+|gt\d+)_")  # the Jacobian's and Hessian's
    for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        for node in ast.walk(fn):
            if isinstance(node, ast.Name):
                assert (user.match(node.id) or node.id in own or tangents.match(node.id)
                        or re.match(r"^_[td]\d+$", node.id)), node.id


def test_sgd_step_updates_scalar_params_given_as_python_floats():
    """issue 12 item 6: `v_b -= g_b` rebound a local for a float param, which stayed frozen."""
    mod = load_module(_source("input x[N]\ninput y[N]\nparam k = 0\nparam b = 0\n"
                              "loss = mean((k*x + b - y)^2)\nminimize loss\n"), "floats.model")
    params = {"k": 0.0, "b": 0.0}
    inputs = {"x": np.array([0.0, 1.0, 2.0]), "y": np.array([1.0, 3.0, 5.0])}
    grads = mod.grad(dict(params), inputs)
    mod.sgd_step(params, inputs, 0.1)
    assert params["k"] == pytest.approx(-0.1 * grads["k"]) and params["k"] != 0
    assert params["b"] == pytest.approx(-0.1 * grads["b"]) and params["b"] != 0
    W = np.zeros(())  # an array is still updated in place, the same object
    params = {"k": W, "b": np.zeros(())}
    mod.sgd_step(params, inputs, 0.1)
    assert params["k"] is W and W != 0
    assert "writes each param back into `params`" in mod.__doc__


def _released_late(src: str) -> list[str]:
    """Each variable a generated function computes and does not return that is not released
    (`del`) right after the statement that reads it last: `function: name`."""
    late = []
    for fn in (n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef)):
        body = fn.body[1:]  # after the docstring
        returned = {n.id for st in body if isinstance(st, ast.Return) or isinstance(st, ast.Assign)
                    and isinstance(st.value, ast.Dict) for n in ast.walk(st)
                    if isinstance(n, ast.Name)}  # and the results gathered in a dict
        head = {t.id for st in body if isinstance(st, ast.Assign) for t in st.targets
                if isinstance(t, ast.Name) and (t.id == "dt" or t.id.startswith("n_") or (
                    isinstance(st.value, ast.Subscript) and isinstance(st.value.value, ast.Name)
                    and st.value.value.id in ("params", "inputs")))}  # locals of the arguments
        assigned = {t.id for st in body if isinstance(st, ast.Assign)
                    for t in st.targets if isinstance(t, ast.Name)} - head - returned
        for name in sorted(assigned):
            reads = [k for k, st in enumerate(body) if not isinstance(st, ast.Delete) and any(
                isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)
                for n in ast.walk(st))]
            rest = body[reads[-1] + 1:] if reads else body
            if all(isinstance(st, (ast.AugAssign, ast.Return)) or isinstance(st, ast.Assign) and (
                    isinstance(st.targets[0], ast.Subscript) or isinstance(st.value, ast.Dict))
                   for st in rest):
                continue  # nothing is computed after its last use: updates, results, `return`
            after = rest[0]
            if not (isinstance(after, ast.Delete) and name in {t.id for t in after.targets}):
                late.append(f"{fn.name}: {name}")
    return late


@pytest.mark.parametrize("example", ["boston_mlp", "mnist_mlp", "iris_softmax"])
def test_every_intermediate_is_released_after_its_last_use(example):
    """issue 14: no intermediate lives until the function returns (`grad` held 481 MiB at 1e6
    rows against hand numpy's 244)."""
    src = _source((ROOT / f"examples/{example}.model").read_text())
    assert "\n    del " in src
    assert _released_late(src) == []


def test_loss_and_grad_peak_memory_is_hand_numpys():
    """issue 14: peak memory of `loss` and `grad` within 1.05 x hand-written numpy (measured
    in bench/run.py --only memory); here with a margin, at 4,000 rows, the seed network."""
    import tracemalloc

    mod = load_module(_source((ROOT / "examples/boston_mlp.model").read_text()), "mem.model")
    rng = np.random.default_rng(0)
    p = {"W1": rng.standard_normal((13, 10)), "b1": np.zeros(10),
         "W2": rng.standard_normal((10, 1)), "b2": np.zeros(1)}
    X, y = rng.standard_normal((4000, 13)), rng.standard_normal((4000, 1))

    def hand_loss():
        h = 1.0 / (1.0 + np.exp(-(X @ p["W1"] + p["b1"])))
        return np.mean((h @ p["W2"] + p["b2"] - y) ** 2)

    def hand_grad():
        h = 1.0 / (1.0 + np.exp(-(X @ p["W1"] + p["b1"])))
        g = (2.0 / len(y)) * (h @ p["W2"] + p["b2"] - y)
        gL1 = (g @ p["W2"].T) * h * (1 - h)
        return X.T @ gL1, gL1.sum(0), h.T @ g, g.sum(0)

    def peak(f):
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            f()
            return tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()

    inputs = {"X": X, "y": y}
    assert peak(lambda: mod.loss(p, inputs)) <= 1.2 * peak(hand_loss)
    assert peak(lambda: mod.grad(p, inputs)) <= 1.2 * peak(hand_grad)


def _function(src: str, name: str) -> str:
    start = src.index(f"\ndef {name}(")
    end = src.find("\ndef ", start + 1)
    return src[start:end if end > 0 else len(src)]


def test_relu_derivative_reads_the_value_and_a_constant_adjoint_stays_a_scalar():
    """issue 14: relu' recomputed the pre-activation (`np.maximum(np.sign(v_b1 + t1_h), 0.0)`,
    keeping `t1_h` alive), and the mean's adjoint through `sum(..., axis = 1)` was made a full
    array (`np.expand_dims(np.full((n_N,), gt2_loss, dtype=dt), 1)`)."""
    grad = _function(_source((ROOT / "examples/mnist_mlp.model").read_text()), "_loss_and_grad")
    assert "g_h*(v_h > 0)" in grad and "np.sign" not in grad and "t1_h" not in grad.split(
        "# line 14: ∂")[1]
    assert "np.full" not in grad and "np.broadcast_to" not in grad


@pytest.mark.parametrize("example", ["boston_mlp", "mnist_mlp", "iris_softmax", "seed_graph"])
def test_no_line_only_renames_a_value(example):
    """issue 14: no alias lines (`gt1_yhat = g_yhat`): an adjoint equal to another is that one."""
    src = _source((ROOT / f"examples/{example}.model").read_text())
    for fn in ("_loss_and_grad", "gradients", "residuals", "jacobian", "hessian"):
        body = _function(src, fn) if f"def {fn}(" in src else ""
        assert not re.findall(r"^ +(\w+) = ([A-Za-z_]\w*)$", body, re.M), fn


def test_sums_keep_the_operands_in_the_users_order():
    """issue 14: `h @ W2 + b2` was printed `v_b2 + t1_yhat` (sympy's order of names); each
    statement's sum keeps its own order, even when two statements have the same form."""
    src = _source("input x[N, 2]\nparam W[2, 3] = 1\nparam b[3] = 0\nparam c[3] = 0\n"
                  "y = x @ W + b\nz = c + x @ W\nu = y - z\nloss = sum(u * u + b * c)\n"
                  "minimize loss\n")
    forward = _function(src, "forward")
    assert "v_y = t1_y + v_b" in forward and "v_z = v_c + t1_z" in forward
    assert "v_u = v_y - v_z" in forward


def test_numbers_and_the_learning_rate_are_multiplied_first():
    """`2*lr*(v_L2 - v_y)` is one array product; `2*(v_L2 - v_y)*lr` was two (the seed network's
    step came out 7% slower)."""
    src = _source((ROOT / "examples/seed_graph.model").read_text())
    assert "g_L2 = 2*lr*(v_L2 - v_y)" in _function(src, "_loss_and_grad")  # sgd_step's pass


def test_sgd_step_is_grads_backward_pass_not_a_copy_of_it():
    """issue 15: the training step calls the backward pass with its learning rate (seeded with
    `lr`) instead of repeating the forward and backward lines: a module a fifth shorter, to
    generate and to compile."""
    src = _source((ROOT / "examples/boston_mlp.model").read_text())
    step = _function(src, "sgd_step")
    assert "in _loss_and_grad(params, inputs, lr, False, False).items():" in step
    assert "v_" not in step and "g_" not in step
    assert "def grad(params, inputs, lr=1.0):" in src


@pytest.mark.parametrize("example", ["boston_mlp", "seed_graph", "iris_softmax", "mnist_mlp"])
def test_loss_and_grad_and_grad_share_one_backward_pass(example):
    """issue 15: `loss_and_grad` and `grad` repeated the same forward and backward lines (two
    fifths of a module); both call `_loss_and_grad`, whose objective's own lines, which no
    gradient reads, run under `if with_loss:`. Results as before: the loss, the gradient, and
    the gradient times `lr`."""
    src = _source((ROOT / f"examples/{example}.model").read_text())
    for fn, call in (("loss_and_grad", "_loss_and_grad(params, inputs, 1.0, True, False)"),
                     ("grad", "_loss_and_grad(params, inputs, lr, False, False)"),
                     ("gradients", "forward(params, inputs), "
                                   "_loss_and_grad(params, inputs, 1.0, True, True)[1]")):
        body = [ln.strip() for ln in _function(src, fn).splitlines()[3:] if ln.strip()]
        assert body == [f"return {call}"], fn
    shared = _function(src, "_loss_and_grad")
    assert "def _loss_and_grad(params, inputs, lr, with_loss, with_inputs):" in shared
    assert "    if with_loss:\n" in shared and "(v_loss, grads) if with_loss else grads" in shared
    mod = load_module(src, f"{example}.model")
    checked = check(parse((ROOT / f"examples/{example}.model").read_text(), "m.model"))
    rng = np.random.default_rng(0)
    params = init_params(checked, 0)
    inputs = {k: rng.normal(size=tuple(7 if isinstance(d, str) else d for d in checked.shapes[k]))
              for k in checked.inputs}
    value, grads = mod.loss_and_grad(params, inputs)
    assert value == mod.loss(params, inputs)
    assert mod._loss_and_grad(params, inputs, 0.5, False, False).keys() == grads.keys()
    values, every = mod.gradients(params, inputs)
    assert values["loss"] == value and list(every) == [*params, *inputs]
    for name, g in grads.items():
        np.testing.assert_array_equal(every[name], g)
    for name, g in mod.grad(params, inputs).items():
        np.testing.assert_array_equal(g, grads[name])
        np.testing.assert_allclose(mod.grad(params, inputs, 0.25)[name], 0.25 * g, rtol=1e-12)


def test_gradients_shares_the_pass_its_inputs_pushes_run_only_with_inputs():
    """issue 15: `gradients` repeated the whole pass (a quarter to a third of a module); it is
    `forward`'s values and the shared pass with `with_inputs`, whose pushes that only the inputs'
    gradients need run under `if with_inputs:`, before the node's other pushes (which read
    what they read) or in one block at the end (where nothing lives longer for them); the
    training step's lines are the same, and every gradient agrees with central differences."""
    src = _source((ROOT / "examples/boston_mlp.model").read_text())
    shared = _function(src, "_loss_and_grad")
    assert ("    # line 15: ∂ loss = mean((yhat - y)^2)\n    gt1_loss = lr / n_N\n"
            "    if with_inputs:\n        g_y = 2*(v_y - v_yhat)*gt1_loss\n"
            "    g_yhat = 2*(v_yhat - v_y)*gt1_loss\n    del gt1_loss, v_yhat\n" in shared)
    assert shared.count("# line 15: ∂ loss") == 1  # one run of the line's statements, one comment
    assert shared.endswith(
        '    grads = {"W1": g_W1, "b1": g_b1, "W2": g_W2, "b2": g_b2}\n    if with_inputs:\n'
        "        # line 12: ∂ L1 = X @ W1 + b1\n        g_X = g_L1 @ v_W1.T\n"
        '        grads |= {"X": g_X, "y": g_y}\n    return (v_loss, grads) if with_loss else grads\n')
    without = re.sub(r"\n    if with_inputs:\n(        .*\n)+", "\n", shared)
    assert not re.search(r"\bg_(X|y)\b", without)
    text = ("input x[N]\ninput y[N]\nparam w = 0.5\nparam c = 0.2\nu = exp(x) * w\n"
            "s = sigmoid(x)\nyhat = u + c * s\nloss = mean((yhat - y)^2)\nminimize loss\n")
    mod = load_module(_source(text), "in.model")
    params = {"w": np.array(0.5), "c": np.array(0.2)}
    inputs = {"x": np.array([0.3, -1.0, 2.0]), "y": np.array([1.0, 0.5, -0.5])}
    values, grads = mod.gradients(params, inputs)
    assert list(grads) == ["w", "c", "x", "y"] and values["loss"] == mod.loss(params, inputs)
    point = {**params, **inputs}

    def loss_at(name, k, h):
        moved = {n: np.array(v, dtype=float) for n, v in point.items()}
        moved[name].flat[k] += h
        return mod.loss({n: moved[n] for n in params}, {n: moved[n] for n in inputs})

    for name, g in grads.items():
        for k in range(np.size(g)):
            want = (loss_at(name, k, 1e-6) - loss_at(name, k, -1e-6)) / 2e-6
            assert np.ravel(g)[k] == pytest.approx(want, rel=1e-6, abs=1e-8), name


def test_the_objectives_own_lines_run_only_with_loss():
    """The lines of the objective that no gradient reads sit in one `if with_loss:` block, after
    the forward lines the gradient needs; a value that block reads last is released after it;
    an objective whose value its derivative reads (`exp`) is computed in every case."""
    src = _source((ROOT / "examples/boston_mlp.model").read_text())
    shared = _function(src, "_loss_and_grad")
    assert ("    del t1_yhat\n    if with_loss:\n        # line 15: loss = mean((yhat - y)^2)\n"
            "        t1_loss = (v_yhat - v_y)**2\n        v_loss = np.sum(t1_loss) / n_N\n"
            "        del t1_loss\n    # line 15: ∂ loss" in shared)
    src = _source("input x[N]\nparam w = 1\na = w * x\nb = exp(a)\nloss = sum(b) + sum(a)\n"
                  "minimize loss\n")
    shared = _function(src, "_loss_and_grad")
    block = shared[shared.index("    if with_loss:"):shared.index("# line 5: ∂")]
    assert block.splitlines()[1] == "        # line 5: loss = sum(b) + sum(a)"
    assert block.rstrip().endswith("\n    del v_a")  # `a`: the exp's derivative reads `b`
    mod = load_module(src, "m.model")
    params, inputs = {"w": np.array(0.5)}, {"x": np.array([1.0, -2.0, 3.0])}
    value, grads = mod.loss_and_grad(params, inputs)
    a = 0.5 * inputs["x"]
    assert value == pytest.approx(np.sum(np.exp(a)) + np.sum(a))
    assert grads["w"] == pytest.approx(np.sum(inputs["x"] * (np.exp(a) + 1)))
    assert mod.grad(params, inputs, 0.5)["w"] == pytest.approx(0.5 * grads["w"])
    src = _source("input x\nparam w = 1\nloss = exp(w * x)\nminimize loss\n")
    assert "with_loss:" not in _function(src, "_loss_and_grad")
    mod = load_module(src, "e.model")
    value, grads = mod.loss_and_grad({"w": np.array(0.5)}, {"x": np.array(2.0)})
    assert value == pytest.approx(np.e) and grads["w"] == pytest.approx(2 * np.e)


def test_loss_calls_predict_when_it_needs_nothing_else_on_the_way():
    """issue 15: `loss` repeated predict's lines; it calls `predict` when the objective needs
    the prediction and no other value computed on the way to it, and the value is the same."""
    src = _source((ROOT / "examples/boston_mlp.model").read_text())
    body = _function(src, "loss")
    assert "v_yhat = predict(params, inputs)" in body and "v_h" not in body
    mod = load_module(src, "boston_mlp.model")
    rng = np.random.default_rng(0)
    params = {"W1": rng.normal(size=(13, 10)), "b1": rng.normal(size=10),
              "W2": rng.normal(size=(10, 1)), "b2": rng.normal(size=1)}
    inputs = {"X": rng.normal(size=(5, 13)), "y": rng.normal(size=(5, 1))}
    assert mod.loss(params, inputs) == mod.loss_and_grad(params, inputs)[0]
    # the loss reads `h`, on the way to the prediction: its lines stay
    src = _source("input x[N]\ninput y[N]\nparam w = 2\nh = tanh(w * x)\nyhat = 3 * h\n"
                  "loss = mean((yhat - y)^2) + mean(h^2)\nminimize loss\npredict yhat\n")
    assert "predict(" not in _function(src, "loss")
    mod = load_module(src, "h.model")
    params, inputs = {"w": np.array(2.0)}, {"x": np.array([0.5, 1.0]), "y": np.array([1.0, 0.0])}
    assert mod.loss(params, inputs) == mod.loss_and_grad(params, inputs)[0]


def test_a_param_or_input_read_once_is_read_in_place():
    """issue 15: an unpacking line per param and input was a fifth of a large module (Python's
    compile costs about 5 us a line). What one function reads once it reads in place; what it
    reads more often keeps its local: the training step reads each weight forward and backward."""
    src = _source((ROOT / "examples/boston_mlp.model").read_text())
    predict = _function(src, "predict")  # everything once
    assert '    t1_L1 = inputs["X"] @ params["W1"]\n    v_L1 = t1_L1 + params["b1"]\n' in predict
    assert not re.search(r"^    v_\w+ = (params|inputs)\[", predict, re.M)
    step = _function(src, "_loss_and_grad")  # W1, W2, X and y twice or more; b1, b2 once
    for name in ("W1", "W2"):
        assert step.count(f'params["{name}"]') == 1 and f'    v_{name} = params["{name}"]\n' in step
    assert '    v_X = inputs["X"]\n' in step and '    v_y = inputs["y"]\n' in step
    assert "v_b1" not in step and "v_b2" not in step
    assert '    v_L1 = t1_L1 + params["b1"]\n' in step
    loss = _function(src, "loss")  # X for its row count only
    assert '    n_N = inputs["X"].shape[0]\n' in loss and "v_X" not in loss
    mod = load_module(src, "boston_mlp.model")  # forward returns each leaf, read in place
    rng = np.random.default_rng(0)
    params = {"W1": rng.normal(size=(13, 10)), "b1": rng.normal(size=10),
              "W2": rng.normal(size=(10, 1)), "b2": rng.normal(size=1)}
    inputs = {"X": rng.normal(size=(5, 13)), "y": rng.normal(size=(5, 1))}
    values = mod.forward(params, inputs)
    assert all(values[n] is v for n, v in (*params.items(), *inputs.items()))
    assert np.allclose(mod.predict(params, inputs), values["yhat"])


def test_reads_are_counted_in_the_code_not_by_name_or_statement():
    """A statement that reads a param twice (`A @ A`) keeps its local; `w` beside `w2` is one
    read of each; a param named like another's local (`v_w`, whose local is `v_v_w`) is not
    read in place inside a string (the dict `forward` returns)."""
    src = _source("input x[N, 2]\nparam A[2, 2] = 1\nparam w = 2\nparam w2 = 3\nparam v_w = 4\n"
                  "B = A @ A\nz = w * x + w2 + v_w\nloss = sum(z @ B)\nminimize loss\n")
    predict = _function(src, "forward")
    assert '    v_A = params["A"]\n' in predict and "v_A @ v_A" in predict
    assert 'params["w"]*inputs["x"] + params["w2"] + params["v_w"]' in predict
    assert '"w": params["w"], "w2": params["w2"], "v_w": params["v_w"]' in predict
    mod = load_module(src, "m.model")
    params = {"A": np.eye(2) * 2, "w": 2.0, "w2": 3.0, "v_w": 4.0}
    values = mod.forward(params, {"x": np.ones((3, 2))})
    assert [values[n] for n in ("w", "w2", "v_w")] == [2.0, 3.0, 4.0]
    assert values["loss"] == pytest.approx(np.sum((2.0 * np.ones((3, 2)) + 7.0) @ (np.eye(2) * 4)))


def test_a_tangent_is_no_read_of_the_param_it_is_named_after():
    """`dv_height`, the tangent of `height`, holds `v_height`: a statement that reads the
    tangent is no read of the value (the fuzzer's growth_trial got `dparams["height"]`)."""
    src = _source("input T[N, 3]\ninput y[N]\nparam c = 0\nparam height[3] = 1\n"
                  "yhat = T @ height + c\nloss = mean((yhat - y)^2)\nminimize loss\n")
    assert 'np.einsum("ik,kp->ip", inputs["T"], dv_height)' in _function(src, "jacobian")
    mod = load_module(src, "m.model")
    T = np.eye(3)[[0, 1, 2, 1]]
    J = np.hstack([np.ones((4, 1)), T])
    params, inputs = {"c": np.array(0.5), "height": np.ones(3)}, {"T": T, "y": np.zeros(4)}
    assert np.array_equal(mod.jacobian(params, inputs), J)
    assert np.allclose(mod.hessian(params, inputs), 2 * J.T @ J / 4)


def test_statements_name_every_param_and_input_they_read(monkeypatch):
    """Reading in place trusts each statement's `reads`: a param read by a statement that did
    not name it would lose its local while that statement still read it (a NameError)."""
    import compiler.codegen as codegen
    import compiler.second_order as second_order
    real, unnamed = codegen.render, []

    def checked(stmts, keep, bound=(), returns="", unpacked=None):
        for st in stmts:
            code = st.code.split("  # ")[0]  # `np.zeros(...)  # w does not reach loss`
            names = {m[0] for m in codegen._NAME.finditer(code)}
            unnamed.extend((st.target, v) for v in names & set(unpacked or ()) - set(st.reads))
        checked.calls += 1
        return real(stmts, keep, bound, returns, unpacked)

    checked.calls = 0
    monkeypatch.setattr(codegen, "render", checked)
    monkeypatch.setattr(second_order, "render", checked)
    monkeypatch.chdir(ROOT)
    for path in sorted(pathlib.Path("examples").glob("*.model")):
        _source(path.read_text(), str(path))
    assert checked.calls > 50 and unnamed == []
