"""dsl.views.painter.Painter: a fresh `dsl run` draws its plots in a child forked before its
imports, which imports matplotlib meanwhile and draws the plots in two processes at once. Each
check runs in a fresh interpreter (here matplotlib is loaded already, and a Painter would rightly
not fork)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the Painter forks on Linux only")

PREAMBLE = """
import os, sys
import numpy as np
from dsl.views import plots
from dsl.views.painter import Painter
def loss(path):
    return (plots.loss_curve, ([0, 1, 2], [3.0, 2.0, 1.0], None, path, "m: loss"))
def png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
"""


def fresh(code: str, tmp_path) -> None:
    """Run `code` after PREAMBLE in a fresh interpreter in tmp_path; it asserts for itself."""
    proc = subprocess.run([sys.executable, "-c", PREAMBLE + textwrap.dedent(code)], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_child_draws_and_this_process_never_imports_matplotlib(tmp_path):
    fresh("""
        with Painter() as painter:
            assert painter.pid is not None
            written = painter.draw([loss("a.png"), loss("b.png")])
        assert written == ["a.png", "b.png"] and png("a.png") and png("b.png")
        assert "matplotlib.figure" not in sys.modules and painter.pid is None
    """, tmp_path)


def test_the_plots_are_drawn_in_two_processes_at_once(tmp_path):
    """The first (the loss curve) in the child, the others in a process it forks for them."""
    fresh("""
        with Painter() as painter:
            pids = painter.draw([(os.getpid, ())] * 3)
        assert pids[0] != pids[1] == pids[2] and os.getpid() not in pids, pids
    """, tmp_path)


def imported_by(module: str, packages: tuple[str, ...], own: tuple[str, ...], tmp_path) -> str:
    """The modules of `packages`, and of dsl other than `own`, that a fresh `import module`
    brings in, as the sorted list printed."""
    proc = subprocess.run([sys.executable, "-c", f"import sys, {module}; "
                           f"print(sorted(m for m in sys.modules if m.split('.')[0] in {packages!r} "
                           f"or m.startswith('dsl.') and m not in {own!r}))"],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    return proc.stdout.strip() + proc.stderr


def test_importing_the_painter_imports_nothing_heavy(tmp_path):
    """`python -m dsl run` forks it before numpy, lark and dsl's own modules are imported."""
    assert imported_by("dsl.views.painter",
                       ("numpy", "lark", "scipy", "sympy", "compiler", "matplotlib"),
                       ("dsl.views", "dsl.views.painter"), tmp_path) == "[]"


def test_the_plot_functions_the_child_imports_bring_no_parser_or_training_module(tmp_path):
    """The child imports dsl.views.plots while the run works: numpy and matplotlib, not lark,
    the compiler or dsl's training modules, which only its parent needs."""
    assert imported_by("dsl.views.plots", ("lark", "scipy", "sympy", "compiler"),
                       ("dsl.views", "dsl.views.painter", "dsl.views.plots"), tmp_path) == "[]"


def test_an_exception_in_the_child_is_raised_here(tmp_path):
    fresh("""
        open("file", "w").close()
        with Painter() as painter:
            try:
                painter.draw([loss("a.png"), loss("file/loss.png")])  # a folder that is a file
            except OSError as e:
                assert "file" in str(e)
            else:
                raise AssertionError("no error")
        assert "matplotlib.figure" not in sys.modules
    """, tmp_path)


def test_without_the_child_the_plots_are_drawn_here(tmp_path):
    fresh("""
        import signal
        with Painter() as painter:
            os.kill(painter.pid, signal.SIGKILL)
            assert painter.draw([loss("a.png")]) == ["a.png"] and png("a.png")
        assert "matplotlib.figure" in sys.modules
    """, tmp_path)


def test_leaving_without_drawing_ends_the_child(tmp_path):
    fresh("""
        with Painter() as painter:
            pid = painter.pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            pass
        else:
            raise AssertionError("the child is still there")
    """, tmp_path)


def test_no_child_where_matplotlib_is_loaded_already(tmp_path):
    fresh("""
        import matplotlib.figure
        with Painter() as painter:
            assert painter.pid is None
            assert painter.draw([loss("a.png")]) == ["a.png"] and png("a.png")
    """, tmp_path)


def test_a_fresh_run_writes_its_plots_through_the_child(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DSL_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "dsl", "run",
                           str(ROOT / "tests" / "data" / "nist" / "Misra1a.model"),
                           "--out", str(tmp_path / "out")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "loss.png, predicted.png, residuals.png" in proc.stdout
    for name in ("loss.png", "predicted.png", "residuals.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
