"""One of each concept (issue 14 item 4): the Shape type, its formatter and the broadcast rule
(compiler/shape.py), "did you mean" (compiler.errors.suggest), `ancestors` (compiler/deps.py),
one class named Model (dsl/model.py). Read from the sources with `ast`, so that a second copy
written later fails here rather than drifting apart from the first."""
import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("grammar", "compiler", "dsl") for p in (ROOT / d).rglob("*.py"))


def where() -> dict[str, set[str]]:
    """What each source defines or imports that could be a second copy of a concept."""
    found = defaultdict(set)
    for path in SOURCES:
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                        else [node.module])
                if "difflib" in mods:
                    found["difflib"].add(rel)
            elif isinstance(node, ast.ClassDef):
                found[f"class {node.name}"].add(rel)
            elif isinstance(node, ast.FunctionDef):
                found[f"def {node.name}"].add(rel)
        for node in tree.body:  # module-level names: type aliases
            if isinstance(node, ast.Assign | ast.AnnAssign):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(t, ast.Name):
                        found[f"{t.id} ="].add(rel)
            if isinstance(node, ast.FunctionDef):
                found["module def " + node.name].add(rel)
    return found


def test_one_of_each_concept():
    found = where()
    assert found["difflib"] == {"compiler/errors.py"}  # suggest(), the one "did you mean"
    assert found["Shape ="] == {"compiler/shape.py"}
    assert found["Dim ="] == {"compiler/shape.py"}
    assert found["class Model"] == {"dsl/model.py"}
    assert found["def ancestors"] == {"compiler/deps.py"}
    helpers = {k: v for k, v in found.items() if k.startswith("module def ") and any(
        w in k for w in ("broadcast", "fmt_shape", "shape_text", "did_you_mean", "closest",
                         "suggest"))}
    assert helpers == {"module def broadcast": {"compiler/shape.py"},
                       "module def fmt_shape": {"compiler/shape.py"},
                       "module def suggest": {"compiler/errors.py"},
                       # the checker's mismatch message around compiler.shape's two rules
                       "module def _broadcast": {"dsl/front/check.py"}}
