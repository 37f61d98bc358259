"""dsl: write a differentiable model as maths, get its derivatives and fast numpy code."""
__version__ = "0.1.0"
