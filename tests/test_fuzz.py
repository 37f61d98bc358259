"""Fuzzing `check` and `run --steps 1` (issue 8).

Random text, random bytes, mutations of the examples (tokens and lines deleted, duplicated,
swapped, replaced) and mutations of their CSV files go through the command line in-process
(`dsl.cli.main`, output captured). Every case must end in a rendered error with exit status 1
(2 for bad usage) or in a clean success: no other exit status, no "Traceback", no "internal
error", never a hang. Each case runs under a time limit (SIGALRM, which interrupts Python code);
`faulthandler` is the backstop for a hang inside one C call that no signal interrupts: it dumps
every thread's stack and ends the process, so a run never blocks for ever.

    python -m pytest tests/test_fuzz.py                  # a few hundred cases (default run)
    python -m pytest -m fuzz tests/test_fuzz.py -s       # the campaign: more than 10,000 cases

Hostile models written by hand (`HOSTILE`: power towers, inlining bombs, nesting past sympy's
and Python's limits, non-finite numbers, shapes too large to allocate) run in the default run.

Everything is seeded (`DSL_FUZZ_SEED`, default 8): a failure names its kind and index, and its
input is kept in the test's tmp folder to replay with `python -m dsl check FILE`.
"""
from __future__ import annotations

import contextlib
import faulthandler
import gzip
import io
import os
import random
import re
import shutil
import signal
import string
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from dsl.views import plots
from dsl.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SEED = int(os.environ.get("DSL_FUZZ_SEED", "8"))

CASE_SECONDS = 20.0  # SIGALRM per case
HARD_SECONDS = 120.0  # faulthandler: a hang in C code ends the process with every stack
PLOT_EVERY = 40  # matplotlib is slow: draw the plots of one successful `run` in this many

# Cases per kind: the default run (a few hundred, well under 30 s) and the campaign (`-m fuzz`).
SAMPLE = {"text": 60, "bytes": 50, "tokens": 90, "lines": 60, "data": 40}
CAMPAIGN = {"text": 2000, "bytes": 1500, "tokens": 3500, "lines": 2500, "data": 1000}

# A model beyond the examples, so that mutations reach the rest of the language: list columns,
# const, def, float32, momentum, glorot/he/normal, every elementwise built-in, transpose,
# sum/mean/logsumexp with and without an axis, `log every`.
EXTRA_MODELS = {
    "extra_boston.model": """\
# every elementwise built-in, transpose and the reductions, trained in float32 with momentum
data "data/boston.csv" split 0.75 seed 3
input X[N, 2] <- RM, LSTAT standardize
input y[N]    <- MEDV

const half = 0.5
param W[2, 3] ~ glorot
param c[3]    ~ normal(0, 0.1)
param v[3, 1] ~ he
param a = 22

def act(u) = tanh(u) + half * relu(u) - softplus(-abs(u))

H    = act(X @ W + c)
Z    = transpose(H @ v)
yhat = sum(Z, axis = 0) + a
reg  = logsumexp(max(sin(W), cos(W)) - min(exp(-W^2), sqrt(abs(W) + 1))) + mean(square(c), axis = 0)
loss = mean((yhat - y)**2) + 0.001 * reg / 2

minimize loss
predict yhat

train {
    optimizer sgd(lr = 0.001, momentum = 0.9)
    batch 32
    epochs 2
    seed 1
    dtype float32
    log every 5
}
""",
}

# Hostile models found by fuzzing or written to probe the edges (each was a hang, a crash or an
# internal error before its fix): numbers folded exactly by sympy, complex and infinite values,
# inlining bombs, nesting deeper than sympy or Python's parser take, shapes too large to
# allocate, numbers too large for a float64.
def _x(loss: str, before: str = "") -> str:
    """A model of a scalar input x and a param w (eval sets x), minimizing `loss`."""
    return f"input x\nparam w = 1\n{before}loss = {loss}\nminimize loss\n"


def _d(loss: str, after: str = "") -> str:
    """A model on Boston's RM and MEDV (run trains it), minimizing `loss`."""
    return ('data "data/boston.csv"\ninput x[N] <- RM\ninput y[N] <- MEDV\nparam w = 1\n'
            f"loss = {loss}\nminimize loss\n{after}")


def _nest(head: str, inner: str, k: int) -> str:
    return head * k + inner + ")" * k


def _balanced(factors: list[str]) -> str:
    """A product as a balanced tree of parentheses: shallow enough for the parser."""
    if len(factors) == 1:
        return factors[0]
    half = len(factors) // 2
    return f"({_balanced(factors[:half])} * {_balanced(factors[half:])})"


def _defs(body: str, k: int) -> str:
    return "def f0(a) = a * w\n" + "".join(
        f"def f{i}(a) = {body.format(p=f'f{i - 1}')}\n" for i in range(1, k))


HOSTILE = {
    "power tower": _x("w * x * 9^9^9"),
    "huge exponent": _x("w * x * 2^99999999999999999999"),
    "cube root of a negative": _x("w * x * (-8)^(1/3)"),
    "zero to a negative power": _x("w * x + 0^-1"),
    "log of zero": _x("w * x + log(0)"),
    "sqrt of -1": _x("w * x + sqrt(-1)"),
    "sqrt of a negative square": _x("sqrt(-(w * x)^2)"),
    "division by zero": _x("w * x / 0"),
    "division by x - x": _x("w / (x - x)"),
    "infinite literal": _x("w * x * 1e999"),
    "infinite const": _x("w * x * c", "const c = 1e999\n"),
    "infinite learning rate": _d("mean((w * x - y)^2)", "train {\n optimizer gd(lr = 1e999)\n}\n"),
    "overflowing uniform": _x("w * x * v", "param v ~ uniform(-1e308, 1e308)\n"),
    "overflowing random search": _d("mean((w * x - y)^2)",
                                    "train {\n optimizer random_search(10, -1e308, 1e308)\n}\n"),
    "overflowing normal": _d("mean((w * v * x - y)^2)") + "param v ~ normal(0, 1e308)\n",
    "huge exponent of x": _x("x ^ 1e308 * w"),
    "huge integer": _x("w * x * 99999999999999999999999999999999999"),
    "def bomb": _x("f39(x)", _defs("{p}(a) * {p}(a)", 40)),
    "argument bomb": _x(_nest("g(", "x", 40), "def g(a) = a + a * w\n"),
    "/etc/passwd as data": 'data "/etc/passwd"\ninput x[N] <- root\n' + _x("w * mean(x)")[8:],
    "def nested 9 deep": _x("g(" * 9 + "x * w" + ")" * 9, "def g(a) = sin(a)*cos(a) + a\n"),
    "a product of 300 params": _x("x * " + _balanced([f"sin(p{i})" for i in range(300)]),
                                  "".join(f"param p{i} = 1\n" for i in range(300))),
    "def chain of 400": _x("f399(x)", _defs("sin({p}(a)) + 1", 400)),
    "def chain of 100": _x("f99(x)", _defs("sin({p}(a)) + 1", 100)),
    "sin nested 150 deep": _x(_nest("sin(", "x * w", 150)),
    "sigmoid nested 110 deep": _x(_nest("sigmoid(", "x * w", 110)),
    "parentheses 5000 deep": _x(_nest("(", "x * w", 5000)),
    "5000 minus signs": _x("-" * 5000 + "x * w"),
    "a sum of 5000 terms": _x(" + ".join(["x * w"] * 5000)),
    "a param of 2^64 numbers": _x("sum(W) * x * w", "param W[4294967296, 4294967296] ~ he\n"),
    "a param too large for numpy": _x("sum(W) * x * w", "param W[99999999999999999999] = 0\n"),
    "a huge axis": _x("sum(v, axis = 99999999999999999999) * x * w", "param v[3] = 1\n"),
    "an unbound input": _d("mean((w * x - y)^2) * z") + "input z\n",
    "no bound input": 'data "data/boston.csv"\nparam w = 1\nloss = (w - 3)^2\nminimize loss\n',
    "a carriage return in a statement": _x("w * x\r    + 1"),
    "control characters": _x("w * x \x0c\x0c + 1"),
    "a NUL byte": _x("w * x\x00"),
    "an empty file": "",
    "only a BOM": "\ufeff",
    "a long line": _x("w * x" + " " * 100_000 + "+ 1"),
}

# Tokens as a mutation sees them: strings, names, numbers, two-character operators, comments,
# line ends, blanks, and any other single character.
TOKEN = re.compile(r'"[^"\n]*"|[A-Za-z_]\w*|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\*\*|<-|\.\.'
                   r"|#[^\n]*|\r?\n|[ \t]+|.", re.S)

# Tokens a mutation may bring in: the grammar's punctuation and keywords, edge-case numbers
# (inf when parsed, subnormal, huge integers), odd characters, other data paths. No dims that
# numpy would try to allocate and fill (tens of GB): too large for numpy is refused at once.
VOCABULARY = [
    "(", ")", "[", "]", "{", "}", ",", "=", "~", "^", "**", "@", "-", "+", "*", "/", "<-", "..",
    "#", "\n", "\r", "\t", " ", '"', "\\", "'", ";", ":", "!", "$", "%", "&", "|", "`", "?",
    "0", "1", "2", "-1", "0.0", ".5", "1e999", "1e-400", "1e308", "99999999999999999999",
    "1e6", "3.5", "00", "1.", "N", "M", "axis", "axis = 1", "axis = -1",
    "axis = 5", "input", "param", "const", "def", "minimize", "predict", "data", "train",
    "onehot", "standardize", "split", "seed", "log", "every", "optimizer", "batch", "epochs",
    "steps", "dtype", "float32", "float64", "float16", "gd", "sgd", "adam", "random_search",
    "lr", "momentum", "beta1", "eps", "trials", "low", "high", "normal", "uniform", "glorot",
    "he", "exp", "log", "sqrt", "abs", "sin", "cos", "tanh", "sigmoid", "relu", "softplus",
    "square", "max", "min", "sum", "mean", "logsumexp", "softmax", "transpose", "x", "y", "é",
    "∂", "Ω", "\x00", "\ufeff", "\u2028", "\x0c", "\x0b", "\x85", '"data/boston.csv"',
    '"data/iris.csv"', '"data/pendulum.csv"', '"nothing.csv"', '"data"', '""', '"/"',
    '"../data/boston.csv"', '"data/mnist_5k.csv.gz"',
    # fragments of the hostile models above, so that mutations splice them in anywhere
    "9^9^9", "2^99999999999999999999", "(-8)^(1/3)", "/ 0", "log(0)", "sqrt(-1)", "1e308",
    "-1e308", "sqrt(-(x^2))", "\r    ", "sigmoid(sigmoid(sigmoid(sigmoid(", "[4294967296, 4294967296]",
]

CSV_JUNK = ["", " ", "nan", "NaN", "inf", "-inf", "1e999", "abc", "1,2", '"3"', "0x10", "1_0",
            "--1", "é", "\x00", "1e-400", "99999999999999999999999", "TRUE", "#", "+", "."]


# ---- the cases ---------------------------------------------------------------------------

@dataclass
class Case:
    kind: str
    index: int
    model: bytes  # the model file's content
    origin: str  # the example it was made from, or ""
    csv: tuple[str, bytes] | None = None  # a data file (relative path, content) for "data" cases


def seed_models() -> dict[str, str]:
    """Every example (and the bad ones), and the extra models above."""
    out = {p.name: p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob("*.model"))}
    out.update({f"bad/{p.name}": p.read_text(encoding="utf-8")
                for p in sorted(EXAMPLES.glob("bad/*.model"))})
    out.update(EXTRA_MODELS)
    return out


def data_paths(models: dict[str, str]) -> dict[str, str]:
    """Model name -> the data path its `data` statement names (for the "data" cases)."""
    out = {}
    for name, text in models.items():
        m = re.search(r'^data\s+"([^"]+)"', text, re.M)
        if m and not name.startswith("bad/") and (EXAMPLES / m.group(1)).is_file():
            out[name] = m.group(1)
    return out


class Generator:
    """Seeded cases of one kind."""

    def __init__(self, seed: int, models: dict[str, str]):
        self.rng = random.Random(seed)
        self.models = models
        self.names = sorted(models)
        self.vocab = sorted({t for text in models.values() for t in TOKEN.findall(text)
                             if not t.isspace()} | set(VOCABULARY))
        self.with_data = data_paths(models)

    def make(self, kind: str, index: int) -> Case:
        return getattr(self, "_" + kind)(index)

    def _pick(self) -> tuple[str, str]:
        name = self.rng.choice(self.names)
        return name, self.models[name]

    # random text: characters, or a soup of the language's tokens
    def _text(self, index: int) -> Case:
        rng = self.rng
        if rng.random() < 0.4:
            alphabet = string.printable + "éß∂∑αβ😀\u00a0\u2028\ufeff\x00\x0b\x85\r"
            n = rng.choice([0, 1, 2, 5, 20, 80, 300])
            text = "".join(rng.choice(alphabet) for _ in range(n))
        else:
            n = rng.randint(1, 60)
            seps = [" ", " ", " ", "", "\n", "\n", "\r\n"]
            text = "".join(rng.choice(self.vocab) + rng.choice(seps) for _ in range(n))
        return Case("text", index, text.encode("utf-8"), "")

    # random bytes: pure noise, or an example with noise inside, a BOM, UTF-16, a cut
    def _bytes(self, index: int) -> Case:
        rng = self.rng
        name, text = self._pick()
        raw = text.encode("utf-8")
        r = rng.random()
        if r < 0.35:
            data = rng.randbytes(rng.choice([0, 1, 3, 16, 100, 400]))
        elif r < 0.7:
            b = bytearray(raw)
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(len(b) + 1)
                b[pos:pos] = rng.randbytes(rng.randint(1, 4))
            data = bytes(b)
        elif r < 0.8:
            data = b"\xef\xbb\xbf" + (raw if rng.random() < 0.5 else rng.randbytes(20))
        elif r < 0.9:
            data = text.encode(rng.choice(["utf-16", "utf-32", "latin-1", "utf-8-sig"]),
                               errors="replace")
        else:
            data = ("é∂😀".join(text.split(" ", 3))).encode("utf-8")
            data = data[:rng.randrange(len(data) + 1)]
        return Case("bytes", index, data, name)

    # token mutations: delete, duplicate, swap, replace, insert (1 to 3 of them)
    def _tokens(self, index: int) -> Case:
        rng = self.rng
        name, text = self._pick()
        toks = TOKEN.findall(text)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            solid = [i for i, t in enumerate(toks) if not t.isspace()] or [0]
            i, j = rng.choice(solid), rng.choice(solid)
            op = rng.choice(["delete", "duplicate", "swap", "swap_next", "replace", "insert"])
            if not toks:
                toks = [rng.choice(self.vocab)]
            elif op == "delete":
                del toks[i]
            elif op == "duplicate":
                toks.insert(i, toks[i])
            elif op == "swap":
                toks[i], toks[j] = toks[j], toks[i]
            elif op == "swap_next":
                k = solid[(solid.index(i) + 1) % len(solid)]
                toks[i], toks[k] = toks[k], toks[i]
            elif op == "replace":
                toks[i] = rng.choice(self.vocab)
            else:
                toks.insert(i, rng.choice(self.vocab) + rng.choice(["", " "]))
        return Case("tokens", index, "".join(toks).encode("utf-8"), name)

    # line mutations: delete, duplicate, swap, move, splice a line of another model
    def _lines(self, index: int) -> Case:
        rng = self.rng
        name, text = self._pick()
        lines = text.split("\n")
        for _ in range(rng.choice([1, 1, 2, 3])):
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            op = rng.choice(["delete", "duplicate", "swap", "move", "splice", "join"])
            if op == "delete" and len(lines) > 1:
                del lines[i]
            elif op == "duplicate":
                lines.insert(j, lines[i])
            elif op == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            elif op == "move":
                lines.insert(j, lines.pop(i))
            elif op == "splice":
                other = self.models[rng.choice(self.names)].split("\n")
                lines.insert(j, rng.choice(other))
            elif op == "join" and i + 1 < len(lines):
                lines[i:i + 2] = [lines[i] + rng.choice([" ", "", "\r"]) + lines[i + 1]]
        return Case("lines", index, "\n".join(lines).encode("utf-8"), name)

    # data mutations: an unchanged model on a damaged copy of its CSV
    def _data(self, index: int) -> Case:
        rng = self.rng
        name = rng.choice(sorted(self.with_data))
        path = self.with_data[name]
        raw = (EXAMPLES / path).read_bytes()
        gz = path.endswith(".gz")
        text = (gzip.decompress(raw) if gz else raw).decode("utf-8")
        lines = text.split("\n")[:80]  # a short file keeps the case fast
        for _ in range(rng.choice([1, 1, 2, 3])):
            lines = lines or [""]
            i = rng.randrange(len(lines))
            op = rng.choice(["cell", "cell", "cell", "delete", "duplicate", "swap", "cut_cells",
                             "add_cell", "header", "truncate", "noise", "crlf", "empty"])
            cells = lines[i].split(",")
            if op == "cell":
                cells[rng.randrange(len(cells))] = rng.choice(CSV_JUNK)
                lines[i] = ",".join(cells)
            elif op == "delete" and len(lines) > 1:
                del lines[i]
            elif op == "duplicate":
                lines.insert(rng.randrange(len(lines)), lines[i])
            elif op == "swap":
                j = rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
            elif op == "cut_cells":
                lines[i] = ",".join(cells[:rng.randrange(len(cells))])
            elif op == "add_cell":
                lines[i] += "," + rng.choice(CSV_JUNK + ["1", "2"])
            elif op == "header":
                head = lines[0].split(",")
                head[rng.randrange(len(head))] = rng.choice(head + CSV_JUNK)
                lines[0] = ",".join(head)
            elif op == "truncate":
                lines = lines[:i]
            elif op == "noise":
                lines[i] = lines[i][:3] + rng.randbytes(3).decode("latin-1") + lines[i][3:]
            elif op == "crlf":
                lines = [ln + "\r" for ln in lines]
            elif op == "empty":
                lines = [""]
        data = "\n".join(lines).encode("utf-8")
        if gz:
            cut = data[:rng.randrange(len(data) + 1)]
            data = gzip.compress(data, mtime=0) if rng.random() < 0.8 else cut
        return Case("data", index, self.models[name].encode("utf-8"), name, (path, data))


# ---- running them ------------------------------------------------------------------------

class CaseTimeout(BaseException):
    """Raised by SIGALRM; a BaseException, so that `main` does not report it as its own error."""


@contextlib.contextmanager
def time_limit(seconds: float):
    def on_alarm(signum, frame):
        raise CaseTimeout(f"more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(HARD_SECONDS, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()


@dataclass
class Outcome:
    argv: list[str]
    status: int | str
    out: str
    err: str
    seconds: float
    warned: list[str] = field(default_factory=list)

    def problem(self) -> str | None:
        """Why this is not a clean end, or None."""
        if not isinstance(self.status, int):
            return str(self.status)
        text = self.out + self.err
        if self.status not in (0, 1, 2):
            return f"exit status {self.status}"
        if "Traceback" in text or "internal error" in text:
            return "a traceback or an internal error"
        if self.status and "error:" not in self.err:
            return f"exit status {self.status} without a rendered error"
        return None


def invoke(argv: list[str], seconds: float = CASE_SECONDS) -> Outcome:
    """`dsl.cli.main(argv)` with its output captured, under the time limit."""
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with time_limit(seconds), contextlib.redirect_stdout(out), \
                    contextlib.redirect_stderr(err):
                status: int | str = main(argv)
        except CaseTimeout as e:
            status = f"hang: {e}"
        except BaseException as e:  # main itself must not raise
            status = f"{type(e).__name__} escaped main: {e}"
    warned = [f"{w.category.__name__} at {Path(w.filename).name}:{w.lineno}: "
              f"{str(w.message).splitlines()[0][:80] if str(w.message) else ''}" for w in caught]
    seconds = time.perf_counter() - start
    return Outcome(argv, status, out.getvalue(), err.getvalue(), seconds, warned)


class Fuzzer:
    """Runs cases in a workspace that holds the examples' data, and keeps the figures."""

    def __init__(self, root: Path, models: dict[str, str]):
        self.root = root
        self.work = root / "work"  # mutated models are written here, beside data/
        shutil.copytree(EXAMPLES / "data", self.work / "data")
        for big in (self.work / "data").glob("*.csv.gz"):  # MNIST: 120 rows keep a case fast
            rows = gzip.decompress(big.read_bytes()).split(b"\n")[:121]
            big.write_bytes(gzip.compress(b"\n".join(rows) + b"\n", mtime=0))
        self.failures: list[str] = []
        self.cases = Counter()
        self.invocations = 0
        self.statuses = Counter()
        self.warnings = Counter()
        self.slowest = (0.0, "")
        self.runs = 0
        self.models = models

    def model_path(self, case: Case) -> Path:
        if case.csv is None:
            return self.work / "case.model"
        folder = self.root / "datacase"
        if folder.exists():
            shutil.rmtree(folder)
        (folder / case.csv[0]).parent.mkdir(parents=True)
        (folder / case.csv[0]).write_bytes(case.csv[1])
        return folder / "case.model"

    def run_case(self, case: Case) -> None:
        path = self.model_path(case)
        path.write_bytes(case.model)
        self.cases[case.kind] += 1
        check = self.record(case, ["check", str(path)])
        if case.kind in ("tokens", "lines", "data") or check.status == 0:
            out = self.root / "out"
            if out.exists():
                shutil.rmtree(out)
            self.runs += 1
            plots.available = _plots_on if self.runs % PLOT_EVERY == 0 else _plots_off
            try:
                run = self.record(case, ["run", str(path), "--steps", "1", "--out", str(out)])
            finally:
                plots.available = _plots_on
            self.check_artifacts(case, run, out)
        if case.kind == "data":
            self.record(case, ["data", str(path.parent / case.csv[0])])

    def record(self, case: Case, argv: list[str]) -> Outcome:
        o = invoke(argv)
        self.invocations += 1
        self.statuses[(argv[0], o.status if isinstance(o.status, int) else "hang/escape")] += 1
        self.warnings.update(o.warned)
        if o.seconds > self.slowest[0]:
            self.slowest = (o.seconds, f"{case.kind} #{case.index} `{argv[0]}`")
        problem = o.problem()
        if problem:
            self.fail(case, f"`dsl {argv[0]}`: {problem}\n{_tail(o.out + o.err)}")
        return o

    def check_artifacts(self, case: Case, run: Outcome, out: Path) -> None:
        """A run that trained saved its params and history, finite and loadable."""
        trained = run.status == 0 or "training diverged" in run.err
        if not trained:
            return
        try:
            with np.load(out / "params.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            history = (out / "history.csv").read_text().splitlines()
        except (OSError, ValueError) as e:
            self.fail(case, f"`dsl run` trained but its artifacts are missing or broken: {e}")
            return
        bad = [k for k, v in arrays.items()
               if not k.startswith("__") and not np.all(np.isfinite(v))]
        if bad or len(history) < 2:
            self.fail(case, f"`dsl run` saved non-finite params {bad} or no history")
        leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
        if leftovers:
            self.fail(case, f"temporary files left behind: {leftovers}")

    def fail(self, case: Case, what: str) -> None:
        keep = self.root / "failures" / f"{case.kind}-{case.index}.model"
        keep.parent.mkdir(exist_ok=True)
        keep.write_bytes(case.model)
        if case.csv:
            keep.with_suffix(".csv").write_bytes(case.csv[1])
        self.failures.append(f"{case.kind} #{case.index} (from {case.origin or 'nothing'}), "
                             f"input kept in {keep}:\n  {what}")

    def summary(self, seconds: float) -> str:
        lines = [f"fuzz: {sum(self.cases.values())} cases ({dict(self.cases)}), "
                 f"{self.invocations} commands in {seconds:.1f} s; seed {SEED}",
                 "  exit statuses: " + ", ".join(f"{c} {s}: {n}" for (c, s), n in
                                                 sorted(self.statuses.items(), key=str)),
                 f"  slowest command: {self.slowest[0]:.2f} s ({self.slowest[1]})"]
        for w, n in self.warnings.most_common(8):
            lines.append(f"  warning x{n}: {w}")
        return "\n".join(lines)

    def report(self) -> str:
        shown = self.failures[:15]
        more = len(self.failures) - len(shown)
        return "\n\n".join(shown) + (f"\n\n... and {more} more" if more else "")


_plots_on = plots.available


def _plots_off() -> bool:
    return False


def _tail(text: str, n: int = 14) -> str:
    lines = text.rstrip().splitlines()
    return "\n".join("    " + ln for ln in lines[-n:])


def campaign(root: Path, counts: dict[str, int], seed: int) -> Fuzzer:
    models = seed_models()
    fuzzer = Fuzzer(root, models)
    for k, (kind, n) in enumerate(counts.items()):
        gen = Generator(seed * 1000 + k, models)
        for i in range(n):
            fuzzer.run_case(gen.make(kind, i))
    return fuzzer


# ---- the tests ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(SAMPLE))
def test_fuzz_sample(kind, tmp_path):
    """A few hundred cases in the default run, every kind of input."""
    start = time.perf_counter()
    fuzzer = campaign(tmp_path, {kind: SAMPLE[kind]}, SEED)
    summary = fuzzer.summary(time.perf_counter() - start)
    assert not fuzzer.failures, summary + "\n\n" + fuzzer.report()
    assert fuzzer.cases[kind] == SAMPLE[kind]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_models_end_cleanly(name, tmp_path):
    """Each hostile model through check, compile, eval and `run --steps 1`, under the limit."""
    fuzzer = Fuzzer(tmp_path, {})
    path = fuzzer.work / "hostile.model"
    path.write_text(HOSTILE[name], encoding="utf-8", newline="")
    case = Case("hostile", 0, HOSTILE[name].encode("utf-8"), name)
    for argv in (["check", path], ["compile", path, "-o", tmp_path / "out.py"],
                 ["eval", path, "--set", "x=0.5"],
                 ["run", path, "--steps", "1", "--out", tmp_path / "out"]):
        fuzzer.record(case, [str(a) for a in argv])
    assert not fuzzer.failures, fuzzer.report()


@pytest.mark.fuzz
def test_fuzz_campaign(tmp_path):
    """The long run: more than 10,000 cases; prints its figures (`-s` or `-rP` shows them)."""
    start = time.perf_counter()
    fuzzer = campaign(tmp_path, CAMPAIGN, SEED)
    summary = fuzzer.summary(time.perf_counter() - start)
    print(summary, file=sys.__stdout__ if os.environ.get("DSL_FUZZ_LOUD") else sys.stdout)
    assert sum(fuzzer.cases.values()) >= 10_000
    assert not fuzzer.failures, summary + "\n\n" + fuzzer.report()


def test_generators_are_deterministic_and_varied():
    """The same seed gives the same cases; the cases differ from their examples and each other."""
    models = seed_models()
    for kind in SAMPLE:
        g1, g2 = Generator(5, models), Generator(5, models)
        a = [g1.make(kind, i) for i in range(30)]
        b = [g2.make(kind, i) for i in range(30)]
        assert [c.model for c in a] == [c.model for c in b]
        assert [c.csv for c in a] == [c.csv for c in b]
        distinct = {(c.model, c.csv) for c in a}
        assert len(distinct) > 20, kind
        if kind in ("tokens", "lines"):
            assert sum(c.model.decode() not in models.values() for c in a) > 20


def test_time_limit_reports_a_hang(monkeypatch):
    """The per-case limit turns a hang in Python code into a reported failure, not a stuck run."""
    def forever(argv):
        while True:
            pass

    monkeypatch.setattr(sys.modules[__name__], "main", forever)
    outcome = invoke(["check", "x.model"], seconds=0.2)
    assert outcome.problem().startswith("hang")


# ---- resource attacks (issue 13): each in a child process under a memory and a time limit -------

RESOURCE_MEMORY = 3 << 30  # RLIMIT_AS of each child: far below what the attacks used to take
RESOURCE_SECONDS = 180


def _bomb(path: Path, head: bytes, unit: bytes, expanded: int) -> Path:
    """A .csv.gz of `head` and then `unit` repeated to `expanded` bytes: a few MB on disk."""
    import zlib
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    block = unit * ((1 << 20) // len(unit))
    with open(path, "wb") as f:
        f.write(z.compress(head))
        for _ in range(expanded // len(block)):
            f.write(z.compress(block))
        f.write(z.flush())
    return path


def _npz_with(path: Path, members: dict[str, tuple[str, tuple, int]]) -> Path:
    """An .npz whose members are headers claiming (dtype, shape) and then `n` zero bytes."""
    import zipfile
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, (dtype, shape, n) in members.items():
            with z.open(name + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_2_0(
                    f, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
                for start in range(0, n, 1 << 20):
                    f.write(bytes(min(1 << 20, n - start)))
    return path


def _resource_cases(tmp: Path) -> dict[str, tuple[list[str], tuple[int, ...]]]:
    """name: (argv, the exit statuses allowed). Attacks must end in 1 or 2 with a message; a
    command that can do its work in bounded memory ends in 0."""
    fifo = tmp / "pipe.csv"
    os.mkfifo(fifo)
    rows = tmp / "rows.csv"
    np.savetxt(rows, np.random.default_rng(0).standard_normal((200_000, 2)), delimiter=",",
               header="a,b", comments="", fmt="%.3f")
    zeros_bomb = _bomb(tmp / "zeros.csv.gz", b"a,b\n", b"0,0\n", 3 << 29)  # 1.5 GiB of rows
    nul_bomb = _bomb(tmp / "nul.csv.gz", b"", b"\0", 3 << 29)  # one endless line
    wide = tmp / "wide.csv"
    np.savetxt(wide, np.ones((3, 40_000)), delimiter=",", comments="", fmt="%d",
               header=",".join(f"c{i}" for i in range(40_000)))
    junk_npz = _npz_with(tmp / "junk.npz", {"k1": ("<f8", (), 8), "k2": ("<f8", (), 8),
                                             "junk": ("<f8", (1 << 27,), 1 << 30)})
    huge_npz = _npz_with(tmp / "huge.npz", {"k1": ("<f8", (100_000, 100_000), 0)})
    text_npz = _npz_with(tmp / "text.npz", {"k1": ("<U9", (), 36), "k2": ("<f8", (), 8)})

    def model(name: str, data: str, body: str) -> str:
        p = tmp / name
        p.write_text(f'data "{data}"\n{body}')
        return str(p)
    xy = "input x[N] <- a\ninput y[N] <- b\nparam k = 0\nloss = mean((k * x - y)^2)\nminimize loss\n"
    gram = ("input X[N, 2] <- a..b\nparam w[2] = 0.1\nG = X @ transpose(X)\n"
            "loss = mean(G) + sum(w^2)\nminimize loss\n")
    big_param = tmp / "big_param.model"
    big_param.write_text("input x\nparam W[100000, 100000] ~ normal(0, 1)\nloss = sum(W) * x\n"
                         "minimize loss\n")
    wide_param = tmp / "wide_param.model"
    wide_param.write_text("input x\nparam w[4000, 4000] = 0.5\nloss = sum(w) * x\nminimize loss\n")
    seed = str(EXAMPLES / "seed_graph.model")
    attack = (1, 2)
    return {
        "data /dev/zero in a model": (["run", model("z.model", "/dev/zero", xy)], (1,)),
        "data /dev/urandom in a model": (["run", model("u.model", "/dev/urandom", xy)], (1,)),
        "data FIFO in a model": (["run", model("f.model", str(fifo), xy)], (1,)),
        "check /dev/zero": (["check", "/dev/zero"], (2,)),
        "data /dev/zero": (["data", "/dev/zero"], (2,)),
        "data FIFO": (["data", str(fifo)], (2,)),
        "eval --params /dev/zero": (["eval", seed, "--params", "/dev/zero"], (2,)),
        "eval --set @/dev/urandom": (["eval", seed, "--set", "x=@/dev/urandom"], (2,)),
        "predict --data FIFO": (["predict", str(EXAMPLES / "boston_mlp.model"), "--params",
                                 str(junk_npz), "--data", str(fifo)], (2,)),
        "gzip bomb of rows, data": (["data", str(zeros_bomb)], attack),
        "gzip bomb of rows, run": (["run", model("b.model", str(zeros_bomb), xy)], attack),
        "gzip bomb of one line": (["data", str(nul_bomb)], attack),
        "X @ transpose(X) on 200,000 rows, run": (["run", model("g.model", str(rows), gram)], (1,)),
        "X @ transpose(X) on 200,000 rows, eval": (["eval", model("g2.model", str(rows), gram)],
                                                    (1,)),
        "a param of 10^10 elements": (["eval", str(big_param), "--set", "x=1"], (1,)),
        "npz member of 1 GiB the model does not name": (
            ["eval", seed, "--params", str(junk_npz), "--set", "x=1", "--set", "y=0"], (0,)),
        "npz param claiming 75 GiB": (["eval", seed, "--params", str(huge_npz)], (1,)),
        "npz param of text": (["eval", seed, "--params", str(text_npz)], (1,)),
        "eval --json of a 4000 x 4000 param": (["eval", str(wide_param), "--set", "x=1",
                                                "--json"], (0,)),
        "data --plot of 40,000 columns": (["data", str(wide), "--plot", str(tmp / "w.png")], (0,)),
    }


def _limited():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (RESOURCE_MEMORY, RESOURCE_MEMORY))


@pytest.mark.fuzz
def test_resource_attacks_end_cleanly_under_a_memory_limit(tmp_path):
    """Devices, FIFOs, gzip bombs, huge declared sizes and params files: each `dsl` command runs
    in a child under RLIMIT_AS and a time limit, and ends in 1 or 2 with a message (or 0 where
    the command can do its work in bounded memory); never 3, never killed, never a hang."""
    failures = []
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "DSL_CACHE_DIR": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    for name, (argv, allowed) in _resource_cases(tmp_path).items():
        if argv[0] == "run":
            argv = [*argv, "--steps", "1", "--out", str(tmp_path / "out")]
        try:
            p = subprocess.run([sys.executable, "-m", "dsl", *argv], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=RESOURCE_SECONDS,
                               preexec_fn=_limited)
        except subprocess.TimeoutExpired:
            failures.append(f"{name}: no answer in {RESOURCE_SECONDS} s")
            continue
        message = p.returncode == 0 or "error: " in p.stderr
        if p.returncode not in allowed or not message or "Traceback" in p.stderr \
                or "internal error" in p.stderr:
            failures.append(f"{name}: exit {p.returncode}\n{_tail(p.stderr)}")
        if "--json" in argv and len(p.stdout) > 1 << 16:  # a summary, not 16 million numbers
            failures.append(f"{name}: printed {len(p.stdout)} characters")
    assert not failures, "\n\n".join(failures)
