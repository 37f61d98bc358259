"""The middle and back end: graph IR, symbolic derivatives, numpy code generation.

Imports the standard library, sympy, numpy and the front end's types (`dsl.front`); never
training, views or the CLI (tests/test_architecture.py).
"""

# Part of the compile cache's key; bumped when fixes change generated code, so stale cached modules
# are not reused. Here, not in codegen, so that a cached command reads it without importing sympy.
CODEGEN_VERSION = "13"
