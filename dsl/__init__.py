"""dsl: write a differentiable model as maths, get its derivatives and fast numpy code."""
__version__ = "0.1.0"

from dsl.model import Model, load  # noqa: E402  (the public API, after the version it reads)

__all__ = ["Model", "load", "__version__"]
