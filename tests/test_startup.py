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
