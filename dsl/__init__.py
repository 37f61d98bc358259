"""dsl: write a differentiable model as maths, get its derivatives and fast numpy code."""
__version__ = "0.1.0"

__all__ = ["Model", "load", "__version__"]


def __getattr__(name: str):
    """`dsl.Model` and `dsl.load`, the public API, imported when first asked for: importing
    `dsl` itself stays free, so that `python -m dsl run` forks its plot painter before numpy and
    the rest are imported (dsl/__main__.py)."""
    if name in ("Model", "load"):
        from dsl import model
        return getattr(model, name)
    raise AttributeError(f"module 'dsl' has no attribute {name!r}")
