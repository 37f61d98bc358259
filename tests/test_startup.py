"""What a command pays before it runs: with its compiled module in the cache, `run`, `eval`,
`predict` and `compile` import the parser, the checker and numpy, and never sympy (issue 15).

Each command runs as a real process under `python -X importtime`, which names every module the
process imports; the first `compile` fills a private cache, and the commands after it find it.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOSTON = "examples/boston_mlp.model"
ZEROS = "[[0,0,0,0,0,0,0,0,0,0,0,0,0]]"


def dsl(args: list[str], cache: Path) -> tuple[str, list[str]]:
    """Run `python -m dsl ARGS`; its stdout, and the top-level names of the modules it imported."""
    env = {**os.environ, "DSL_CACHE_DIR": str(cache)}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "dsl", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = [ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.splitlines()
                if ln.startswith("import time:") and ln.count("|") == 2]
    return proc.stdout, [m.split(".")[0] for m in imported]


def test_cached_commands_do_not_import_sympy(tmp_path):
    cache = tmp_path / "cache"
    _, first = dsl(["compile", BOSTON, "-o", str(tmp_path / "m.py")], cache)
    assert "sympy" in first  # a cold compile derives with sympy: the check below means something
    out = tmp_path / "run"
    commands = [
        ["compile", BOSTON, "-o", str(tmp_path / "again.py")],
        ["eval", BOSTON, "--set", f"X={ZEROS}", "--set", "y=[[1]]"],
        ["run", BOSTON, "--steps", "3", "--out", str(out)],
        ["predict", BOSTON, "--params", str(out / "params.npz"), "--data",
         "examples/data/boston_new.csv"],
    ]
    for args in commands:
        _, imported = dsl(args, cache)
        assert {"dsl", "numpy", "lark"} <= set(imported), args
        assert "sympy" not in imported, f"`dsl {args[0]}` imported sympy with a warm cache"


def test_a_cold_compile_imports_sympy_codegen_only_for_its_functions(tmp_path):
    """The printer's templates are looked up among the classes imported so far: a compile
    whose maths has no log1p, expm1 or log10 does not import sympy.codegen (8 ms) for their
    classes, and one that has them, which imports their classes to lower them, prints them
    by their templates."""
    model = tmp_path / "m.model"
    model.write_text("input x[N]\ninput y[N]\nparam a = 0.5\n"
                     "h = log1p(a * x) + expm1(a * x) + log10(1 + x^2)\n"
                     "sse = sum((h - y)^2)\nminimize sse\n")
    code = ("import sys; from dsl.training.runtime import compile_file; "
            "plain = compile_file(sys.argv[1], use_cache=False); "
            "print('sympy.codegen' in sys.modules); "
            "print(compile_file(sys.argv[2], use_cache=False).source)")
    proc = subprocess.run([sys.executable, "-c", code, BOSTON, str(model)], cwd=ROOT,
                          env={**os.environ, "DSL_CACHE_DIR": str(tmp_path / "cache")},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported, source = proc.stdout.split("\n", 1)
    assert imported == "False"
    for call in ("np.log1p(", "np.expm1(", "np.log10("):
        assert call in source
