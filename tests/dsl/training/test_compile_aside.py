"""dsl.training.runtime: a cache miss given `meanwhile` is compiled in a forked child while this
process runs `meanwhile` (a cold `dsl run` imports scipy.optimize there). Each check runs in a
fresh interpreter: this one has sympy and scipy imported already."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MODEL = ROOT / "tests" / "data" / "nist" / "Misra1a.model"
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the child is forked on Linux only")

PREAMBLE = f"""
import os, sys
from dsl.training.runtime import compile_file
MODEL = {str(MODEL)!r}
here = os.getpid()
ran = []
def meanwhile():
    ran.append(os.getpid())
def no_child_left():
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False
"""


def fresh(code: str, tmp_path) -> None:
    """Run `code` after PREAMBLE in a fresh interpreter; it asserts for itself."""
    proc = subprocess.run([sys.executable, "-c", PREAMBLE + textwrap.dedent(code)], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "DSL_CACHE_DIR": str(tmp_path / "cache")},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_child_compiles_while_this_process_runs_meanwhile(tmp_path):
    fresh("""
        aside = compile_file(MODEL, use_cache=False, meanwhile=meanwhile)
        assert ran == [here] and no_child_left()
        assert "sympy" not in sys.modules  # the derivation was the child's
        assert not aside.cached and aside.module.LEAST_SQUARES is not None
        assert aside.source == compile_file(MODEL, use_cache=False).source
    """, tmp_path)


def test_the_childs_module_is_cached_as_one_compiled_here(tmp_path):
    fresh("""
        first = compile_file(MODEL, meanwhile=meanwhile)
        again = compile_file(MODEL, meanwhile=meanwhile)
        assert not first.cached and again.cached and again.source == first.source
        assert ran == [here]  # a cache hit forks nothing and has nothing to do meanwhile
    """, tmp_path)


def test_a_model_mistake_found_in_the_child_is_raised_here(tmp_path):
    fresh("""
        import compiler.lower
        from compiler.errors import DerivationError, Span
        def lower(checked, text):  # a mistake only the derivation finds
            raise DerivationError("this has no real value", Span(MODEL, 10, 1, 10, 5), "a hint")
        compiler.lower.lower = lower
        try:
            compile_file(MODEL, use_cache=False, meanwhile=meanwhile)
        except DerivationError as e:
            assert (e.message, e.span.line, e.hint) == ("this has no real value", 10, "a hint")
        else:
            raise AssertionError("no error")
        assert ran == [here] and no_child_left()
    """, tmp_path)


def test_a_child_that_dies_leaves_the_compile_to_this_process(tmp_path):
    fresh("""
        import compiler.lower
        real = compiler.lower.lower
        def lower(checked, text):
            if os.getpid() != here:
                os._exit(3)  # the child dies without a word
            return real(checked, text)
        compiler.lower.lower = lower
        compiled = compile_file(MODEL, use_cache=False, meanwhile=meanwhile)
        assert compiled.module.LEAST_SQUARES is not None and ran == [here] and no_child_left()
    """, tmp_path)


def test_an_interrupt_meanwhile_ends_the_child(tmp_path):
    fresh("""
        def interrupted():
            raise KeyboardInterrupt
        try:
            compile_file(MODEL, use_cache=False, meanwhile=interrupted)
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("not interrupted")
        assert no_child_left()
    """, tmp_path)


def test_a_cold_run_compiles_beside_scipys_import(tmp_path):
    """End to end, a cold `python -m dsl run` of a solver's fit: the same module and report."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DSL_CACHE_DIR": str(tmp_path / "cache")}
    outs = []
    for flags in (["--no-cache"], ["--no-cache", "--optimizer", "gd", "--steps", "1"]):
        out = tmp_path / f"out{len(outs)}"
        proc = subprocess.run([sys.executable, "-m", "dsl", "run", str(MODEL), "--out", str(out),
                               *flags], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0 and "internal error" not in proc.stderr, proc.stderr
        outs.append(out)
    assert (outs[0] / "Misra1a_compiled.py").read_text() == \
        (outs[1] / "Misra1a_compiled.py").read_text()


def test_the_child_ends_when_its_parent_is_killed(tmp_path):
    """kill -9 leaves the parent no time to end the child: the child dies with it."""
    script = PREAMBLE + textwrap.dedent("""
        import signal, time
        import compiler.lower
        def lower(checked, text):  # a compile that would take two minutes
            with open("pid.tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace("pid.tmp", "child.pid")
            time.sleep(120)
        compiler.lower.lower = lower
        def killed():
            while not os.path.exists("child.pid"):
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)
        compile_file(MODEL, use_cache=False, meanwhile=killed)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == -9
    child = int((tmp_path / "child.pid").read_text())
    for _ in range(200):
        if not alive(child):
            return
        time.sleep(0.05)
    raise AssertionError("the child outlived its parent")


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
