"""Golden files: printed output compared with a reviewed copy under tests/golden/.

Set DSL_UPDATE_GOLDEN=1 to rewrite them; every change then shows in the diff for review.
"""
import os

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def compare(path: str, actual: str) -> None:
    """Assert `actual` equals the golden file at `path` (relative to tests/golden/)."""
    full = path if os.path.isabs(path) else os.path.join(GOLDEN, path)
    if os.environ.get("DSL_UPDATE_GOLDEN") == "1":
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(actual)
        return
    assert os.path.exists(full), f"missing golden file {full}: run with DSL_UPDATE_GOLDEN=1"
    with open(full, encoding="utf-8") as f:
        expected = f.read()
    assert actual == expected, f"output differs from {full} (DSL_UPDATE_GOLDEN=1 rewrites it)"
