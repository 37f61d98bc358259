"""The command line: exit status 0 / 1 / 2, never a traceback for a user mistake, `--debug`.

`dsl.cli.main(argv)` returns the exit status; these tests call it in-process with the working
directory at the repository root, as a user in a checkout would.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import dsl.cli
from dsl.cli import main

ROOT = Path(__file__).resolve().parents[1]
SEED = "examples/seed_graph.model"
BOSTON = "examples/boston_mlp.model"
BAD = sorted(p.name for p in (ROOT / "tests" / "golden" / "bad").glob("*.model"))


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def run(argv, capsys) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own --help and --version
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def no_traceback(err: str) -> bool:
    return "Traceback" not in err and "internal error" not in err


# ---- 0: all is well ----------------------------------------------------------------------------

def test_check_a_good_model(capsys):
    rc, out, err = run(["check", BOSTON], capsys)
    assert rc == 0 and err == ""
    assert out.startswith(f"{BOSTON}: ok, 10 names, minimize loss, predict yhat\n")
    assert "  input  X     [N, 13]      line 4\n" in out


def test_check_warnings_do_not_fail(tmp_path, capsys):
    p = tmp_path / "w.model"
    p.write_text("input x\nparam k = 1\nparam j = 1\nloss = (k * x)^2\nminimize loss\n")
    rc, out, err = run(["check", p], capsys)
    assert rc == 0 and "ok" in out
    assert f"{p}:3:7: warning: param `j` does not affect the objective `loss`" in err


def test_eval_json(capsys):
    rc, out, err = run(["eval", SEED, "--set", "x=3", "--set", "y=0.5", "--set", "k1=0.2",
                        "--set", "k2=-0.4", "--json"], capsys)
    assert rc == 0 and no_traceback(err)
    result = json.loads(out)
    assert result["objective"] == "loss"
    assert result["values"]["L1"] == pytest.approx(0.6)
    assert set(result["gradients"]) >= {"k1", "b1", "k2", "b2", "x", "y"}
    s = result["values"]["s"]
    l2 = -0.4 * s
    assert result["gradients"]["k2"] == pytest.approx(2 * (l2 - 0.5) * s)


def test_compile_writes_a_module(tmp_path, capsys):
    out_file = tmp_path / "m.py"
    rc, out, err = run(["compile", SEED, "-o", out_file], capsys)
    assert rc == 0 and out.startswith(f"wrote {out_file}")
    assert "import numpy as np" in out_file.read_text()
    rc, out, err = run(["compile", SEED], capsys)
    assert rc == 0 and "def forward" in out


def test_debug_flag_exists(capsys):
    rc, out, err = run(["--debug", "check", SEED], capsys)
    assert rc == 0 and "ok" in out
    rc, out, _ = run(["--help"], capsys)
    assert rc == 0 and "--debug" in out


# ---- 1: a bad model or bad data ------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in BAD if not n.startswith("warn_")])
def test_bad_models_exit_1_without_traceback(name, capsys):
    rc, out, err = run(["check", f"tests/golden/bad/{name}"], capsys)
    assert rc == 1 and no_traceback(err) and err.startswith(f"tests/golden/bad/{name}:")


def test_bad_models_with_debug_still_have_no_traceback(capsys):
    rc, out, err = run(["--debug", "check", "tests/golden/bad/cycle.model"], capsys)
    assert rc == 1 and no_traceback(err) and "cycle in the graph" in err


def test_run_without_data_is_bad_data(capsys):
    rc, out, err = run(["run", SEED, "--steps", "1", "--out", "/nonexistent/never"], capsys)
    assert rc == 1 and no_traceback(err) and "no `data` statement" in err
    # seed_graph binds no input to a column: adding `data` alone would not be enough
    assert err.startswith(f"{SEED}:2:1: error: ") and "no input bound to a column" in err
    assert 'add `data "file.csv"` and bind the inputs to its columns' in err
    assert "`input x[N] <- COLUMN`" in err


def test_a_model_without_minimize_is_told_which_scalar_nodes_it_could_name(tmp_path, capsys):
    p = tmp_path / "m.model"
    p.write_text("input x\nparam w = 1\ny = w * x\nz = sum(y)\n")
    for command in ("run", "derive"):
        rc, out, err = run([command, p], capsys)
        assert rc == 2 and no_traceback(err) and "no `minimize` statement" in err
        assert "hint: add `minimize NAME` naming a scalar node: `y`, `z`" in err


def test_bad_params_file(tmp_path, capsys):
    bad = tmp_path / "p.npz"
    bad.write_bytes(b"not a zip")
    csv = tmp_path / "d.csv"
    csv.write_text("a\n1\n")
    rc, out, err = run(["predict", BOSTON, "--params", bad, "--data", csv], capsys)
    assert rc == 1 and no_traceback(err) and "not a params file" in err
    rc, out, err = run(["predict", BOSTON, "--params", tmp_path / "none.npz", "--data", csv],
                       capsys)
    assert rc == 2 and no_traceback(err) and "no such params file" in err


def test_missing_files_named_on_the_command_line_are_usage_errors_without_a_location(tmp_path,
                                                                                     capsys):
    """LANGUAGE.md section 11: exit 2, and no made-up `nosuch.csv:1:1:` (issue 13 item 12)."""
    params = tmp_path / "p.npz"
    params.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty archive: it exists
    for argv, words in (
            (["data", "nosuch.csv"], "no such data file: nosuch.csv"),
            (["data", "examples"], "examples is a directory, not a data file"),
            (["eval", SEED, "--params", "nosuch.npz"], "no such params file: nosuch.npz"),
            (["predict", BOSTON, "--params", params, "--data", "nosuch.csv"],
             "no such data file: nosuch.csv"),
            (["predict", BOSTON, "--params", "nosuch.npz", "--data", "examples/data/boston.csv"],
             "no such params file: nosuch.npz"),
            (["eval", SEED, "--set", "x=@nosuch.csv"], "no such file nosuch.csv")):
        rc, out, err = run(argv, capsys)
        assert rc == 2 and no_traceback(err), (argv, rc, err)
        assert err.startswith("error: ") and words in err and ":1:1" not in err, err


def test_a_csv_given_as_params_is_named_without_unsafe_advice(tmp_path, capsys):
    for flag in ("eval", "predict"):
        argv = ([flag, BOSTON, "--params", "examples/data/boston.csv"]
                + (["--data", "examples/data/boston.csv"] if flag == "predict" else []))
        rc, out, err = run(argv, capsys)
        assert rc == 1 and no_traceback(err)
        assert "is not a params file saved by dsl: it is not an .npz archive" in err
        assert "pickle" not in err and "give it with --data" in err
    npy = tmp_path / "x.npy"
    npy.write_text("1,2,3\n")
    rc, out, err = run(["eval", SEED, "--set", f"x=@{npy}"], capsys)
    assert rc == 2 and "is not a .npy file of numbers" in err and "pickle" not in err


def test_eval_json_writes_null_for_nan_and_inf(tmp_path, capsys):
    model = tmp_path / "m.model"
    model.write_text("input x\nparam k = 1\ny = k * log(x)\nz = k * log(-x)\nloss = y^2\n"
                     "minimize loss\n")
    rc, out, err = run(["eval", model, "--set", "x=0", "--json"], capsys)
    assert rc == 0

    def strict(word):
        raise AssertionError(f"{word} is not JSON")

    result = json.loads(out, parse_constant=strict)
    assert result["values"]["y"] is None and result["values"]["z"] is None
    assert result["gradients"]["k"] is None


def _fit_model(tmp_path, csv: str, extra: str = "") -> Path:
    (tmp_path / "d.csv").write_text(csv)
    model = tmp_path / "m.model"
    model.write_text('data "d.csv"\ninput x[N] <- x\ninput y[N] <- y\nparam k = 0\n'
                     f"{extra}yhat = k * x\nloss = mean((yhat - y)^2)\nminimize loss\n"
                     "predict yhat\n")
    return model


def test_a_constant_target_has_an_undefined_r2(tmp_path, capsys):
    """R² = 1 - SSE/SST, and SST of a constant column is the rounding error of its mean: it
    printed `R² -2.268e+31` (issue 13 item 13)."""
    rows = "".join(f"{i},3.3\n" for i in range(1, 11))
    model = _fit_model(tmp_path, "x,y\n" + rows)
    rc, out, err = run(["run", model, "--steps", "3", "--out", tmp_path / "out"], capsys)
    assert rc == 0 and no_traceback(err)
    assert "R² (train)" in out and "undefined: the target is constant" in out and "e+" not in out
    assert json.loads((tmp_path / "out" / "report.json").read_text())["r2"] is None


def test_values_too_large_for_float32_are_refused_without_a_numpy_warning(tmp_path, capsys,
                                                                            recwarn):
    model = _fit_model(tmp_path, "x,y\n1e300,1\n2,3\n")
    rc, out, err = run(["run", model, "--dtype", "float32", "--steps", "2", "--out",
                        tmp_path / "out"], capsys)
    assert rc == 1 and "input `x` has values too large for float32" in err and ":2:" in err
    model = _fit_model(tmp_path, "x,y\n1,1\n2,3\n", "param w = 1e300\n")
    rc, out, err = run(["run", model, "--dtype", "float32", "--steps", "2", "--out",
                        tmp_path / "out"], capsys)
    assert rc == 1 and "param `w` starts with values that are not finite" in err
    assert "float32" in err and "RuntimeWarning" not in err
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_data_command_on_bad_files(tmp_path, capsys):
    for content, args, words in (("", [], "is empty"),
                                 ("a,b\n1,x\n", ["--target", "b"], "non-numeric value 'x' in column b"),
                                 ("a,b\n1,nan\n", ["--target", "b"], "NaN value")):
        p = tmp_path / "d.csv"
        p.write_text(content)
        rc, out, err = run(["data", p, *args], capsys)
        assert rc == 1 and no_traceback(err) and words in err, err


def test_data_command_lists_text_and_describes_the_rest(tmp_path, capsys):
    """Text and NaN are fine in a file as a whole: only a model binding them, or a target, fails."""
    p = tmp_path / "d.csv"
    p.write_text("a,b,c\n1,x,nan\n2,y,3\n")
    rc, out, err = run(["data", p, "--target", "a"], capsys)
    assert rc == 0 and err == ""
    assert "b      2 distinct: 'x', 'y'" in out
    assert [ln.split() for ln in out.splitlines() if ln.startswith("c ")] == [["c", "-", "-", "-", "-", "-"]], out


# ---- 2: bad usage --------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    ([], "required: command"),
    (["frobnicate", SEED], "invalid choice: 'frobnicate'"),
    (["check"], "required: model"),
    (["check", "no/such/file.model"], "no such model file: no/such/file.model"),
    (["check", "examples"], "is a directory"),
    (["check", SEED, "--bogus"], "unrecognized arguments: --bogus"),
    (["--bogus", "check", SEED], "unrecognized arguments: --bogus"),
    (["run", BOSTON, "--epochs", "many"], "invalid int value: 'many'"),
    (["run", BOSTON, "--epochs", "0"], "--epochs must be at least 1"),
    (["run", BOSTON, "--epochs", "2", "--steps", "3"], "--epochs or --steps, not both"),
    (["run", BOSTON, "--optimizer", "sgdd"], "unknown optimizer `sgdd`"),
    (["run", BOSTON, "--dtype", "float16"], "unknown dtype `float16`"),
    (["run", BOSTON, "--optimizer", "random_search", "--lr", "0.1"], "has no learning rate"),
    (["run", BOSTON, "--lr", "-1"], "the learning rate must be positive"),
    (["run", BOSTON, "--lr", "inf"], "the learning rate must be positive and finite, got inf"),
    (["run", BOSTON, "--lr", "nan"], "the learning rate must be positive and finite, got nan"),
    (["run", BOSTON, "--seed", "-1"], "--seed must be a whole number of at least 0, got -1"),
    (["eval", SEED, "--set", "x=" + "[" * 3000 + "]" * 3000], "is not a number or a JSON list"),
    (["eval", SEED, "--set", "zz=3"], "`zz` is not an input or param"),
    (["eval", SEED, "--set", "k11=3"], "did you mean `k1`?"),
    (["eval", SEED, "--set", "x"], "--set takes NAME=VALUE"),
    (["eval", SEED, "--set", "x=three"], "is not a number or a JSON list"),
    (["eval", SEED, "--set", "x=[1, 2]"], "should be scalar"),
    (["eval", SEED, "--set", "x=@missing.npy"], "no such file missing.npy"),
    (["predict", BOSTON, "--data", "x.csv"], "required: --params"),
])
def test_usage_errors_exit_2(argv, words, capsys):
    rc, out, err = run(argv, capsys)
    assert rc == 2, (rc, err)
    assert no_traceback(err)
    assert words in err, err


def test_commands_that_need_a_statement_the_model_lacks(tmp_path, capsys):
    p = tmp_path / "bare.model"
    p.write_text("input x\nparam k = 1\nz = k * x\n")
    rc, out, err = run(["predict", p, "--params", "p.npz", "--data", "x.csv"], capsys)
    assert rc == 2 and no_traceback(err) and "has no `predict` statement" in err
    rc, out, err = run(["run", p], capsys)
    assert rc == 2 and no_traceback(err) and "has no `minimize` statement" in err


def test_usage_error_is_rendered_with_a_hint(capsys):
    rc, out, err = run(["frobnicate"], capsys)
    assert rc == 2 and err.startswith("error: ") and "hint: see `dsl --help`" in err


# ---- internal errors -----------------------------------------------------------------------

def test_internal_error_says_so_and_debug_shows_the_traceback(monkeypatch, capsys):
    def broken(args, session):
        raise RuntimeError("boom")
    monkeypatch.setattr(dsl.cli, "cmd_check", broken)
    rc, out, err = run(["check", SEED], capsys)
    assert rc == 3 and "internal error: RuntimeError: boom" in err and "Traceback" not in err
    assert "--debug" in err
    rc, out, err = run(["--debug", "check", SEED], capsys)
    assert rc == 3 and "Traceback" in err and "RuntimeError: boom" in err


def test_a_closed_pipe_is_not_an_internal_error(monkeypatch, capsys):
    """`dsl data boston.csv | head -2`: the reader goes away; exit quietly."""
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def isatty(self):
            return False

        def fileno(self):
            raise OSError("no file descriptor")

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    rc = main(["data", "examples/data/boston.csv", "--target", "MEDV"])
    err = capsys.readouterr().err
    assert rc == 0 and err == ""


def test_debug_is_accepted_after_the_command(capsys):
    rc, out, err = run(["check", SEED, "--debug"], capsys)
    assert rc == 0, err


def test_graph_formats_named_in_the_cli_are_graphviews():
    from dsl.views import graphview  # imported by `dsl graph` only: it needs sympy
    assert dsl.cli.GRAPH_FORMATS == graphview.FORMATS


# ---- check reads the data file's header ---------------------------------------------------------

def _with_data(tmp_path, csv: str | None, inputs: str) -> Path:
    if csv is not None:
        (tmp_path / "d.csv").write_text(csv)
    p = tmp_path / "m.model"
    p.write_text(f'data "d.csv"\n{inputs}param w = 1\nloss = w * mean(x)\nminimize loss\n')
    return p


def test_check_reads_the_header_and_binds_sizes_from_column_counts(tmp_path, capsys):
    """Only the header is read: a bad row further down is `run`'s to find (issue 13 item 15)."""
    model = _with_data(tmp_path, "a,b,c,d,e\n1,2,3,4,5\nx,y,z,t,u\n",
                       "input x[N] <- a\ninput X[N, D] <- a..d\n")
    rc, out, err = run(["check", model], capsys)
    assert rc == 0 and no_traceback(err), err
    assert f"  data   {tmp_path / 'd.csv'}: 5 columns in its header (rows not read)\n" in out
    assert "  size   D = 4, from the columns bound to it\n" in out


@pytest.mark.parametrize("csv, inputs, line, words", [
    (None, "input x[N] <- a\n", 1, "not found"),
    ("a,b\n1,2\n", "input x[N] <- A\n", 2, "unknown column `A` in d.csv"),
    ("a,b\n1,2\n", "input x[N] <- a\ninput X[N, 3] <- a..b\n", 3,
     "input `X` is declared [N, 3] but its columns give 2"),
    ("a,b\n1,2\n", "input x[N] <- b..a\n", 2, "column range `b..a` is backwards"),
    ("a,b,c\n1,2,3\n", "input x[N] <- a\ninput X[N, D] <- a..c\ninput Y[N, D] <- a, b\n", 4,
     "size `D` is 3 for `X` but 2 for `Y`"),
    ("1,2\n3,4\n", "input x[N] <- a\n", 1, "looks like data, not a header"),
    ("", "input x[N] <- a\n", 1, "is empty"),
])
def test_check_finds_what_run_would_find_in_the_header(tmp_path, capsys, csv, inputs, line, words):
    model = _with_data(tmp_path, csv, inputs)
    rc, out, err = run(["check", model], capsys)
    assert rc == 1 and no_traceback(err) and out == "" and words in err, err
    where = f"{model}:{line}:" if "d.csv:1:" not in err else "d.csv:1:"
    assert where in err, err


def test_check_refuses_a_data_path_that_is_not_a_regular_file(tmp_path, capsys):
    p = tmp_path / "m.model"
    p.write_text('data "/dev/zero"\ninput x[N] <- a\nparam w = 1\nloss = w * mean(x)\n'
                 "minimize loss\n")
    rc, out, err = run(["check", p], capsys)
    assert rc == 1 and "not a regular file" in err and f"{p}:1:1" in err


def test_a_file_that_is_not_a_csv_has_its_first_line_kept_out_of_the_hint(tmp_path, capsys):
    """Only names a model can write are offered as columns (issue 13 items 14 and 15)."""
    model = _with_data(tmp_path, "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/bin/sh\n",
                       "input x[N] <- a\n")
    rc, out, err = run(["check", model], capsys)
    assert rc == 1 and "unknown column `a`" in err and "root:x" not in err and "bash" not in err
    assert "its header has 1 column(s), none of them a name a model can use" in err


def test_a_data_file_that_is_not_a_csv_gets_its_line_and_count_not_its_content(tmp_path, capsys):
    """/etc/passwd, or a binary file, as data: where and how many values, never the content
    (issue 13 item 14)."""
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/bin/sh\n")
    rc, out, err = run(["data", passwd], capsys)
    assert rc == 1 and no_traceback(err)
    assert f"{passwd}:2:1: error: data file `{passwd}` does not look like a CSV of numbers: line 2" in err
    assert "has 1 value(s) and none is a number (the header has 1 column(s))" in err
    assert "root:x" not in err and "daemon" not in err and "/bin/" not in err
    binary = tmp_path / "prog"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00secret\xd0\x00\x00key\n")
    rc, out, err = run(["data", binary], capsys)
    assert rc == 1 and "is not UTF-8 text: byte 0xd0 on line 1" in err
    assert "secret" not in err and "key" not in err
    rc, out, err = run(["data", "examples/data/boston.csv"], capsys)  # a CSV is read as before
    assert rc == 0


@pytest.mark.parametrize("train, flag, solves", [
    ("", None, True),  # none named, 2 param elements: lm
    ("", "gd", False),
    ("train {\n    optimizer gd(lr = 0.1)\n}\n", None, False),
    ("train {\n    optimizer gd(lr = 0.1)\n}\n", "newton", True),
    ("train {\n    optimizer lbfgs()\n}\n", None, True),
    ("param w[1001] = 0\n", None, False),  # none named, over 1000 param elements: gd
])
def test_a_cold_run_imports_the_solvers_while_it_compiles_only_for_a_solver(train, flag, solves,
                                                                            tmp_path):
    """`run` hands `compile_file` the import of scipy.optimize to do while a cache miss compiles
    in a child (dsl.training.runtime._compiled_aside) only when the fit will use it."""
    nist = ROOT / "tests" / "data" / "nist"
    (tmp_path / "Misra1a.csv").write_bytes((nist / "Misra1a.csv").read_bytes())
    (tmp_path / "m.model").write_text((nist / "Misra1a.model").read_text() + train)
    checked = dsl.cli.Session().load(str(tmp_path / "m.model"))
    args = dsl.cli.build_parser().parse_args(["run", "m.model"] + (["--optimizer", flag] if flag
                                                                   else []))
    assert dsl.cli._solves(args, checked) is solves
