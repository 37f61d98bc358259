"""The command line: the only place that sets exit codes; what it prints on the console is
written by dsl.views.console.

Exit 0 when all is well, 1 for a bad model or bad data, 2 for bad usage. A user mistake never
shows a traceback; an internal error says it is one, and `--debug` shows its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import signal
import sys
import tempfile
import traceback

import numpy as np

from compiler.deps import ancestors
from compiler.errors import DataError, DslError, QueryError, TrainingDiverged, UsageError, suggest
from compiler.shape import fmt_shape
from dsl import __version__
from dsl.front import ast
from dsl.front.build import parse, read_source
from dsl.front.check import Checked, check
from dsl.front.diagnostics import render_error, render_warning
from dsl.front.files import open_regular, special_file
from dsl.training.checkpoint import (HistoryFile, load_checkpoint, load_params, params_file,
                                     save_fallback, save_history, save_params)
from dsl.training.config import SOLVERS, configure, with_overrides
from dsl.training.data import describe, numeric_part, read_csv, select
from dsl.training.report import ARTIFACTS, metrics, save_report
from dsl.training.runtime import (MAX_NODE_BYTES, Compiled, atomic_write, check_header,
                                  check_sizes, compile_file, data_path, default_out, model_digest)
from dsl.training.train import MAX_SOLVER_PARAMS, convergence_warning, total_steps
from dsl.views import plots
from dsl.views.painter import Painter
from dsl.views.console import ProgressBar, print_eval, print_report
from dsl.model import Model


# graphview.FORMATS, named here because graphview (like explain and lower) imports sympy, which
# the commands that run a cached module never need: those modules are imported by the commands
# that use them (a test holds the two lists equal).
GRAPH_FORMATS = ("dot", "svg", "text")


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

    c = sub.add_parser("compile", help="write the generated numpy module")
    c.add_argument("model")
    c.add_argument("-o", "--output", help="file to write (default: standard output)")
    c.set_defaults(func=cmd_compile)

    c = sub.add_parser("eval", help="values and gradients at a point")
    c.add_argument("model")
    c.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a number, a JSON list, or @file.npy / @file.csv")
    c.add_argument("--params", help="params saved by `dsl run` (.npz)")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.add_argument("--full", action="store_true",
                   help="with --json: every element of large arrays, not a summary")
    _memory_flag(c)
    c.set_defaults(func=cmd_eval)

    c = sub.add_parser("run", help="train on the model's data, report, save artifacts")
    c.add_argument("model")
    for flag, kind in (("--epochs", int), ("--steps", int), ("--batch", int), ("--lr", float),
                       ("--seed", int)):
        c.add_argument(flag, type=kind)
    c.add_argument("--optimizer", help="lm, newton, lbfgs, gd, sgd, adam or random_search")
    c.add_argument("--dtype", help="float64 or float32")
    c.add_argument("--out", help="folder for the artifacts "
                   "(default: runs/<model name>-<digest of its path>)")
    c.add_argument("--resume", action="store_true", help="start from the params saved in --out")
    c.add_argument("--no-cache", action="store_true", help="compile again, ignoring the cache")
    _memory_flag(c)
    c.set_defaults(func=cmd_run)

    c = sub.add_parser("predict", help="the model's prediction for new data")
    c.add_argument("model")
    c.add_argument("--params", required=True, help="params saved by `dsl run` (.npz)")
    c.add_argument("--data", required=True, help="a CSV with the columns the inputs are bound to")
    c.add_argument("--out", help="CSV to write (default: standard output)")
    _memory_flag(c)
    c.add_argument("--source", help="a global fit: the data source whose own params the new "
                                    "rows take (a name of its `data` statements)")
    c.set_defaults(func=cmd_predict)

    c = sub.add_parser("data", help="look at a CSV: columns, statistics, correlations")
    c.add_argument("csv")
    c.add_argument("--target", help="the column to correlate the others with")
    c.add_argument("--plot", help="write a correlation heatmap (PNG)")
    c.set_defaults(func=cmd_data)

    c = sub.add_parser("derive", help="the chain rule for each param, as on paper")
    c.add_argument("model")
    c.add_argument("--wrt", metavar="NAME",
                   help="one param (or input or node); default: every param")
    what = c.add_mutually_exclusive_group()
    what.add_argument("--expand", action="store_true",
                      help="substitute everything into one simplified expression (models of scalars)")
    what.add_argument("--jacobian", action="store_true",
                      help="∂r/∂p of a least-squares objective's residual r, written out")
    what.add_argument("--hessian", action="store_true",
                      help="∂²objective/∂a∂b for every pair of params, written out")
    form = c.add_mutually_exclusive_group()
    form.add_argument("--latex", action="store_true", help="print LaTeX")
    form.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=cmd_derive)

    c = sub.add_parser("graph", help="the computation graph: DOT, SVG (needs graphviz) or text")
    c.add_argument("model")
    c.add_argument("--format", choices=GRAPH_FORMATS, default="dot")
    c.add_argument("--derivatives", action="store_true", help="label edges with local derivatives")
    c.set_defaults(func=cmd_graph)
    return p


def _memory_flag(c) -> None:
    c.add_argument("--max-node-memory", type=_size, default=MAX_NODE_BYTES, metavar="SIZE",
                   help="the largest array a node may need, e.g. 16G (default 4G)")


def _size(text: str) -> int:
    """A size in bytes: `4G`, `512M`, `1.5GiB`, `100000`."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (t[:-1], t[-1]) if t[-1:] in units else (t, "")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a size such as 4G or 512M") from None
    if not 1 <= value < 1 << 60:
        raise argparse.ArgumentTypeError(f"`{text}` is not a size such as 4G or 512M")
    return int(value)


class Session:
    """What one command read, so that errors can show the lines they point at, the models it
    checked, so that compiling one does not parse it again, the signals that stopped it, and the
    plot painter `python -m dsl` forked for a `run` before its imports (dsl.views.painter)."""

    def __init__(self, painter: Painter | None = None):
        self.sources: dict[str, str] = {}
        self.trees: dict[str, ast.Program] = {}  # as parsed, for the model's digest
        self.checked: dict[str, Checked] = {}
        self.signals: list[int] = []
        self.painter = painter

    def status_interrupted(self) -> int:
        """128 + the signal's number, as a shell reports it: 130 for Ctrl-C, 143 for SIGTERM."""
        return 128 + (self.signals[-1] if self.signals else signal.SIGINT)

    @contextlib.contextmanager
    def stopping_on_signals(self):
        """SIGTERM and SIGHUP (a `kill`, a closed terminal) stop the command as Ctrl-C does:
        a KeyboardInterrupt, which training turns into saved params and a report."""
        def stop(signum, frame):
            self.signals.append(signum)
            raise KeyboardInterrupt

        previous = {}
        try:
            for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
                if sig is not None:
                    previous[sig] = signal.signal(sig, stop)
        except ValueError:  # not the main thread: signals stay as they are
            pass
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

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
        self.trees[path] = parse(text, path)
        checked = self.checked[path] = configure(check(self.trees[path]))
        for w in checked.warnings:
            print(render_warning(w, self.sources), file=sys.stderr)
        return checked

    def compile(self, path: str, use_cache: bool = True, meanwhile=None) -> Compiled:
        """The loaded model's module, saying why the compile cache was not used if it was not.
        `meanwhile`: what this process does while a cache miss compiles in a child."""
        compiled = compile_file(path, self.sources[path], use_cache, self.checked.get(path),
                                meanwhile)
        for w in compiled.warnings:
            print(render_warning(w, self.sources), file=sys.stderr)
        return compiled


def cmd_check(args, session: Session) -> int:
    m = session.load(args.model)
    header = check_header(m) if m.data else None
    print(f"{args.model}: ok, {len(m.order)} names"
          + (f", minimize {m.objective}" if m.objective else "")
          + (f", predict {m.predict}" if m.predict else "")
          + (f", target {m.target}" if m.target else ""))
    width = max(len(n) for n in m.order) if m.order else 0
    for name in m.order:
        st = m.statements[name]
        kind = type(st).__name__.lower().replace("assign", "node")
        print(f"  {kind:<6} {name:<{width}}  {fmt_shape(m.shapes[name]):<12} line {st.span.line}")
    if header:
        ncols, sizes = header
        print(f"  data   {data_path(m)}: {ncols} columns in its header (rows not read)")
        for d, k in sizes.items():
            print(f"  size   {d} = {k}, from the columns bound to it")
    return 0


def cmd_compile(args, session: Session) -> int:
    checked = session.load(args.model)
    if args.output:
        _not_an_input("-o", args.output, _inputs(checked))
    compiled = session.compile(args.model)
    if args.output:
        _writing(atomic_write, args.output, compiled.source.encode("utf-8"))
        print(f"wrote {args.output} ({len(compiled.source.splitlines())} lines, "
              f"compiled in {compiled.compile_seconds:.3f} s{', cached' if compiled.cached else ''})")
    else:
        sys.stdout.write(compiled.source)
    return 0


def cmd_eval(args, session: Session) -> int:
    session.load(args.model)
    model = Model(session.compile(args.model))
    model.max_node_bytes = args.max_node_memory
    if args.params:
        model.set_params(load_params(_named_file(args.params, "params file"), model.checked).params)
    values = dict(_parse_set(item, model) for item in args.set)
    result = model.eval(values)
    if args.json:
        print(json.dumps(result.to_json(full=args.full), allow_nan=False))
        return 0
    print_eval(result, model.checked.file)
    return 0


def _parse_set(item: str, model: Model) -> tuple[str, np.ndarray]:
    """`--set NAME=VALUE`: a number, a JSON list, or @file.npy / @file.csv."""
    name, eq, text = item.partition("=")
    name = name.strip()
    if not eq or not name:
        raise UsageError(f"--set takes NAME=VALUE, got `{item}`")
    m = model.checked
    if name not in m.inputs and name not in m.params:
        close = suggest(name, [*m.inputs, *m.params])
        raise UsageError(f"--set {name}: `{name}` is not an input or param of {m.file}",
                         hint=f"did you mean `{close}`?" if close else
                         "inputs: " + ", ".join(m.inputs) + "; params: " + ", ".join(m.params))
    text = text.strip()
    if text.startswith("@"):
        value = _read_array(text[1:], name)
    else:
        try:
            value = json.loads(text)
            arr = np.asarray(value, dtype=float)
        except (ValueError, TypeError, RecursionError):  # RecursionError: lists nested 3000 deep
            raise UsageError(f"--set {name}: `{_cut(text)}` is not a number or a JSON list of "
                             "numbers", hint="e.g. --set x=3 or --set 'u=[[1, 2], [3, 4]]'") from None
        value = arr
    try:
        check_sizes(m, {name: value}, None)
    except DataError as e:
        raise UsageError(f"--set {name}: {e.message}", hint=e.hint) from None
    return name, value


def _named_file(path: str, what: str) -> str:
    """A file named on the command line: missing, a folder, or a device or FIFO (never opened:
    it would be read without end, or block) is bad usage (exit 2), said without a location:
    there is no line in it to point at."""
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory, not a {what}")
    if not os.path.exists(path):
        raise UsageError(f"no such {what}: {path}")
    if special_file(path):
        raise UsageError(f"cannot read {what} {path}: {special_file(path)}",
                         hint="give the path of a file")
    return path


def _cut(text: str) -> str:
    """A value from the command line, shortened for a message."""
    return text if len(text) <= 60 else text[:57] + "..."


def _read_array(path: str, name: str) -> np.ndarray:
    if not os.path.exists(path):
        raise UsageError(f"--set {name}: no such file {path}")
    if special_file(path):
        raise UsageError(f"--set {name}: cannot read {path}: {special_file(path)}")
    try:
        if path.endswith(".npy"):
            with open_regular(path) as f:
                return np.asarray(np.load(f, allow_pickle=False), dtype=float)
        if path.endswith(".csv"):
            return read_csv(path).values
    except OSError as e:
        raise UsageError(f"--set {name}: cannot read {path}: {e.strerror or e}") from None
    except (ValueError, EOFError):  # numpy's own words would advise loading a pickle (unsafe)
        raise UsageError(f"--set {name}: {path} is not a .npy file of numbers",
                         hint="save one with numpy.save") from None
    raise UsageError(f"--set {name}: @{path} must be a .npy or .csv file")


def cmd_run(args, session: Session) -> int:
    with session.painter or Painter() as painter:  # imports matplotlib while this process fits
        return _run(args, session, painter)


def _run(args, session: Session, painter: Painter) -> int:
    checked = session.load(args.model)
    if checked.objective is None:
        raise UsageError(f"{args.model} has no `minimize` statement: nothing to train",
                         hint=checked.minimize_hint())
    name = os.path.splitext(os.path.basename(args.model))[0]
    out = args.out or default_out(args.model)
    digest = model_digest(session.sources[args.model], session.trees[args.model])
    _not_an_input("--out", out, _inputs(checked), ARTIFACTS + (f"{name}_compiled.py",))
    solvers = "scipy.optimize" not in sys.modules and _solves(args, checked)
    compiled = session.compile(args.model, use_cache=not args.no_cache,
                               meanwhile=_import_solvers if solvers else None)
    drawn = with_overrides(checked.train, seed=args.seed, dtype=args.dtype)
    model = Model(compiled, drawn.seed, drawn.dtype)  # the params are drawn once, with the flags'
    model.max_node_bytes = args.max_node_memory
    flags = dict(epochs=args.epochs, steps=args.steps, batch=args.batch, lr=args.lr,
                 optimizer=args.optimizer, seed=args.seed, dtype=args.dtype)
    cfg = model.fit_config(**flags)
    ds = model.training_data(cfg.dtype)
    model.check_data_memory(ds, cfg.dtype)
    _check_out(out, ARTIFACTS + (f"{name}_compiled.py",))
    start, history = (_resume(out, checked, model, cfg, digest) if args.resume else
                      (None, _writing(HistoryFile, os.path.join(out, "history.csv")).history))
    for pname, value in model.params.items():
        if not np.all(np.isfinite(value)):
            raise DataError(f"param `{pname}` starts with values that are not finite",
                            checked.params[pname].span, "saved params are always finite; is its "
                            "start too large for " + cfg.dtype + "?")
    n = len(next(iter(ds.train.values())))
    print(f"training {name}: {cfg.optimizer}, {n} training rows, "
          f"{'at most ' if cfg.optimizer.name in SOLVERS else ''}{total_steps(cfg, n)} "
          f"{'iterations' if cfg.optimizer.name in SOLVERS else 'steps'}, {cfg.dtype}, compiled in {compiled.compile_seconds:.3f} s"
          + (" (cached)" if compiled.cached else ""))
    bar = ProgressBar(sys.stdout)
    model.fit(bar.update, start, history,
              _checkpointing(os.path.join(out, "params.npz"), ds, digest),
              keep_params=args.resume, **flags)
    result = model.last_fit
    bar.close()
    for note in result.notes:
        print(f"note: {note}")
    # What training produced is saved first, before anything that could still go wrong.
    if result.checkpoint:  # a solver whose start is not finite has none
        result.checkpoint.model = digest
    _save_params(os.path.join(out, "params.npz"), name, model.params, ds.transforms,
                 result.checkpoint, ds.classes)
    _writing(save_history, os.path.join(out, "history.csv"), result)
    with np.errstate(all="ignore"):
        report = metrics(model, ds, result)
        report["optimizer"] = str(cfg.optimizer)  # the one used, with the overrides applied
        _writing(save_report, os.path.join(out, "report.json"), report)
        _writing(atomic_write, os.path.join(out, f"{name}_compiled.py"),
                 compiled.source.encode("utf-8"))
        pictures = _writing(plots.save_plots, out, model, ds, result, painter)
    print_report(report)
    warning = convergence_warning(result.convergence, cfg, model.module, model.params)
    if warning:
        print(render_warning(warning, session.sources), file=sys.stderr)
    print(f"saved {out}/: params.npz, history.csv, report.json, {name}_compiled.py"
          + (", " + ", ".join(os.path.basename(p) for p in pictures) if pictures else ""))
    if not pictures:
        print("plots skipped: matplotlib is not installed (pip install 'dsl[plot]')")
    again = f"`dsl run {args.model}{_same_flags(args)} --resume --out {out}`"
    if result.interrupted:
        kept = (f"the params of step {result.steps}" if result.steps == result.stopped_at else
                f"the params of step {result.steps}, the last log point (an update may have been "
                "half done)")
        by = f" by {signal.Signals(session.signals[-1]).name}" if session.signals else ""
        print(f"interrupted{by} at step {result.stopped_at}: saved {kept} in "
              f"{os.path.join(out, 'params.npz')} and the history so far in "
              f"{os.path.join(out, 'history.csv')}; continue with {again}", file=sys.stderr)
        return session.status_interrupted()
    if result.divergence:
        _diverged(result.divergence, checked, cfg, args, out)
    return 0


def _solves(args, checked: Checked) -> bool:
    """Whether this run fits with a solver of scipy.optimize: one named by --optimizer or the
    `train` block, or none named and at most MAX_SOLVER_PARAMS param elements (choose_optimizer).
    A misspelt name is said later, where it is said when nothing is compiled."""
    named = args.optimizer or (checked.train.optimizer and checked.train.optimizer.name)
    if named:
        return named in SOLVERS
    return sum(math.prod(checked.shapes[p]) for p in checked.params) <= MAX_SOLVER_PARAMS


def _import_solvers() -> None:
    """What a cold `run` imports while its module compiles in a child: the fit's solvers and
    scipy.optimize (0.3 s; see dsl.training.runtime._compiled_aside)."""
    import dsl.training.solvers  # noqa: F401


def _diverged(d, checked: Checked, cfg, args, out: str) -> None:
    """Say what would help: a tenth of the learning rate from the last finite params, or, when
    the loss was not finite before any update, the start itself (no learning rate can help)."""
    node = checked.statements.get(d.node.split(".")[0]) if d.node else None
    saved = (f"{os.path.join(out, 'params.npz')} and the history in "
             f"{os.path.join(out, 'history.csv')}")
    if d.at_start:
        raise TrainingDiverged(
            f"training cannot start: {d.detail}; nothing was trained (the params are saved in "
            f"{saved})", node.span if node else None,
            "no learning rate can help: the values are non-finite before the first update; give "
            "the params smaller starts, or `standardize` the inputs that feed this node")
    lr = cfg.optimizer.args.get("lr")
    same = _same_flags(args, without="lr")
    advice = (f"lower the learning rate (now {lr:g}), say to a tenth: "
              f"`dsl run {args.model}{same} --resume --lr {lr / 10:g} --out {out}` continues from "
              f"step {d.kept} at lr {lr / 10:g} (without --resume, it starts afresh); "
              "standardizing the inputs may help too"
              if lr else "start the params where the model is finite (the values on the "
              "`param` lines), or bound them (`in [lo, hi]`)")
    raise TrainingDiverged(f"training diverged: {d.detail}; the last finite params (step "
                           f"{d.kept}) are saved in {saved}", node.span if node else None, advice)


def _same_flags(args, without: str = "") -> str:
    """The training flags this `run` was given, to repeat in the command that continues it."""
    return "".join(f" --{flag} {getattr(args, flag)}" for flag in
                   ("epochs", "steps", "batch", "lr", "optimizer", "seed", "dtype")
                   if flag != without and getattr(args, flag) is not None)


def _inputs(m: Checked) -> dict[str, str]:
    """The files a model reads, by what they are to it."""
    return {"the model": m.file, **({"the model's data": data_path(m)} if m.data else {})}


def _not_an_input(flag: str, path: str, inputs: dict[str, str], artifacts: tuple[str, ...] = ()):
    """Refuse (exit 2) to write `path` (or, for a folder, its `artifacts`) over a file this
    command reads: `compile m.model -o m.model` must not replace the model with Python."""
    written = [path] + [os.path.join(path, a) for a in artifacts]
    for what, source in inputs.items():
        for target in written:
            if _same_file(target, source):
                raise UsageError(f"{flag} {path} would overwrite {what}, {source}, which this "
                                 "command reads", hint=f"give {flag} another "
                                 + ("folder" if artifacts else "file"))


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)  # also through links
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def _checkpointing(path: str, ds, digest: str):
    """What `fit` calls at log points: save the params with their checkpoint (and the model's
    digest), atomically. A failure (a full disk) does not stop training: it is said once, and
    the end tries again."""
    failed = []

    def save(params, checkpoint):
        checkpoint.model = digest
        try:
            save_params(path, params, ds.transforms, checkpoint, ds.classes)
        except OSError as e:
            if not failed:
                print(f"\nwarning: cannot write the checkpoint {path}: {e.strerror or e}; training "
                      "goes on", file=sys.stderr)
            failed.append(e)
    return save


def _check_out(out: str, artifacts: tuple[str, ...]) -> None:
    """Before training: the folder exists (it is made), a file can be created in it, and no
    artifact's name is taken by a folder; so that a run does not train to the end for nothing."""
    _writing(lambda folder: os.makedirs(folder, exist_ok=True), out)
    for artifact in artifacts:
        path = os.path.join(out, artifact)
        if os.path.exists(path) and not os.path.isfile(path):
            raise DataError(f"cannot write {path}: it is "
                            + ("a directory" if os.path.isdir(path) else "not a regular file"),
                            hint="move it away, or give --out another folder")
    try:
        fd, probe = tempfile.mkstemp(dir=out, prefix=".tmp-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise DataError(f"cannot write in {out}: {e.strerror or e}",
                        hint="give --out a folder you can write to") from None


def _save_params(path: str, name: str, params, transforms, checkpoint, classes) -> None:
    """Save the trained params; if that fails (a full disk, say), put them where they can be
    written, and say where: a run's result is never thrown away."""
    data = None
    try:
        data = params_file(params, transforms, checkpoint, classes)
        atomic_write(path, data)
    except OSError as e:
        elsewhere = save_fallback(name, data) if data is not None else None
        raise DataError(f"cannot write {path}: {e.strerror or e}; " + (
            f"the params are saved in {elsewhere} instead" if elsewhere else
            "nor could the params be saved anywhere else"),
            hint="free some space or fix the folder, then move that file to " + path
            if elsewhere else "check that the folder can be written to and the disk has space") \
            from None


def _writing(write, path: str, *args):
    """`write(path, ...)` for a file the user asked for; failing to write (a full disk, a read-only
    or missing folder) is a problem of the place, reported as such, not a bug."""
    try:
        return write(path, *args)
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}",
                        hint="check that its folder exists and can be written to, and that the disk "
                        "has space") from None


def _resume(out: str, checked: Checked, model: Model, cfg, digest: str):
    """`run --resume`: the params saved in `out`, and the checkpoint and history saved with
    them, so that training continues from the step it stopped at, up to the planned total.
    A checkpoint recorded for another model (by its digest) is refused."""
    saved = os.path.join(out, "params.npz")
    start = load_checkpoint(saved)
    if start is not None and start.model is not None and start.model != digest:
        raise DataError(f"{saved} is the checkpoint of another model, not of {checked.file} "
                        f"(its model digest is {start.model[:12]}, this model's {digest[:12]}): "
                        "it cannot be resumed", hint="a model edited since counts as another "
                        f"one; run without --resume to start afresh, or give --out a new folder "
                        f"to keep {out}")
    if start is not None and start.model is None:
        print(f"note: {saved} does not record which model it is from (an older dsl saved it): "
              "taking it as this model's")
    params = load_params(saved, checked).params
    missing = [p for p in checked.params if p not in params]
    if missing:
        raise DataError(f"{saved} has no value for param `{missing[0]}`",
                        hint="was it saved from this model? Run without --resume to start afresh")
    model.set_params({k: params[k] for k in checked.params})
    model.params = {k: v.astype(cfg.dtype) for k, v in model.params.items()}
    sink = _writing(HistoryFile, os.path.join(out, "history.csv"), start.step if start else None)
    if start is None:
        print(f"resuming from {saved}, which has no checkpoint: steps, optimizer state and "
              "history start again")
    else:
        print(f"resuming from {saved} at step {start.step}"
              + ("" if sink.readable else " (no readable history.csv: the history starts here)"))
    return start, sink.history


def _source_rows(checked, source: str | None, rows: int) -> np.ndarray:
    """A global fit's new rows all come from the source `--source` names: its 0/1 column."""
    names = checked.source_names
    if source not in names:
        raise UsageError(f"{checked.file} is a global fit: say which source the new rows are "
                         "from" if source is None else f"`{source}` is not a data source of "
                         f"{checked.file}", hint="--source " + " | ".join(names))
    out = np.zeros((rows, len(names)))
    out[:, names.index(source)] = 1.0
    return out


def cmd_predict(args, session: Session) -> int:
    checked = session.load(args.model)
    if checked.predict is None:
        raise UsageError(f"{args.model} has no `predict` statement")
    params, data = _named_file(args.params, "params file"), _named_file(args.data, "data file")
    if args.out:
        _not_an_input("--out", args.out, {**_inputs(checked), "the data": args.data,
                                          "the params": args.params})
    model = Model(session.compile(args.model))
    model.max_node_bytes = args.max_node_memory
    model.load_params(params)
    table = read_csv(data)
    reads = ancestors([checked.predict], checked.reads)
    inputs = {}
    for name, inp in checked.inputs.items():
        if name not in reads:
            continue
        if inp.binding is None:
            raise UsageError(f"input `{name}` is not bound to a column, so `predict` cannot read it")
        if inp.binding.columns.kind == "sources":
            inputs[name] = _source_rows(checked, args.source, len(table.values))
            continue
        onehot = model.onehot(name) if inp.binding.columns.kind == "onehot" else None
        values, _ = select(table, inp.binding.columns, onehot)
        inputs[name] = values[:, 0] if len(inp.dims) == 1 else values
    yhat = np.asarray(model.predict(**inputs))
    yhat = yhat.reshape(len(yhat), -1) if yhat.ndim else yhat.reshape(1, 1)
    cols = [checked.predict] if yhat.shape[1] == 1 else [f"{checked.predict}_{i}" for i in range(yhat.shape[1])]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    writer.writerows([[repr(float(v)) for v in row] for row in yhat])
    if args.out:
        _writing(atomic_write, args.out, buf.getvalue().encode())
        print(f"wrote {len(yhat)} predictions to {args.out}")
    else:
        sys.stdout.write(buf.getvalue())
    return 0


def cmd_data(args, session: Session) -> int:
    if args.plot:
        _not_an_input("--plot", args.plot, {"the data": args.csv})
    table = read_csv(_named_file(args.csv, "data file"))
    print(describe(table, args.target))
    if args.plot:
        written = plots.correlation_heatmap(table, args.plot)
        shown, numeric = plots.heatmap_columns(table), len(numeric_part(table).columns)
        capped = (f" (the correlations of the first {shown} of {numeric} columns: "
                  f"a heatmap shows at most {plots.HEATMAP_MAX})" if shown < numeric else "")
        print(f"wrote {written}{capped}" if written else
              "plot skipped: matplotlib is not installed (pip install 'dsl[plot]')")
    return 0


def cmd_derive(args, session: Session) -> int:
    from dsl.views import explain
    from compiler.lower import lower
    m = session.load(args.model)
    graph = lower(m, session.sources[args.model])
    if args.jacobian or args.hessian:
        derivation = (explain.jacobian if args.jacobian else explain.hessian)(graph, args.wrt)
    else:
        derivation = explain.derive(graph, args.wrt, expand=args.expand)
    reports = ({r: explain.propagation(graph, r) for r in graph.reports}
               if not (args.wrt or args.jacobian or args.hessian) else {})
    if args.json:
        out = derivation.to_json()
        if reports:
            out["reports"] = [{"name": r, "text": t, "latex": tex}
                              for r, (t, tex) in reports.items()]
        print(json.dumps(out, ensure_ascii=False, indent=2))
    elif args.latex:
        print("\n\n".join([derivation.latex] + [tex for _, tex in reports.values()]))
    else:
        print("\n\n".join([derivation.text] + [t for t, _ in reports.values()]))
    return 0


def cmd_graph(args, session: Session) -> int:
    from dsl.views import graphview
    from compiler.lower import lower
    m = session.load(args.model)
    graph = lower(m, session.sources[args.model])
    sys.stdout.write(graphview.render(graph, args.format, args.derivatives))
    return 0


def main(argv: list[str] | None = None, painter: Painter | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # accepted anywhere: `dsl run m.model --debug` as well
    argv = [a for a in argv if a != "--debug"]
    session = Session(painter)
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:  # --help and --version have printed and want to stop
            return e.code if isinstance(e.code, int) else 0
        with session.stopping_on_signals():
            return args.func(args, session)
    except (UsageError, QueryError) as e:  # a flag asked what cannot be done
        print(render_error(e, session.sources), file=sys.stderr)
        return 2
    except DslError as e:
        print(render_error(e, session.sources), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted" + (f" by {signal.Signals(session.signals[-1]).name}"
                               if session.signals else ""), file=sys.stderr)
        return session.status_interrupted()
    except BrokenPipeError:  # the reader went away (`dsl data f.csv | head`): not a bug
        try:  # so that the interpreter's final flush does not complain again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0
    except MemoryError as e:  # past --max-node-memory or the data limits: the machine's limit
        print(render_error(DataError(f"out of memory: {e}", hint="use fewer rows or smaller "
                                     "shapes (limits: docs/LANGUAGE.md section 14)"),
                           session.sources), file=sys.stderr)
        return 1
    except Exception as e:  # a bug in dsl, not a user mistake
        if debug:
            traceback.print_exc()
        else:
            print(f"internal error: {type(e).__name__}: {e}\n  this is a bug in dsl; "
                  "run again with --debug for the traceback", file=sys.stderr)
        return 3
