"""`python -m dsl`. A `run` forks its plot painter first, before dsl's modules, lark and scipy
are imported, so that the painter's import of matplotlib overlaps theirs (dsl.views.painter);
numpy, which both processes need, is imported once, before the fork.

The process ends with `os._exit` once stdout and stderr are flushed: every file a command writes
is closed (or flushed row by row) before `main` returns, and the interpreter's teardown of numpy,
scipy and their modules would add 0.1-0.2 s to every command."""
import os
import sys

import numpy  # noqa: F401  (both processes need it: imported once, before the fork)

from dsl.views.painter import Painter

with Painter(wanted=[a for a in sys.argv[1:] if a != "--debug"][:1] == ["run"]) as painter:
    from dsl.cli import main
    code = main(painter=painter)
try:
    sys.stdout.flush()
    sys.stderr.flush()
except (OSError, ValueError):  # a reader that went away: nothing more can reach it
    pass
os._exit(code or 0)
