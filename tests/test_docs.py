"""The commands shown in README.md and docs/TUTORIAL.md still print what the docs say they print.

How to write a transcript in those documents (the convention this test enforces):

- A ```console block is a transcript. A line starting with `$ ` is a command; the lines after it,
  up to the next `$ ` line or the end of the block, are output that the command must print.
- Commands run in the order they appear, one document at a time, in a fresh temporary folder
  holding a copy of `examples/` (the folder is the working directory), so `runs/`, caches and
  anything a command writes land there, and a later command may read what an earlier one wrote
  (`dsl predict` reads the params `dsl run` saved). `python` is the interpreter running the tests.
  Commands are split like a shell would split them, but there are no pipes or redirections.
- Every output line shown must appear in the command's output (stdout and stderr together, in
  that order), in the order shown; the doc may leave lines out. Trailing blanks are ignored.
- `...` in a shown line stands for any text: use it for whatever changes from run to run (times,
  steps per second) and to cut long numbers short (`19.6874...`). A line that is only `...`
  marks omitted lines and is not checked.
- A command must exit with status 0, unless its shown output has an `error:` line: then it must
  exit with status 1 (a bad model or bad data).
- Without matplotlib (an optional dependency), lines naming `.png` files are not checked; a
  command whose shown output names no `.png` file runs as without matplotlib (tests/no_plots.py).

Model listings are checked too (there and in docs/LANGUAGE.md): a ```model block must be a run of
consecutive lines of a file under examples/; when its first line is `# examples/NAME.model...`,
of that file from its first line.

docs/ARCHITECTURE.md names only paths that exist, and names every module of the project.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.no_plots import without_matplotlib

ROOT = Path(__file__).resolve().parent.parent
# One BLAS thread (as the benchmark anchors use) unless the caller says otherwise: on a busy
# 2-core machine, threaded BLAS can make the MNIST runs many times slower; results are the same.
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
DOCS = [ROOT / "README.md", ROOT / "docs" / "TUTORIAL.md"]
LISTINGS = DOCS + [ROOT / "docs" / "LANGUAGE.md"]  # docs whose ```model blocks are checked
try:
    import matplotlib  # noqa: F401  (only whether it imports)
    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False
TIMEOUT = 180


@dataclass
class Command:
    doc: Path
    line: int  # 1-based line of the `$ ` line in the doc
    text: str
    expected: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.doc.name}:{self.line}: {self.text}"


def _blocks(doc: Path, language: str) -> list[tuple[int, list[str]]]:
    """(line of the block's first content line, its lines) for each ```language block."""
    out, current, start = [], None, 0
    for no, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if current is None:
            if stripped.startswith("```") and stripped[3:].strip() == language:
                current, start = [], no + 1
        elif stripped.startswith("```"):
            out.append((start, current))
            current = None
        else:
            current.append(line)
    assert current is None, f"{doc.name}: a ```{language} block is not closed"
    return out


def commands(doc: Path) -> list[Command]:
    out: list[Command] = []
    for start, lines in _blocks(doc, "console"):
        current = None
        for offset, line in enumerate(lines):
            if line.startswith("$ "):
                current = Command(doc, start + offset, line[2:].strip())
                out.append(current)
            elif current is not None:
                current.expected.append(line.rstrip())
            elif line.strip():
                raise AssertionError(f"{doc.name}:{start + offset}: output before any `$ ` command")
    return out


def _pattern(shown: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(part) for part in shown.split("...")))


def missing_lines(expected: list[str], actual: str) -> list[str]:
    """The shown lines that do not appear, in order, in the actual output."""
    lines = [ln.rstrip() for ln in actual.splitlines()]
    at, missing = 0, []
    for shown in expected:
        if not shown.strip() or shown.strip() == "...":
            continue
        if ".png" in shown and not HAVE_MATPLOTLIB:
            continue
        pattern = _pattern(shown)
        for i in range(at, len(lines)):
            if pattern.fullmatch(lines[i]):
                at = i + 1
                break
        else:
            missing.append(shown)
    return missing


class Session:
    """One document's commands, run in order in one temporary folder, each at most once."""

    def __init__(self, folder: Path):
        self.folder = folder
        shutil.copytree(ROOT / "examples", folder / "examples",
                        ignore=shutil.ignore_patterns("__pycache__"))
        self.results: dict[int, subprocess.CompletedProcess] = {}

    def run(self, cmds: list[Command], index: int) -> subprocess.CompletedProcess:
        for i in range(index + 1):
            if i not in self.results:
                self.results[i] = self._run(cmds[i])
        return self.results[index]

    def _run(self, cmd: Command) -> subprocess.CompletedProcess:
        argv = shlex.split(cmd.text)
        assert argv and argv[0] == "python", f"{cmd.id}: commands in the docs start with `python`"
        plots = HAVE_MATPLOTLIB and any(".png" in line for line in cmd.expected)
        first = [] if plots else [without_matplotlib(self.folder.parent)]  # see tests/no_plots.py
        path = os.pathsep.join(filter(None, [*first, str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**ONE_THREAD, **os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": path}
        return subprocess.run([sys.executable, *argv[1:]], cwd=self.folder, env=env,
                              capture_output=True, text=True, encoding="utf-8", timeout=TIMEOUT)


ALL = [c for doc in DOCS for c in commands(doc)]
_sessions: dict[Path, Session] = {}


@pytest.fixture(scope="module")
def session_for(tmp_path_factory):
    def get(doc: Path) -> Session:
        if doc not in _sessions:
            _sessions[doc] = Session(tmp_path_factory.mktemp(doc.stem.lower()))
        return _sessions[doc]
    yield get
    _sessions.clear()


def test_the_docs_show_commands():
    for doc in DOCS:
        assert commands(doc), f"{doc.name} shows no ```console commands"


@pytest.mark.parametrize("cmd", ALL, ids=[c.id for c in ALL])
def test_command_prints_what_the_doc_shows(cmd: Command, session_for):
    cmds = [c for c in ALL if c.doc == cmd.doc]
    result = session_for(cmd.doc).run(cmds, cmds.index(cmd))
    output = result.stdout + result.stderr
    shows_error = any("error:" in line for line in cmd.expected)
    want = 1 if shows_error else 0
    assert result.returncode == want, (
        f"{cmd.id}\nexit status {result.returncode}, the doc implies {want}\n{output}")
    missing = missing_lines(cmd.expected, output)
    assert not missing, (f"{cmd.id}\nthese lines shown in the doc are not in the output:\n"
                         + "\n".join(missing) + "\n--- output ---\n" + output)


def _listings():
    for doc in LISTINGS:
        for start, lines in _blocks(doc, "model"):
            yield pytest.param(doc, start, lines, id=f"{doc.name}:{start}")


def _runs_of(lines: list[str], text: str) -> list[int]:
    """The 0-based lines of `text` at which `lines` appear consecutively."""
    have = [ln.rstrip() for ln in text.splitlines()]
    return [i for i in range(len(have) - len(lines) + 1) if have[i:i + len(lines)] == lines]


@pytest.mark.parametrize("doc, start, lines", list(_listings()))
def test_model_listing_matches_an_example(doc, start, lines):
    shown = [ln.rstrip() for ln in lines]
    assert shown, f"{doc.name}:{start}: an empty ```model block"
    named = re.match(r"#\s*(examples/\S+\.model)", shown[0])
    if named:
        path = ROOT / named.group(1)
        assert path.exists(), f"{doc.name}:{start}: no such file {named.group(1)}"
        assert 0 in _runs_of(shown, path.read_text(encoding="utf-8")), (
            f"{doc.name}:{start}: the listing differs from {named.group(1)}")
    else:
        files = sorted((ROOT / "examples").rglob("*.model"))
        assert any(_runs_of(shown, f.read_text(encoding="utf-8")) for f in files), (
            f"{doc.name}:{start}: this listing is not part of any file under examples/")


# ---- docs/ARCHITECTURE.md names what exists ----------------------------------------------------

ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
# `dsl/front/check.py`, `tests/compiler/`: a path with a folder in it, to a file or a folder
PATH = re.compile(r"(?<![\w./-])((?:[\w-]{2,}/)+(?:[\w.-]+\.(?:py|lark|md|model|csv|json))?)"
                  r"(?![\w/-])")


def test_architecture_names_only_paths_that_exist():
    named = set(PATH.findall(ARCHITECTURE.read_text(encoding="utf-8")))
    assert "dsl/cli.py" in named and "tests/compiler/" in named  # the pattern finds paths
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"docs/ARCHITECTURE.md names paths that do not exist: {missing}"


def test_architecture_names_every_module():
    named = set(PATH.findall(ARCHITECTURE.read_text(encoding="utf-8")))
    modules = {p.relative_to(ROOT).as_posix() for package in ("grammar", "dsl", "compiler")
               for p in (ROOT / package).rglob("*") if p.suffix in (".py", ".lark")
               and p.name not in ("__init__.py", "__main__.py")}
    assert len(modules) > 30
    assert not modules - named, f"docs/ARCHITECTURE.md does not name {sorted(modules - named)}"


def test_citations_of_architecture_sections_are_real():
    """`docs/ARCHITECTURE.md, section 4: Stable forms` in a test or a module names a heading."""
    headings = set(re.findall(r"^## (\d+)\. (.+)$", ARCHITECTURE.read_text(encoding="utf-8"), re.M))
    cited = [(str(p.relative_to(ROOT)), m) for folder in ("tests", "dsl", "compiler", "bench")
             for p in (ROOT / folder).rglob("*.py")
             for m in re.findall(r"ARCHITECTURE\.md, section (\d+): ([^)`\n]+?)[).`]",
                                 p.read_text(encoding="utf-8"))]
    assert ("tests/test_numerics.py", ("4", "Stable forms")) in cited
    assert not [c for c in cited if c[1] not in headings], cited


# ---- the convention itself ------------------------------------------------------------------

def test_ellipsis_and_order():
    out = "training x\n  time   2.13 s\n  loss  1.5\n"
    assert missing_lines(["  time   ... s", "...", "  loss  1.5"], out) == []
    assert missing_lines(["  loss  1.5", "  time   ... s"], out) == ["  time   ... s"]
    assert missing_lines(["  time   2.1"], out) == ["  time   2.1"]
    assert missing_lines(["  time   2.1..."], out) == []
