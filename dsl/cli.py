"""The command line: the only place that prints or sets exit codes.

Exit 0 when all is well, 1 for a bad model or bad data, 2 for bad usage. A user mistake never
shows a traceback; an internal error says it is one, and `--debug` shows its traceback.
"""
from __future__ import annotations

import argparse
import sys
import traceback

from compiler.errors import DslError, UsageError
from dsl import __version__
from dsl.check import Checked, check, fmt_shape
from dsl.diagnostics import render_error, render_warning
from dsl.transform import parse, read_source


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is our UsageError (exit 2), rendered like the others."""

    def error(self, message):
        raise UsageError(message, hint=f"see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dsl", description="A declarative language for differentiable models.")
    p.add_argument("--version", action="version", version=f"dsl {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("check", help="parse and check a model: names, cycles, shapes")
    c.add_argument("model")
    c.set_defaults(func=cmd_check)
    return p


class Session:
    """What one command read, so that errors can show the lines they point at."""

    def __init__(self):
        self.sources: dict[str, str] = {}

    def load(self, path: str) -> Checked:
        try:
            text = read_source(path)
        except FileNotFoundError:
            raise UsageError(f"no such model file: {path}") from None
        except IsADirectoryError:
            raise UsageError(f"{path} is a directory, not a model file") from None
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}") from None
        self.sources[path] = text
        checked = check(parse(text, path))
        for w in checked.warnings:
            print(render_warning(w, self.sources), file=sys.stderr)
        return checked


def cmd_check(args, session: Session) -> int:
    m = session.load(args.model)
    print(f"{args.model}: ok, {len(m.order)} names"
          + (f", minimize {m.objective}" if m.objective else "")
          + (f", predict {m.predict}" if m.predict else ""))
    width = max(len(n) for n in m.order) if m.order else 0
    for name in m.order:
        st = m.statements[name]
        kind = type(st).__name__.lower().replace("assign", "node")
        print(f"  {kind:<6} {name:<{width}}  {fmt_shape(m.shapes[name]):<12} line {st.span.line}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    session = Session()
    try:
        args = build_parser().parse_args(argv)
        return args.func(args, session)
    except UsageError as e:
        print(render_error(e, session.sources), file=sys.stderr)
        return 2
    except DslError as e:
        print(render_error(e, session.sources), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in dsl, not a user mistake
        if debug:
            traceback.print_exc()
        else:
            print(f"internal error: {type(e).__name__}: {e}\n  this is a bug in dsl; "
                  "run again with --debug for the traceback", file=sys.stderr)
        return 3
