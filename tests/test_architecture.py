"""Imports flow one way (issue 14 item 4): grammar -> the shared foundations of compiler/ ->
dsl.front -> compiler (IR, derivatives, chains, codegen) -> dsl.training -> dsl.views ->
dsl.cli and dsl.model. Every module's imports are read with `ast` (every `import` and
`from ... import`, also those inside functions), so a lazy import cannot hide an upward one."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module may import its own room and the rooms before it, never a later one.
# The foundations are read by every stage: the one error type (with suggest), the op registry,
# the one Shape type and the one `ancestors`; they import nothing of the project but each other.
ROOMS = [
    ("grammar", ("grammar",)),
    ("foundations", ("compiler.errors", "compiler.ops", "compiler.shape", "compiler.deps")),
    ("front end", ("dsl.front",)),
    ("compiler", ("compiler",)),
    ("training", ("dsl.training",)),
    ("views", ("dsl.views",)),
    ("CLI and API", ("dsl.cli", "dsl.model", "dsl.__main__", "dsl")),
]


def room(module: str) -> int | None:
    """The index of the room holding `module` (the longest matching name), None outside the
    project. The package `dsl` itself is the API; any other dsl module must be in a room."""
    best, rank = -1, None
    for i, (_, names) in enumerate(ROOMS):
        for n in names:
            exact = n == "dsl"
            if (module == n or (not exact and module.startswith(n + "."))) and len(n) > best:
                best, rank = len(n), i
    return rank


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file; `from pkg import mod` names pkg.mod when
    that is a module of the project, and names under `if TYPE_CHECKING:` are left out (they
    are annotations, never imported when the program runs)."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    package = module_name(path).rpartition(".")[0] if path.name != "__init__.py" \
        else module_name(path)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                is_module = any((ROOT / (sub.replace(".", "/") + s)).exists()
                                for s in (".py", "/__init__.py"))
                if (base, a.name) == ("dsl", "__version__"):
                    continue  # a constant set first in dsl/__init__.py, before the API's imports
                found.append((node.lineno, sub if is_module else base))
    return found


SOURCES = sorted(p for d in ("grammar", "compiler", "dsl") for p in (ROOT / d).rglob("*.py"))


def test_every_module_is_in_a_room():
    assert SOURCES
    for path in SOURCES:
        name = module_name(path)
        assert room(name) is not None, f"{name} is in no room of the layout"
        if name.startswith("dsl."):
            assert name in ("dsl.cli", "dsl.model", "dsl.__main__") or \
                name.split(".")[1] in ("front", "training", "views"), \
                f"{name}: dsl/ holds cli.py, model.py and the rooms front/, training/, views/"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_one_way(path):
    here = room(module_name(path))
    for line, target in imports(path):
        there = room(target)
        if there is None:
            continue  # the standard library, numpy, sympy, lark, scipy
        assert there <= here, (f"{path.relative_to(ROOT)}:{line}: the {ROOMS[here][0]} imports "
                               f"{target} from the {ROOMS[there][0]}, a later room")


def test_the_rule_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: an import from a later room, even a lazy one inside a function, is
    found; a TYPE_CHECKING one is not."""
    probe = ROOT / "compiler" / "lower.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dsl.model import Model\n"
        "def f():\n    from dsl.training import report\n    from . import ir\n"
        "from dsl import __version__, Model\n"))
    found = imports(probe)
    assert (5, "dsl.training.report") in found and (6, "compiler.ir") in found
    assert all(t != "dsl.model" for _, t in found) and (7, "dsl") in found
    assert room("dsl.training.report") > room("compiler.lower") > room("dsl.front.check")
    assert room("compiler.errors") < room("dsl.front.ast") and room("numpy") is None
