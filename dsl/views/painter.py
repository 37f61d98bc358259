"""The plot painter of a fresh `dsl run`: a child process that imports matplotlib while the run
imports the rest, compiles and fits, then draws the plots it is handed in two processes, so that
two cores draw them at once.

A fresh `dsl run` would spend 0.3 s importing matplotlib and 0.3 s drawing its three PNGs after
the fit. This module imports only the standard library, so that `python -m dsl run` forks the
painter first (dsl/__main__.py), before lark, scipy and dsl's own modules are imported.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import signal
import sys
from collections.abc import Callable


def available() -> bool:
    """Whether matplotlib is installed, so that plots will be written."""
    return importlib.util.find_spec("matplotlib") is not None


class Painter:
    """Draws plots in a child process forked at the start of a run. Forked only on Linux
    (elsewhere forking a process with libraries loaded is not safe), only when matplotlib is
    installed and not yet imported (in a process that has it, drawing here costs less than a
    fork). A child that fails hands nothing back and the plots are drawn here; an exception a
    plot raises in the child is raised here. A context manager: leaving it without `draw` (an
    error, a command that draws nothing) ends the child."""

    def __init__(self, wanted: bool = True):
        self.pid = None
        if not (wanted and sys.platform == "linux" and "matplotlib.figure" not in sys.modules
                and available()):
            return
        jobs_in, self.jobs = os.pipe()
        self.results, results_out = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.jobs)
            os.close(self.results)
            _paint(jobs_in, results_out)  # never returns
        os.close(jobs_in)
        os.close(results_out)

    def __enter__(self) -> Painter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def draw(self, jobs: list[tuple[Callable, tuple]]) -> list[str | None]:
        """Each `function(*args)`'s result, in order; an exception is raised as drawn here."""
        outcome = None
        if self.pid is not None:
            try:
                with os.fdopen(self.jobs, "wb") as f:
                    pickle.dump(jobs, f)
                with os.fdopen(self.results, "rb") as f:
                    outcome = pickle.load(f)
            except (OSError, EOFError, pickle.PickleError):
                outcome = None
            finally:
                self.jobs = self.results = None  # closed with their files
                self.close()
        if outcome is None:
            return [function(*args) for function, args in jobs]
        for ok, value in outcome:
            if not ok:
                raise value
        return [value for _, value in outcome]

    def close(self) -> None:
        """Without jobs handed over (a run that stopped on an error), the child is ended."""
        if self.pid is None:
            return
        if self.jobs is not None:
            os.close(self.jobs)
            os.close(self.results)
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self.pid = None


def _paint(jobs_in: int, results_out: int) -> None:
    """The child: import matplotlib and the plot functions, then draw the jobs and send back
    each one's result or exception. Ctrl-C is the parent's to handle; the child ends after the
    parent's jobs, or at end-of-file without them."""
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGHUP):  # not the parent's handlers
            signal.signal(sig, signal.SIG_DFL)
        quiet = os.open(os.devnull, os.O_WRONLY)  # nor its output: a reader of it would wait
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        import matplotlib.backends.backend_agg  # noqa: F401  (while the parent works)
        import matplotlib.figure  # noqa: F401
        from dsl.views import plots  # noqa: F401  (the jobs' functions, unpickled by name)
        with os.fdopen(jobs_in, "rb") as f:
            jobs = pickle.load(f)
        outcome = _draw_apart(jobs, results_out)
        with os.fdopen(results_out, "wb") as f:
            pickle.dump(outcome, f)
        status = 0
    finally:
        os._exit(status)


def _draw_apart(jobs: list[tuple[Callable, tuple]], results_out: int) -> list[tuple[bool, object]]:
    """Each job's (ok, result or exception), in two processes, one per core of a small machine:
    the first job (the loss curve, the costliest plot) drawn here, the others in a process
    forked for them (matplotlib is imported: a fork costs a few ms, a plot 0.05-0.15 s). Jobs
    whose process hands nothing back are drawn here."""
    groups = [group for group in (jobs[:1], jobs[1:]) if group]
    others = []
    for group in groups[1:]:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(read)
                os.close(results_out)  # the parent waits for that pipe's end, not for this one
                with os.fdopen(write, "wb") as f:
                    pickle.dump([_outcome(job) for job in group], f)
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        others.append((pid, read, group))
    outcome = [_outcome(job) for job in groups[0]] if groups else []
    for pid, read, group in others:
        try:
            with os.fdopen(read, "rb") as f:
                outcome += pickle.load(f)
        except (OSError, EOFError, pickle.PickleError):
            outcome += [_outcome(job) for job in group]
        finally:
            os.waitpid(pid, 0)
    return outcome


def _outcome(job: tuple[Callable, tuple]) -> tuple[bool, object]:
    function, args = job
    try:
        return True, function(*args)
    except Exception as e:  # handed back to the parent, which raises it
        return False, e
