"""`python -m dsl run` processes whose plots no test looks at run as without matplotlib.

Importing matplotlib and drawing three PNGs costs a small run about a second of CPU, most of its
time; the plots themselves are tested in tests/dsl/views/test_plots.py and by the doc commands whose
shown output names the PNG files they write (tests/test_docs.py).
"""
from __future__ import annotations

from pathlib import Path


def without_matplotlib(folder: Path) -> str:
    """A folder to put first on PYTHONPATH: its `matplotlib` fails to import, as if missing."""
    stub = folder / "without-matplotlib" / "matplotlib"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text('raise ImportError("hidden by the tests: no plots here")\n')
    return str(stub.parent)
